"""The subscriber shell against a real nats-server: it waits for the catalog consul-bridge
declares, reconciles from the bucket watch alone (level-triggered), retries a failure, resyncs
while quiet, runs the quick step on the leading edge and leaves no consumer behind."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest

from tests.fixtures.catalog import declare_catalog, delete_instance, make_instance, put_instance
from unify_common import subjects
from unify_common.catalog import CatalogState
from unify_common.events import InstanceRegistered
from unify_common.natsio import CatalogMissing, publish_event
from unify_common.settings import CommonSettings
from unify_common.subscriber import Subscriber
from unify_testkit.aio import wait_until


def settings_for(server) -> CommonSettings:
    return CommonSettings(nats_urls=(server.url,), node="test-node")


@pytest.fixture
async def js(nats_server):
    """A JetStream context on a server where the stream and bucket are declared (as the
    bridge does)."""
    nc = await nats.connect(nats_server.url)
    context = nc.jetstream()
    await declare_catalog(context, settings_for(nats_server))
    yield context
    await nc.close()


async def consumers(js) -> dict[str, int]:
    """Consumers on the server, by stream."""
    return {info.config.name: info.state.consumer_count for info in await js.streams_info()}


async def test_cold_start_then_follow_with_no_durable_consumer(nats_server, js):
    settings = settings_for(nats_server)
    a = make_instance("web", "a", "10.0.0.1", 80)
    b = make_instance("web", "b", "10.0.0.2", 80)
    await put_instance(js, settings, a)  # before the subscriber exists
    assert await consumers(js) == {"UNIFY": 0, "KV_unify-catalog": 0}

    seen: list[CatalogState] = []

    async def reconcile(state: CatalogState) -> None:
        seen.append(state)

    sub = Subscriber(settings, name="t", reconcile=reconcile, min_wait=0.01, max_wait=0.2)
    await sub.start()
    try:
        await wait_until(lambda: seen and set(seen[-1].instances) == {a.key})
        # one ephemeral watch of the bucket, nothing on the events stream
        assert await consumers(js) == {"UNIFY": 0, "KV_unify-catalog": 1}
        await put_instance(js, settings, b)
        await wait_until(lambda: set(seen[-1].instances) == {a.key, b.key})
        await delete_instance(js, settings, a)
        await wait_until(lambda: set(seen[-1].instances) == {b.key})
        assert seen[-1].instances[b.key] == b
        assert sub.reconciles == len(seen)
        assert sub.reasons["request"] == 1  # the cold start; the rest came from changes
        assert sub.reasons["change"] == len(seen) - 1
    finally:
        await sub.stop()
    assert await consumers(js) == {"UNIFY": 0, "KV_unify-catalog": 0}  # the watch is gone


async def test_failed_reconcile_is_retried_with_backoff(nats_server, js):
    settings = settings_for(nats_server)
    attempts: list[int] = []
    fail = {"left": 2}

    async def reconcile(state: CatalogState) -> None:
        attempts.append(len(state.instances))
        if state.instances and fail["left"] > 0:
            fail["left"] -= 1
            raise OSError("sink unavailable")

    sub = Subscriber(settings, name="t", reconcile=reconcile, min_wait=0.01, max_wait=0.1,
                     retry_base=0.05, retry_max=0.2, rng=lambda a, b: 1.0)
    await sub.start()
    try:
        await wait_until(lambda: attempts == [0])
        await put_instance(js, settings, make_instance("db", "d1", "10.0.0.5", 5432))
        await wait_until(lambda: fail["left"] == 0 and sub.last_error == "" and
                         sub.reconciles == 2, timeout=15)
        assert attempts == [0, 1, 1, 1]
        assert sub.reasons == {"request": 1, "change": 1, "retry": 2}
        assert sub.schedule.failures == 0 and sub.schedule.retry_at is None
    finally:
        await sub.stop()


async def test_quiet_catalog_is_resynced_and_a_request_runs_at_once(nats_server, js):
    settings = CommonSettings(nats_urls=(nats_server.url,), node="test-node", resync=0.2)
    runs: list[int] = []

    async def reconcile(state: CatalogState) -> None:
        runs.append(state.revision)

    sub = Subscriber(settings, name="t", reconcile=reconcile, min_wait=0.5, max_wait=5.0)
    await sub.start()
    try:
        await wait_until(lambda: sub.reasons.get("resync", 0) >= 2, timeout=5)
        assert sub.reasons["request"] == 1 and "change" not in sub.reasons
        before = len(runs)
        sub.request()  # runs at once, whatever the debounce (0.5 s) and the resync timer
        await wait_until(lambda: sub.reasons["request"] == 2, timeout=5)
        assert len(runs) > before
        assert set(runs) == {0}  # the bucket is empty: every run saw the same state
    finally:
        await sub.stop()


async def test_events_on_the_stream_do_not_wake_the_subscriber(nats_server, js):
    """Events are for audit and reports: only the bucket wakes a subscriber. An event
    published before a bucket write never runs a reconcile of its own."""
    settings = settings_for(nats_server)
    full: list[set[str]] = []

    async def reconcile(state: CatalogState) -> None:
        full.append(set(state.instances))

    sub = Subscriber(settings, name="t", reconcile=reconcile, min_wait=0.01, max_wait=0.1)
    await sub.start()
    try:
        await wait_until(lambda: full == [set()])
        d = make_instance("web", "d", "10.0.0.4", 80)
        await publish_event(js, subjects.instance_subject("registered", d.service),
                            InstanceRegistered(instance=d, observed_at=1), msg_id="t-event-d")
        await put_instance(js, settings, d)  # publishes its own event first, then the bucket
        await wait_until(lambda: len(full) == 2)
        assert full == [set(), {d.key}]
        assert sub.reasons == {"request": 1, "change": 1}
    finally:
        await sub.stop()


async def test_quick_runs_once_per_reconcile_before_the_debounce(nats_server, js):
    settings = settings_for(nats_server)
    a = make_instance("web", "a", "10.0.0.1", 80)
    b = make_instance("web", "b", "10.0.0.2", 80)
    c = make_instance("web", "c", "10.0.0.3", 80)
    full: list[set[str]] = []
    quick: list[tuple[set[str], int]] = []  # (instances seen, full reconciles done by then)

    async def reconcile(state: CatalogState) -> None:
        full.append(set(state.instances))

    async def quick_step(state: CatalogState) -> None:
        quick.append((set(state.instances), len(full)))

    sub = Subscriber(settings, name="t", reconcile=reconcile, min_wait=1.0, max_wait=3.0,
                     quick=quick_step)
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
    finally:
        await sub.stop()


async def test_failing_quick_step_does_not_stop_the_reconcile(nats_server, js):
    settings = settings_for(nats_server)
    a = make_instance("web", "a", "10.0.0.1", 80)
    full: list[set[str]] = []

    async def reconcile(state: CatalogState) -> None:
        full.append(set(state.instances))

    async def quick_step(state: CatalogState) -> None:
        raise RuntimeError("quick step broke")

    sub = Subscriber(settings, name="t", reconcile=reconcile, min_wait=0.3, max_wait=1.0,
                     quick=quick_step)
    await sub.start()
    try:
        await wait_until(lambda: full == [set()])
        await put_instance(js, settings, a)
        await wait_until(lambda: len(full) == 2)
        assert full[1] == {a.key}
        assert (sub.quick_runs, sub.reconciles, sub.last_error) == (1, 2, "")
        assert sub.schedule.failures == 0
    finally:
        await sub.stop()


async def test_start_waits_for_the_bridge_to_declare_the_catalog(nats_server, caplog):
    settings = settings_for(nats_server)
    seen: list[CatalogState] = []

    async def reconcile(state: CatalogState) -> None:
        seen.append(state)

    sub = Subscriber(settings, name="t", reconcile=reconcile, min_wait=0.01)
    with caplog.at_level(logging.WARNING, logger="unify.subscriber"):
        starting = asyncio.create_task(sub.start())
        await wait_until(lambda: any(r.getMessage().startswith("waiting for the catalog")
                                     for r in caplog.records))
        assert not starting.done()
        nc = await nats.connect(nats_server.url)
        try:
            await declare_catalog(nc.jetstream(), settings)  # the bridge comes up
            await asyncio.wait_for(starting, 10)
            await wait_until(lambda: len(seen) == 1)
            info = await nc.jetstream().stream_info("UNIFY")
            assert info.config.max_age == 7 * 24 * 3600.0  # as the bridge left it
        finally:
            await sub.stop()
            await nc.close()
    first = next(r for r in caplog.records if r.getMessage().startswith("waiting"))
    assert first.fields["reason"] == "stream UNIFY does not exist yet"
    assert first.fields["attempt"] == 1


async def test_start_gives_up_when_no_bridge_declares_the_catalog(nats_server):
    sub = Subscriber(settings_for(nats_server), name="t", reconcile=None, catalog_wait=0.5)
    with pytest.raises(CatalogMissing) as err:
        await sub.start()
    assert str(err.value) == (
        "stream UNIFY does not exist yet after 0.5 s: consul-bridge declares the stream and "
        "the catalog bucket; is it running against this NATS?")
    assert sub.nc.is_closed
    nc = await nats.connect(nats_server.url)
    try:  # nothing was created
        assert await nc.jetstream().streams_info() == []
    finally:
        await nc.close()


async def test_health_records_consumed_published_and_outcomes(nats_server, js):
    from unify_common.health import Health

    settings = settings_for(nats_server)
    health = Health("t-sub", version="1.2.3", clock=lambda: 1000.0)
    fail = {"left": 1}

    async def reconcile(state: CatalogState) -> None:
        if state.instances and fail["left"]:
            fail["left"] -= 1
            raise ConnectionRefusedError("sink down")

    await put_instance(js, settings, make_instance("web", "a", "10.0.0.1", 80))
    sub = Subscriber(settings, name="t", reconcile=reconcile, min_wait=0.01,
                     retry_base=0.05, retry_max=0.1, health=health)
    assert health.readiness()[0] == ("nats", "not connected to NATS")
    await sub.start()
    try:
        await wait_until(lambda: fail["left"] == 0 and sub.reconciles == 1, timeout=10)
        await sub.publish("unify.applied.t.n", InstanceRegistered(
            instance=make_instance("web", "a", "10.0.0.1", 80), observed_at=1), msg_id="m-1")
        assert health.readiness() == [("nats", None), ("last-success", None)]
        text = "\n".join(line for line in health_metrics(health) if "_created" not in line)
        for line in (
                'unify_t_sub_events_consumed_total{subject="$KV.unify-catalog.>"} 1.0',
                'unify_t_sub_events_published_total{subject="unify.applied.t.n"} 1.0',
                'unify_t_sub_errors_total{kind="connection-refused-error"} 1.0',
                'unify_t_sub_reconcile_duration_seconds_count 2.0',
                'unify_t_sub_last_failure_timestamp_seconds 1000.0',
                'unify_t_sub_last_success_timestamp_seconds 1000.0'):
            assert line in text.splitlines()
    finally:
        await sub.stop()
    assert health.readiness()[0] == ("nats", "not connected to NATS")


def health_metrics(health) -> list[str]:
    from prometheus_client.exposition import generate_latest

    return generate_latest(health.registry).decode().splitlines()


async def test_a_crashed_readers_watch_consumer_expires(nats_server, js):
    """A process that dies without stopping its mirror leaves its watch consumer only for the
    inactivity threshold (30 s in the services; 1 s here)."""
    from unify_common.catalog import CatalogMirror

    crashed = await nats.connect(nats_server.url)
    bucket = await crashed.jetstream().key_value("unify-catalog")
    mirror = CatalogMirror(bucket, watch_inactive_s=1.0)
    await mirror.start()
    assert await consumers(js) == {"UNIFY": 0, "KV_unify-catalog": 1}
    await crashed.close()  # no mirror.stop(): as if the process had been killed
    await wait_until(lambda: consumers(js), lambda seen: seen["KV_unify-catalog"] == 0,
                     timeout=10, interval=0.1, what="the server's cleanup pass")
    assert await consumers(js) == {"UNIFY": 0, "KV_unify-catalog": 0}
    await mirror.stop(timeout=1.0)
