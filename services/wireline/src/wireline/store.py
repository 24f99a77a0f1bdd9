"""wireline's state in NATS JetStream: four KV buckets and the events.

=======================  ==========================  ===========================================
bucket                   key                         value
=======================  ==========================  ===========================================
``<prefix>-keys``        key name                    JSON :class:`StoredKey`
``<prefix>-releases``    ``<app>.<number:08d>``      JSON :class:`unify_common.events.Release`
``<prefix>-logs``        ``<app>.<number:08d>``      the release's output, UTF-8 (last 512 KiB)
``<prefix>-locks``       ``<app>``                   JSON :class:`LockHolder`
=======================  ==========================  ===========================================

The locks bucket has a ``max_age`` (KV ``ttl``) of the lock TTL: the holder rewrites its entry
every third of the TTL (:class:`AppLock`), so an entry outlives its writer by at most one TTL
— a wireline killed mid-build frees the app by itself. Taking the lock is ``create`` (only
when no live entry exists); heartbeat and release are compare-and-set on the holder's revision.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from unify_common import subjects
from unify_common.events import BuildOutput, DeployFailed, Event, Release, ReleaseRecorded
from unify_common.logs import get_logger
from unify_common.natsio import connect_nats, ensure_stream, publish_event
from unify_common.settings import CommonSettings

from .settings import WirelineSettings

__all__ = ["AppLock", "LockHolder", "LockTimeout", "Store", "StoredKey", "release_key"]

log = get_logger("wireline.store")
MAX_LOG_BYTES = 512 * 1024


class StoredKey(msgspec.Struct, frozen=True, kw_only=True):
    """A pusher key as ``unify apps keys add`` stored it."""

    name: str
    key_type: str
    blob: str
    fingerprint: str
    apps: tuple[str, ...] = ()
    all_apps: bool = False
    added_at: int = 0


class LockHolder(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds an app's deploy lock: ``holder`` (key name or operator), ``fingerprint``,
    ``host``/``pid`` of the wireline process, ``since`` (epoch ms), ``purpose``."""

    holder: str
    fingerprint: str = ""
    host: str = ""
    pid: int = 0
    since: int = 0
    purpose: str = "push"

    def describe(self) -> str:
        """``alice (SHA256:...) on host pid 12, push since 12:00:01Z``."""
        since = time.strftime("%H:%M:%SZ", time.gmtime(self.since / 1000))
        who = f"{self.holder} ({self.fingerprint})" if self.fingerprint else self.holder
        return f"{who} on {self.host} pid {self.pid}, {self.purpose} since {since}"


class LockTimeout(Exception):
    """The lock stayed held by ``holder`` for the whole wait."""

    def __init__(self, holder: LockHolder | None) -> None:
        super().__init__(holder.describe() if holder else "unknown holder")
        self.holder = holder


def release_key(app: str, number: int) -> str:
    """KV key of release ``number`` of ``app``: ``<app>.<number:08d>``."""
    return f"{app}.{number:08d}"


_release_decoder = msgspec.json.Decoder(Release)
_key_decoder = msgspec.json.Decoder(StoredKey)
_holder_decoder = msgspec.json.Decoder(LockHolder)


async def _bucket(js, name: str, *, ttl: float | None = None, description: str) -> KeyValue:
    try:
        return await js.key_value(name)
    except Exception:  # BucketNotFoundError, or a race with another creator
        return await js.create_key_value(KeyValueConfig(
            bucket=name, history=1, storage=StorageType.FILE, ttl=ttl,
            description=description))


#: after nats-py's end-of-initial-values marker, how long to wait for entries that may still
#: be in flight (seconds)
_SETTLE_S = 0.25
#: longest wait for the first marker or entry (seconds)
_LOAD_TIMEOUT_S = 10.0


async def _values(kv: KeyValue, pattern: str) -> list[bytes]:
    """The current value of every key matching ``pattern``, in key order.

    nats-py puts its "initial values done" marker (``None``) ahead of the entries when the
    server has already pushed them all but the client has not read them yet, so the marker
    alone can end the read early (an app then missing from ``unify apps ls``). The read ends
    at the marker only when it follows the last initial entry (``delta == 0``); otherwise it
    goes on until that entry arrives or nothing has come for ``_SETTLE_S``.
    """
    try:
        watcher = await kv.watch(pattern, ignore_deletes=True)
    except NotFoundError:
        return []
    latest: dict[str, bytes] = {}
    last_delta: int | None = None
    marker = False
    try:
        while True:
            try:
                entry = await watcher.updates(timeout=_SETTLE_S if marker else _LOAD_TIMEOUT_S)
            except NatsTimeoutError:
                break
            if entry is None:
                if last_delta == 0:
                    break
                marker = True
                continue
            last_delta = entry.delta
            if entry.value:
                latest[entry.key] = entry.value
            if marker and entry.delta == 0:
                break
    finally:
        await watcher.stop()
    return [latest[key] for key in sorted(latest)]


class Store:
    """An open connection to NATS with wireline's buckets; use :meth:`open` and
    :meth:`close`."""

    def __init__(self, nc: NATS, settings: WirelineSettings, common: CommonSettings) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.settings = settings
        self.common = common
        self.keys: KeyValue
        self.releases: KeyValue
        self.logs: KeyValue
        self.locks: KeyValue

    @classmethod
    async def open(cls, settings: WirelineSettings, common: CommonSettings, *,
                   name: str = "wireline", fail_fast: bool = True) -> Store:
        """Connect, make sure the stream and the four buckets exist.

        :raises nats.errors.NoServersError: NATS unreachable (``fail_fast``).
        """
        nc = await connect_nats(common, name=name, fail_fast=fail_fast)
        store = cls(nc, settings, common)
        await ensure_stream(store.js, common)
        store.keys = await _bucket(store.js, settings.bucket("keys"),
                                   description="wireline pusher keys")
        store.releases = await _bucket(store.js, settings.bucket("releases"),
                                       description="wireline releases")
        store.logs = await _bucket(store.js, settings.bucket("logs"),
                                   description="wireline build logs")
        store.locks = await _bucket(store.js, settings.bucket("locks"), ttl=settings.lock_ttl_s,
                                    description="wireline per-app deploy locks")
        return store

    async def close(self) -> None:
        """Flush and close the connection."""
        try:
            await self.nc.drain()
        except Exception:  # already closed
            pass

    # -- keys ---------------------------------------------------------------------------------
    async def list_keys(self) -> list[StoredKey]:
        """Every stored key, sorted by name."""
        keys = [_key_decoder.decode(v) for v in await _values(self.keys, ">")]
        return sorted(keys, key=lambda k: k.name)

    async def put_key(self, key: StoredKey) -> None:
        """Store (or replace) ``key``."""
        await self.keys.put(key.name, msgspec.json.encode(key))

    async def delete_key(self, name: str) -> bool:
        """Delete key ``name``. :returns: whether it existed."""
        try:
            await self.keys.get(name)
        except KeyNotFoundError:
            return False
        await self.keys.purge(name)
        return True

    # -- releases -----------------------------------------------------------------------------
    async def list_releases(self, app: str) -> list[Release]:
        """Releases of ``app``, oldest first."""
        releases = [_release_decoder.decode(v) for v in await _values(self.releases, f"{app}.*")]
        return sorted(releases, key=lambda r: r.number)

    async def apps(self) -> dict[str, list[Release]]:
        """Every app with releases, name -> releases oldest first."""
        result: dict[str, list[Release]] = {}
        for value in await _values(self.releases, ">"):
            release = _release_decoder.decode(value)
            result.setdefault(release.app, []).append(release)
        return {app: sorted(rs, key=lambda r: r.number) for app, rs in sorted(result.items())}

    async def next_number(self, app: str) -> int:
        """One more than the highest release number of ``app`` (1 for a new app). Call it
        while holding the app's lock."""
        releases = await self.list_releases(app)
        return releases[-1].number + 1 if releases else 1

    async def save_release(self, release: Release, log_text: str | None = None) -> None:
        """Store ``release`` (and its log), then publish it as a ``release`` event."""
        await self.releases.put(release_key(release.app, release.number),
                                msgspec.json.encode(release))
        if log_text is not None:
            data = log_text.encode()[-MAX_LOG_BYTES:]
            await self.logs.put(release_key(release.app, release.number), data)
        await self.publish(subjects.app_release_subject(release.app),
                           ReleaseRecorded(release=release, observed_at=_now_ms()),
                           msg_id=f"release:{release.app}:{release.number}:{release.outcome}")

    async def get_log(self, app: str, number: int) -> str | None:
        """The kept output of release ``number``, or ``None``."""
        try:
            entry = await self.logs.get(release_key(app, number))
        except KeyNotFoundError:
            return None
        return (entry.value or b"").decode(errors="replace")

    # -- events -------------------------------------------------------------------------------
    async def publish(self, subject: str, event: Event, *, msg_id: str) -> None:
        """Publish one event; a failure is logged, never raised (the deploy goes on)."""
        try:
            await publish_event(self.js, subject, event, msg_id=msg_id)
        except Exception as err:
            log.warning("event not published", subject=subject,
                        reason=str(err) or type(err).__name__)

    async def publish_output(self, app: str, number: int, first: int,
                             lines: list[str]) -> None:
        """Publish a chunk of output lines as one ``build.output`` event."""
        await self.publish(subjects.app_build_subject(app),
                           BuildOutput(app=app, number=number, first_line=first,
                                       lines=tuple(lines), observed_at=_now_ms()),
                           msg_id=f"build:{app}:{number}:{first}")

    async def publish_failed(self, event: DeployFailed) -> None:
        """Publish ``deploy.failed``."""
        await self.publish(subjects.app_deploy_failed_subject(event.app), event,
                           msg_id=f"failed:{event.app}:{event.number}")

    # -- locks --------------------------------------------------------------------------------
    async def lock_holder(self, app: str) -> LockHolder | None:
        """The live holder of ``app``'s lock, or ``None``."""
        try:
            entry = await self.locks.get(app)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return _holder_decoder.decode(entry.value)

    def lock(self, app: str, holder: LockHolder) -> AppLock:
        """An :class:`AppLock` for ``app`` held as ``holder``."""
        return AppLock(self.locks, app, holder, ttl_s=self.settings.lock_ttl_s)


def _now_ms() -> int:
    return int(time.time() * 1000)


def this_holder(holder: str, fingerprint: str = "", purpose: str = "push") -> LockHolder:
    """A :class:`LockHolder` for this process, since now."""
    return LockHolder(holder=holder, fingerprint=fingerprint, host=socket.gethostname(),
                      pid=os.getpid(), since=_now_ms(), purpose=purpose)


class AppLock:
    """One deploy per app at a time (see the module doc).

    ``async with`` is not offered on purpose: :meth:`acquire` takes the wait limit and a
    callback that is told (once) who holds the lock while waiting.
    """

    def __init__(self, kv: KeyValue, app: str, holder: LockHolder, *, ttl_s: float) -> None:
        self.kv = kv
        self.app = app
        self.holder = holder
        self.ttl_s = ttl_s
        self.revision = 0
        self._beat: asyncio.Task | None = None
        self.lost = False

    async def acquire(self, *, wait_s: float,
                      on_wait: Callable[[LockHolder | None], None] | None = None,
                      poll_s: float = 0.25) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds; starts the heartbeat.

        :raises LockTimeout: still held by someone else after ``wait_s``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        told = False
        value = msgspec.json.encode(self.holder)
        while True:
            try:
                self.revision = await self.kv.create(self.app, value)
                break
            except KeyWrongLastSequenceError:
                pass
            holder = None
            try:
                entry = await self.kv.get(self.app)
                holder = _holder_decoder.decode(entry.value) if entry.value else None
            except KeyNotFoundError:
                continue  # released or expired in between: try again at once
            if not told and on_wait is not None:
                on_wait(holder)
                told = True
            if loop.time() >= deadline:
                raise LockTimeout(holder)
            await asyncio.sleep(min(poll_s, max(0.0, deadline - loop.time())))
        self._beat = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        value = msgspec.json.encode(self.holder)
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                self.revision = await self.kv.update(self.app, value, last=self.revision)
            except KeyWrongLastSequenceError:
                self.lost = True
                log.error("app lock lost", app=self.app)
                return
            except Exception as err:  # NATS away: keep trying within the TTL
                log.warning("lock heartbeat failed", app=self.app,
                            reason=str(err) or type(err).__name__)

    async def release(self) -> None:
        """Stop the heartbeat and delete the entry if it is still ours."""
        if self._beat is not None:
            self._beat.cancel()
            try:
                await self._beat
            except (asyncio.CancelledError, Exception):
                pass
            self._beat = None
        if self.revision and not self.lost:
            try:
                await self.kv.delete(self.app, last=self.revision)
            except Exception as err:  # expired meanwhile, or NATS away: the TTL frees it
                log.warning("lock release failed", app=self.app,
                            reason=str(err) or type(err).__name__)
        self.revision = 0
