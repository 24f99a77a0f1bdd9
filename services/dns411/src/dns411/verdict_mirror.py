"""The shell side of switchboard's verdicts: follow the verdict bucket (see :mod:`.verdicts`).

"Live": a document counts for the bucket's max age (the ``ttl`` switchboard created the
bucket with) after dns411 last received it. switchboard rewrites its document every third of
that, so the document of a node that vanished stops counting one max age after its last
write reached dns411 (the server drops it too, but tells no watcher).

:class:`VerdictMirror` waits for the bucket to exist (polling, as switchboard may start
later or not at all), follows it with an ephemeral watch, and calls ``on_change`` whenever
the withheld names changed (by a document written, deleted or expired), or what the documents
cover changed while names wait for a verdict (:attr:`VerdictMirror.waiting`), so the service
reconciles with the whole state again (level-triggered: the same documents give the same
answer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from unify_common.listeners import VerdictDocument
from unify_common.logs import get_logger

from .verdicts import Judged, Rejection, judged, rejected_names

__all__ = ["VerdictMirror"]

log = get_logger("dns411.verdicts")
_decoder = msgspec.json.Decoder(VerdictDocument)


class VerdictMirror:
    """Follows the verdict bucket; :meth:`rejected` is what dns411 withholds now.

    :param js: a JetStream context.
    :param bucket: the bucket name (``UNIFY_VERDICT_BUCKET``).
    :param on_change: called (no arguments) when the withheld names changed.
    :param clock: monotonic seconds (``time.monotonic``), for the documents' life.
    :param poll: seconds between looks for a bucket that does not exist yet.
    :param default_ttl: seconds a document lives when the bucket has no max age.
    """

    def __init__(self, js: JetStreamContext, bucket: str, *,
                 on_change: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, poll: float = 5.0,
                 default_ttl: float = 60.0) -> None:
        self._js = js
        self.bucket = bucket
        self._on_change = on_change
        self._clock = clock
        self._poll = poll
        self.ttl = default_ttl
        #: key -> (document, monotonic time it was received)
        self._docs: dict[str, tuple[VerdictDocument, float]] = {}
        self._task: asyncio.Task | None = None
        self._watcher = None
        self._expiry: asyncio.TimerHandle | None = None
        self._loaded = asyncio.Event()  # the first look found no bucket, or read it all
        self._waited = False
        #: what :meth:`rejected` answers, recomputed in the event loop on every change
        self._rejected: Mapping[str, Rejection] = {}
        #: what :meth:`judged` answers, recomputed with it
        self._judged: Judged | None = None
        #: vhost names the last reconcile held back for want of a verdict (set by the
        #: reconciler); while any wait, a newer document asks for a reconcile
        self.waiting: frozenset[str] = frozenset()
        #: documents received so far (for status and tests)
        self.received = 0

    def start(self) -> None:
        """Start following in the background (waits for the bucket to exist)."""
        self._task = asyncio.create_task(self._run(), name="dns411-verdicts")

    async def wait_loaded(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the first look at the bucket (none there yet,
        or every document in it read), so a first reconcile does not publish a name a
        switchboard already rejects; returns whether it happened in time. Only the first
        call waits: later ones answer at once (a bucket that cannot be read holds back no
        reconcile but the first)."""
        if not self._waited:
            self._waited = True
            try:
                await asyncio.wait_for(self._loaded.wait(), timeout)
            except TimeoutError:
                pass
        return self._loaded.is_set()

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Stop following and delete the watch's consumer on the server (each step bounded
        by ``timeout`` seconds; a consumer left behind expires after 30 s unwatched)."""
        if self._expiry is not None:
            self._expiry.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=timeout)
        if self._watcher is not None:
            sub = getattr(self._watcher, "_sub", None)  # nats-py KeyWatcher's subscription
            try:
                info = await asyncio.wait_for(sub.consumer_info(), timeout)
            except Exception:  # connection closed: the ephemeral consumer expires
                info = None
            try:
                await asyncio.wait_for(self._watcher.stop(), timeout)
            except Exception:
                pass
            if info is not None:  # nats-py's unsubscribe leaves the consumer on the server
                try:
                    await asyncio.wait_for(
                        self._js.delete_consumer(info.stream_name, info.name), timeout)
                except Exception as err:  # already gone, or NATS away: it expires in 30 s
                    log.debug("verdict watch not deleted; it expires",
                              error=str(err) or type(err).__name__)

    def documents(self) -> list[VerdictDocument]:
        """The live documents (received less than ``ttl`` seconds ago)."""
        now = self._clock()
        return [doc for doc, at in self._docs.values() if now - at < self.ttl]

    def rejected(self) -> Mapping[str, Rejection]:
        """:func:`rejected_names` of the live documents, as of the last change or expiry
        (computed in the event loop; safe to read from a worker thread, never changed in
        place)."""
        return self._rejected

    def hold(self, names: Iterable[str], seen: Judged | None) -> None:
        """The reconciler held back ``names`` for want of a verdict, having read
        :meth:`judged` as ``seen`` (call it in the event loop). A later document that
        changes what is covered asks for a reconcile; if one already did meanwhile, the
        reconcile is asked for now."""
        self.waiting = frozenset(names)
        if self.waiting and self._judged != seen:
            self._on_change()

    def judged(self) -> Judged | None:
        """:func:`~dns411.verdicts.judged` of the live documents, as of the last change or
        expiry (same rules as :meth:`rejected`)."""
        return self._judged

    async def _open(self):
        while True:
            try:
                kv = await self._js.key_value(self.bucket)
            except NotFoundError:
                self._loaded.set()  # nothing to wait for: no switchboard wrote yet
                await asyncio.sleep(self._poll)
                continue
            except Exception as err:  # NATS away: the connection reconnects by itself
                log.warning("cannot open the verdict bucket; trying again",
                            bucket=self.bucket, error=str(err) or type(err).__name__)
                await asyncio.sleep(self._poll)
                continue
            try:
                status = await kv.status()
                if status.ttl:
                    self.ttl = status.ttl
            except Exception:  # keep the default life
                pass
            return kv

    async def _run(self) -> None:
        kv = await self._open()
        self._watcher = watcher = await kv.watchall(inactive_threshold=30.0)
        log.info("following switchboard's verdicts", bucket=self.bucket, ttl_s=self.ttl)
        async for entry in watcher:
            if entry is None:  # the end of the initial values
                self._loaded.set()
                continue
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                if self._docs.pop(entry.key, None) is not None:
                    self._changed()
                continue
            try:
                doc = _decoder.decode(entry.value)
            except msgspec.DecodeError as err:  # hostile or foreign value: ignored
                log.warning("verdict document ignored", key=entry.key, error=str(err))
                continue
            self.received += 1
            old = self._docs.get(entry.key)
            self._docs[entry.key] = (doc, self._clock())
            if old is None or (old[0].vhosts, old[0].revision) != (doc.vhosts, doc.revision):
                self._changed()
            else:
                self._arm_expiry()

    def _changed(self) -> None:
        self._arm_expiry()
        self._recompute()

    def _recompute(self) -> None:
        """Recompute :meth:`rejected`; ``on_change`` only when it changed."""
        documents = self.documents()
        rejected = rejected_names(documents)
        covered = judged(documents)
        changed = rejected != self._rejected
        progressed = covered != self._judged and bool(self.waiting)
        self._rejected, self._judged = rejected, covered
        if changed or progressed:
            self._on_change()

    def _arm_expiry(self) -> None:
        """Wake ``on_change`` when the oldest live document expires."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if not self._docs:
            return
        now = self._clock()
        oldest = min(at for _, at in self._docs.values())
        delay = max(0.0, oldest + self.ttl - now)
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        now = self._clock()
        gone = [key for key, (_, at) in self._docs.items() if now - at >= self.ttl]
        for key in gone:
            del self._docs[key]
        self._expiry = None
        self._arm_expiry()
        if gone:
            log.info("switchboard verdicts expired", keys=gone)
            self._recompute()
