"""Cold reads of the catalog bucket against a real nats-server."""

from __future__ import annotations

import nats

from tests.fixtures.catalog import make_instance
from unify_common.catalog import read_catalog
from unify_common.events import encode_instance
from unify_common.natsio import ensure_catalog_bucket
from unify_common.settings import CommonSettings


async def test_every_cold_read_sees_the_whole_catalog(nats_server):
    """nats-py's end-of-initial-values marker can overtake entries already on their way;
    a cold read must still return every instance, every time."""
    settings = CommonSettings(nats_urls=(nats_server.url,), node="test-node")
    nc = await nats.connect(nats_server.url)
    try:
        bucket = await ensure_catalog_bucket(nc.jetstream(), settings)
        instances = [make_instance("web", f"web-{i}", "10.0.0.1", 8000 + i) for i in range(300)]
        for inst in instances:
            await bucket.put(inst.key, encode_instance(inst))
        sizes = [len((await read_catalog(bucket)).instances) for _ in range(300)]
        assert sizes == [300] * 300
        empty = await ensure_catalog_bucket(nc.jetstream(), CommonSettings(
            nats_urls=(nats_server.url,), node="test-node", catalog_bucket="empty-catalog"))
        assert (await read_catalog(empty)).instances == {}
    finally:
        await nc.close()
