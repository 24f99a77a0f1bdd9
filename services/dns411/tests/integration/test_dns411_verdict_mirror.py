"""dns411's mirror of switchboard's verdict bucket against a real nats-server: a bucket that
appears later is found, a rejection withholds, an acceptance or a deletion gives back, and
the document of a node that stopped rewriting expires after the bucket's max age."""

from __future__ import annotations

import msgspec
import nats
from nats.js.api import KeyValueConfig

from dns411.verdict_mirror import VerdictMirror
from dns411.verdicts import Rejection
from unify_common.listeners import VerdictDocument, VhostVerdict
from unify_testkit import returns
from unify_testkit.aio import wait_until

NO_CERT = VhostVerdict(False, "missing-certificate", "none", "shop")


def doc(node, verdict):
    return msgspec.json.encode(VerdictDocument(node, 1, 0, {"shop.example.com": verdict}))


async def test_mirror_follows_and_expires(dns_common):
    nc = await nats.connect(list(dns_common.nats_urls))
    changes = []
    mirror = VerdictMirror(nc.jetstream(), "h2-mirror", on_change=lambda: changes.append(1),
                           poll=0.1)
    try:
        mirror.start()
        assert await mirror.wait_loaded(5.0)  # no bucket yet: nothing to wait for
        assert mirror.rejected() == {}
        js = nc.jetstream()
        kv = await js.create_key_value(KeyValueConfig(bucket="h2-mirror", history=1, ttl=3.0))
        await kv.put("n1", doc("n1", VhostVerdict(True)))
        await kv.put("n2", doc("n2", NO_CERT))
        withheld = {"shop.example.com": Rejection("n2", "missing-certificate", "none", "shop")}

        def rejected(expected):
            assert mirror.rejected() == expected
        await wait_until(lambda: rejected(withheld), returns, timeout=10)
        assert mirror.ttl == 3.0
        await kv.put("n2", doc("n2", VhostVerdict(True)))
        await wait_until(lambda: rejected({}), returns)
        await kv.put("n2", doc("n2", NO_CERT))
        await wait_until(lambda: rejected(withheld), returns)
        await kv.delete("n2")
        await wait_until(lambda: rejected({}), returns)
        await kv.put("n2", doc("n2", NO_CERT))
        await wait_until(lambda: rejected(withheld), returns)
        seen = len(changes)
        # n2 stops rewriting: after the max age its rejection no longer counts
        await wait_until(lambda: rejected({}), returns, timeout=10)
        assert len(changes) == seen + 1
        assert [d.node for d in mirror.documents()] == []
        assert (await js.stream_info("KV_h2-mirror")).state.consumer_count == 1  # its watch
        await mirror.stop()
        assert (await js.stream_info("KV_h2-mirror")).state.consumer_count == 0
    finally:
        await mirror.stop()
        await nc.close()
