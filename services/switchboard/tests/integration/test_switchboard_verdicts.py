"""The verdict bucket against a real nats-server: created with its max age, one document per
node, written when the verdicts change and rewritten on refresh."""

from __future__ import annotations

import msgspec
import nats

from switchboard.verdicts import VerdictPublisher, verdict_key
from unify_common.listeners import VerdictDocument, VhostVerdict

OK = VhostVerdict(True)
NO_CERT = VhostVerdict(False, "missing-certificate", "no certificate covers b.example.com; "
                       "https route skipped", "b")


async def test_written_on_change_and_refreshed(sb_common):
    nc = await nats.connect(list(sb_common.nats_urls))
    try:
        js = nc.jetstream()
        clock = iter(range(1000, 2000, 1)).__next__  # seconds
        publisher = VerdictPublisher("h2-sb-verdicts", 30.0, "node 1/a", clock=clock)
        await publisher.open(js)
        kv = await js.key_value("h2-sb-verdicts")
        assert (await kv.status()).ttl == 30.0

        async def stored():
            entry = await kv.get(verdict_key("node 1/a"))
            return msgspec.json.decode(entry.value, type=VerdictDocument)

        await publisher.offer({"a.example.com": OK}, revision=3)
        await publisher.offer({"a.example.com": OK}, revision=4)  # same verdicts: no write
        assert publisher.writes == 1
        assert await stored() == VerdictDocument("node 1/a", 3, 1_000_000,
                                                 {"a.example.com": OK})
        await publisher.offer({"a.example.com": OK, "b.example.com": NO_CERT}, revision=5)
        await publisher.refresh()
        assert publisher.writes == 3
        assert await stored() == VerdictDocument(
            "node 1/a", 5, 1_002_000, {"a.example.com": OK, "b.example.com": NO_CERT})
        assert verdict_key("node 1/a") == "node_1_a"

        # a second switchboard opens the existing bucket and writes its own key beside it
        other = VerdictPublisher("h2-sb-verdicts", 30.0, "node-2", clock=clock)
        await other.open(js)
        await other.offer({}, revision=5)
        assert sorted(await kv.keys()) == ["node-2", "node_1_a"]
    finally:
        await nc.close()
