"""The subscriber shell against a real nats-server: cold start, level-triggered reconcile,
acks only after success, redelivery and retry after a failure."""

from __future__ import annotations

import asyncio

import nats

from unify_common import subjects
from unify_common.catalog import CatalogState
from unify_common.events import InstanceRegistered
from unify_common.natsio import publish_event
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


async def test_quick_runs_once_per_reconcile_before_the_debounce(nats_server):
    settings = settings_for(nats_server)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    a = make_instance("web", "a", "10.0.0.1", 80)
    b = make_instance("web", "b", "10.0.0.2", 80)
    c = make_instance("web", "c", "10.0.0.3", 80)
    d = make_instance("web", "d", "10.0.0.4", 80)
    full: list[set[str]] = []
    quick: list[tuple[set[str], int]] = []  # (instances seen, full reconciles done by then)

    async def reconcile(state: CatalogState) -> None:
        full.append(set(state.instances))

    async def quick_step(state: CatalogState) -> None:
        quick.append((set(state.instances), len(full)))

    sub = Subscriber(settings, name="t", durable="t-quick", reconcile=reconcile,
                     min_wait=1.0, max_wait=3.0, quick=quick_step)
    await sub.start()
    try:
        await wait_until(lambda: full == [set()])  # cold start: no quick run before it
        assert quick == []
        await put_instance(js, settings, a)
        await wait_until(lambda: len(quick) == 1)
        assert quick == [({a.key}, 1)]
        assert full == [set()]  # the debounce (1 s of quiet) has not expired yet
        await put_instance(js, settings, b)  # same burst: no second quick run
        await wait_until(lambda: len(full) == 2, timeout=5)
        assert full == [set(), {a.key, b.key}]
        assert quick == [({a.key}, 1)]
        await put_instance(js, settings, c)  # re-armed by the reconcile
        await wait_until(lambda: len(quick) == 2)
        assert quick[1] == ({a.key, b.key, c.key}, 2)
        await wait_until(lambda: len(full) == 3, timeout=5)
        assert full[2] == {a.key, b.key, c.key}
        assert (sub.quick_runs, sub.reconciles) == (2, 3)
        # an event alone (the bucket not written yet) reconciles but runs no quick step
        await publish_event(js, subjects.instance_subject("registered", d.service),
                            InstanceRegistered(instance=d, observed_at=1), msg_id="t-quick-d")
        await wait_until(lambda: len(full) == 4, timeout=5)
        assert full[3] == {a.key, b.key, c.key}
        assert (sub.quick_runs, sub.reconciles) == (2, 4)
    finally:
        await sub.stop()
        await nc.close()


async def test_failing_quick_step_neither_stops_the_reconcile_nor_naks(nats_server):
    settings = settings_for(nats_server)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    a = make_instance("web", "a", "10.0.0.1", 80)
    full: list[set[str]] = []

    async def reconcile(state: CatalogState) -> None:
        full.append(set(state.instances))

    async def quick_step(state: CatalogState) -> None:
        raise RuntimeError("quick step broke")

    sub = Subscriber(settings, name="t", durable="t-quick-fail", reconcile=reconcile,
                     min_wait=0.3, max_wait=1.0, quick=quick_step)
    await sub.start()
    try:
        await wait_until(lambda: full == [set()])
        await put_instance(js, settings, a)
        await wait_until(lambda: len(full) == 2)
        assert full[1] == {a.key}
        assert (sub.quick_runs, sub.reconciles, sub.last_error) == (1, 2, "")

        async def acked() -> bool:
            info = await js.consumer_info("UNIFY", "t-quick-fail")
            return (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)
        for _ in range(100):
            if await acked():
                break
            await asyncio.sleep(0.05)
        assert await acked()
    finally:
        await sub.stop()
        await nc.close()
