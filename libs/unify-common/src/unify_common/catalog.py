"""The catalog state in the JetStream KV bucket, and a live in-memory mirror of it.

consul-bridge is the only writer. Keys (see :func:`unify_common.events.catalog_key`):

* ``i.<hash>`` → one :class:`~unify_common.events.Instance` (JSON)
* ``k.<hash>`` → one :class:`~unify_common.events.KvEntry` (JSON) from a watched KV prefix

A subscriber starting cold reads the whole bucket, then follows it; either way it sees the
complete current catalog, which is what its reconciler takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
from nats.js.kv import KeyValue

from .events import Instance, KvEntry, decode_instance
from .logs import get_logger
from .state import CatalogState

__all__ = ["CatalogMirror", "CatalogState"]

log = get_logger("unify.catalog")
_kv_decoder = msgspec.json.Decoder(KvEntry)


class CatalogMirror:
    """Follows the catalog bucket and keeps the latest :class:`CatalogState` in memory.

    ``on_change`` is called (synchronously, no arguments) after every applied update.
    Undecodable values are logged and ignored (the rest of the state stays).

    The watch is an ephemeral ordered consumer: :meth:`stop` deletes it on the server, and
    one left behind by a process that died goes after ``watch_inactive_s`` seconds (default
    30) without a client listening, so no restart leaves a consumer for good.
    """

    def __init__(self, bucket: KeyValue, *, on_change: Callable[[], None] | None = None,
                 watch_inactive_s: float = 30.0):
        self._watch_inactive_s = watch_inactive_s
        self._bucket = bucket
        self._on_change = on_change or (lambda: None)
        self._instances: dict[str, Instance] = {}
        self._kv_by_catalog_key: dict[str, KvEntry] = {}
        self._revision = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watcher: KeyValue.KeyWatcher | None = None
        self._initial_seq = 0  # the bucket's last sequence when the watch began
        self._marker = False
        #: number of bucket entries (puts and deletes) applied so far
        self.updates = 0

    @property
    def revision(self) -> int:
        """Last bucket sequence applied."""
        return self._revision

    def snapshot(self) -> CatalogState:
        """The current state (copies of the dicts; instances themselves are immutable)."""
        return CatalogState(
            instances=dict(self._instances),
            kv={e.key: e for e in self._kv_by_catalog_key.values()},
            revision=self._revision,
        )

    async def start(self, *, timeout: float = 30.0) -> None:
        """Start following; returns once the initial content is loaded.

        "Loaded" means nats-py's end-of-initial-values marker has arrived *and* the entry
        holding the bucket's last sequence at start has been applied: the marker alone can
        come before entries already on their way to the client (it is decided from consumer
        info while delivered messages still wait for the callback), which would make a
        cold reader see a partial catalog.

        :raises asyncio.TimeoutError: the initial load took longer than ``timeout`` seconds.
        """
        status = await self._bucket.status()
        state = status.stream_info.state
        self._initial_seq = state.last_seq if state.messages else 0
        self._watcher = await self._bucket.watchall(inactive_threshold=self._watch_inactive_s)
        self._task = asyncio.create_task(self._run(), name="catalog-mirror")
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Stop following; every step is bounded by ``timeout`` seconds (nats-py's watcher
        stop can otherwise wait for ever on a broken connection)."""
        if self._task is not None:
            self._task.cancel()
        if self._watcher is not None:
            try:
                await asyncio.wait_for(self._watcher.stop(), timeout)  # type: ignore[no-untyped-call]
            except Exception:  # connection closed, or the server did not answer in time
                pass
            await self._delete_watch_consumer(timeout)
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout)

    async def _delete_watch_consumer(self, timeout: float) -> None:
        """Delete the watch's ephemeral consumer now rather than after its inactivity
        threshold (nats-py's unsubscribe leaves it on the server). Best effort."""
        sub = getattr(self._watcher, "_sub", None)  # nats-py KeyWatcher's PushSubscription
        if sub is None:
            return
        try:
            info = await asyncio.wait_for(sub.consumer_info(), timeout)
            await asyncio.wait_for(
                self._bucket._js.delete_consumer(info.stream_name, info.name), timeout)
        except Exception as err:  # closed connection, already gone: it expires on its own
            log.debug("watch consumer not deleted; it expires",
                      error=str(err) or type(err).__name__)

    async def _run(self) -> None:
        assert self._watcher is not None, "start() sets the watcher first"
        async for entry in self._watcher:
            if entry is None:
                self._marker = True
            else:
                self._apply(entry.key, entry.value, entry.operation, entry.revision)
            if self._ready.is_set():
                self._on_change()
            elif self._marker and self._revision >= self._initial_seq:
                self._ready.set()
                self._on_change()

    def _apply(self, key: str, value: bytes | None, operation: str | None, revision: int) -> None:
        self._revision = max(self._revision, revision)
        self.updates += 1
        deleted = operation in ("DEL", "PURGE")
        try:
            if key.startswith("i."):
                if deleted:
                    self._instances.pop(key, None)
                else:
                    self._instances[key] = decode_instance(value or b"")
            elif key.startswith("k."):
                if deleted:
                    self._kv_by_catalog_key.pop(key, None)
                else:
                    self._kv_by_catalog_key[key] = _kv_decoder.decode(value or b"")
        except msgspec.MsgspecError as err:
            log.error("undecodable catalog entry ignored", key=key, error=str(err))


async def read_catalog(bucket: KeyValue, *, timeout: float = 30.0) -> CatalogState:
    """Read the whole bucket once and return it as a :class:`CatalogState`."""
    mirror = CatalogMirror(bucket)
    await mirror.start(timeout=timeout)
    try:
        return mirror.snapshot()
    finally:
        await mirror.stop()
