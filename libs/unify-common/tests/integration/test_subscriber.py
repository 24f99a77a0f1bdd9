"""The subscriber shell against a real nats-server: cold start, level-triggered reconcile,
acks only after success, redelivery and retry after a failure."""

from __future__ import annotations

import asyncio

import nats

from unify_common.catalog import CatalogState
from unify_common.settings import CommonSettings
from unify_common.subscriber import Subscriber
from tests.fixtures.catalog import delete_instance, make_instance, put_instance


async def wait_until(predicate, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def settings_for(server) -> CommonSettings:
    return CommonSettings(nats_urls=(server.url,), node="test-node")


async def test_cold_start_then_follow(nats_server):
    settings = settings_for(nats_server)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    a = make_instance("web", "a", "10.0.0.1", 80)
    b = make_instance("web", "b", "10.0.0.2", 80)
    await put_instance(js, settings, a)  # before the subscriber exists

    seen: list[CatalogState] = []

    async def reconcile(state: CatalogState) -> None:
        seen.append(state)

    sub = Subscriber(settings, name="t", durable="t-durable", reconcile=reconcile,
                     min_wait=0.01, max_wait=0.2)
    await sub.start()
    try:
        await wait_until(lambda: seen and set(seen[-1].instances) == {a.key})
        await put_instance(js, settings, b)
        await wait_until(lambda: set(seen[-1].instances) == {a.key, b.key})
        await delete_instance(js, settings, a)
        await wait_until(lambda: set(seen[-1].instances) == {b.key})
        assert seen[-1].instances[b.key] == b
        assert sub.reconciles == len(seen)
        for _ in range(200):
            info = await js.consumer_info("UNIFY", "t-durable")
            if (info.num_ack_pending, info.num_pending) == (0, 0):
                break
            await asyncio.sleep(0.05)
        assert (info.num_ack_pending, info.num_pending) == (0, 0)
    finally:
        await sub.stop()
        await nc.close()


async def test_failed_reconcile_is_retried_and_events_redelivered(nats_server):
    settings = settings_for(nats_server)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    attempts: list[int] = []
    fail = {"left": 2}

    async def reconcile(state: CatalogState) -> None:
        attempts.append(len(state.instances))
        if state.instances and fail["left"] > 0:
            fail["left"] -= 1
            raise OSError("sink unavailable")

    sub = Subscriber(settings, name="t", durable="t-retry", reconcile=reconcile,
                     min_wait=0.01, max_wait=0.1, retry_max=0.5)
    await sub.start()
    try:
        await wait_until(lambda: attempts == [0])
        await put_instance(js, settings, make_instance("db", "d1", "10.0.0.5", 5432))
        await wait_until(lambda: fail["left"] == 0 and sub.last_error == "" and
                         sub.reconciles >= 2, timeout=15)
        assert attempts[:3] == [0, 1, 1]
        assert attempts[-1] == 1

        async def acked() -> bool:
            info = await js.consumer_info("UNIFY", "t-retry")
            return info.num_ack_pending == 0 and info.num_pending == 0
        for _ in range(200):
            if await acked():
                break
            await asyncio.sleep(0.05)
        assert await acked()
    finally:
        await sub.stop()
        await nc.close()
