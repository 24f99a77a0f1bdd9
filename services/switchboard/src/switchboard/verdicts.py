"""switchboard's per-vhost verdicts, published in a NATS KV bucket for dns411.

Every reconcile builds, beside the configuration, a verdict for each host name
``<vhost>.<dns>`` a routed service asks for (:attr:`switchboard.model.Desired.verdicts`):
accepted when a frontend routes it, else rejected with the reason. dns411 withholds the
CNAME of a name any live switchboard rejects, so DNS never points at a name HAProxy answers
404 for.

The bucket (``UNIFY_VERDICT_BUCKET``, created here with history 1 and a max age of
``UNIFY_SWITCHBOARD_VERDICT_TTL`` seconds) holds one key per switchboard node (the node name,
characters outside ``[-_=A-Za-z0-9]`` replaced by ``_``) whose value is a
:class:`~unify_common.listeners.VerdictDocument` (JSON). A node writes its document when the
verdicts change (after an apply) and rewrites it every third of the max age, so the document
of a node that vanished expires with the bucket's max age. A failed write is logged and tried
again at the next apply or refresh; it never fails an apply.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from unify_common.listeners import VerdictDocument, VhostVerdict
from unify_common.logs import get_logger

__all__ = ["VerdictPublisher", "verdict_key"]

log = get_logger("switchboard.verdicts")
_encoder = msgspec.json.Encoder()
_UNSAFE_KEY = re.compile(r"[^-_=A-Za-z0-9]")


def verdict_key(node: str) -> str:
    """The bucket key of ``node``'s document: the node name with every character outside
    ``[-_=A-Za-z0-9]`` replaced by ``_`` (NATS KV keys allow no spaces or wildcards; the
    document itself carries the node's real name)."""
    return _UNSAFE_KEY.sub("_", node) or "_"


class VerdictPublisher:
    """Writes this node's :class:`VerdictDocument` into the verdict bucket.

    :param bucket: the bucket name (``UNIFY_VERDICT_BUCKET``).
    :param ttl: the bucket's max age in seconds (``UNIFY_SWITCHBOARD_VERDICT_TTL``); the
        document is rewritten every ``ttl / 3`` seconds (:meth:`run_refresh`).
    :param node: this switchboard's node name.
    :param clock: wall-clock seconds (``time.time``), for ``written_at``.
    """

    def __init__(self, bucket: str, ttl: float, node: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.bucket_name = bucket
        self.ttl = ttl
        self.node = node
        self.key = verdict_key(node)
        self._clock = clock
        self._kv: KeyValue | None = None
        self._vhosts: dict[str, VhostVerdict] | None = None  # the last verdicts offered
        self._revision = 0
        self._written: dict[str, VhostVerdict] | None = None  # the last verdicts written
        self._lock = asyncio.Lock()
        #: documents written so far (for status and tests)
        self.writes = 0

    async def open(self, js: JetStreamContext) -> None:
        """Open the bucket, creating it when missing (history 1, file storage, max age
        ``ttl``). An existing bucket is used as it is."""
        try:
            self._kv = await js.key_value(self.bucket_name)
        except Exception:  # BucketNotFoundError, or a race with another switchboard
            self._kv = await js.create_key_value(KeyValueConfig(
                bucket=self.bucket_name, history=1, ttl=self.ttl, storage=StorageType.FILE,
                description="switchboard per-vhost verdicts, one key per node"))

    async def offer(self, vhosts: Mapping[str, VhostVerdict], revision: int) -> None:
        """The verdicts of an applied state built from catalog ``revision``: written when
        they differ from the last ones written (the revision alone is no change, but the next
        :meth:`refresh` writes it: dns411 holds back a name no document mentions only while
        every document is older than its catalog)."""
        async with self._lock:
            self._vhosts = dict(vhosts)
            self._revision = revision  # the periodic rewrite carries the latest one
            if self._vhosts != self._written:
                await self._write()

    async def refresh(self) -> None:
        """Rewrite the last verdicts offered (a new ``written_at``), so they do not expire."""
        async with self._lock:
            if self._vhosts is not None:
                await self._write()

    async def run_refresh(self) -> None:
        """:meth:`refresh` every ``ttl / 3`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self.refresh()

    async def _write(self) -> None:
        vhosts = self._vhosts
        if self._kv is None or vhosts is None:
            return
        doc = VerdictDocument(node=self.node, revision=self._revision,
                              written_at=int(self._clock() * 1000), vhosts=vhosts)
        try:
            await self._kv.put(self.key, _encoder.encode(doc))
        except Exception as err:  # NATS down: the next apply or refresh writes again
            log.warning("cannot write the verdicts", bucket=self.bucket_name, error=str(err))
            return
        self._written = vhosts
        self.writes += 1
        log.debug("verdicts written", bucket=self.bucket_name, revision=self._revision,
                  vhosts=len(vhosts), rejected=sum(not v.accepted for v in vhosts.values()))
