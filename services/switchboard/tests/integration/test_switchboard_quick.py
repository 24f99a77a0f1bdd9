"""The quick step: the first catalog change after a quiet period reaches the running HAProxy
worker through the runtime API at once, before the debounce; the debounced reconcile (check,
write, reload if needed) follows with its own report. Real NATS and HAProxy, with a debounce
long enough (2 s) to look at the worker in between."""

from __future__ import annotations

from functools import partial

from sb_support import get_body, settle, start_with_web
from test_switchboard_runtime import bodies
from test_switchboard_spare import bucket_revision, map_entries

from switchboard.desired import backend_name
from tests.fixtures.catalog import make_instance, put_instance
from unify_testkit.aio import wait_until
from unify_testkit.devstack.process import free_port

#: debounce of the switchboard under test, seconds (max wait: twice that)
DEBOUNCE = 2.0


def slow_switchboard(switchboard_factory):
    """The switchboard factory with a ``DEBOUNCE``-second debounce."""
    return partial(switchboard_factory, debounce=DEBOUNCE, max_wait=2 * DEBOUNCE)


async def test_joining_instance_serves_before_the_debounced_apply(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    alpha, beta = backends("alpha"), backends("beta")
    service = await start_with_web(js, sb_common, alpha.port, port,
                                   slow_switchboard(switchboard_factory), events)
    pids = haproxy.worker_pids()
    config = haproxy.config.read_text()
    joining = make_instance("web", "web-2", "127.0.0.1", beta.port,
                            ["dns=example.com", "vhost=web", f"http={port}"])

    await put_instance(js, sb_common, joining)
    revision = await bucket_revision(js, sb_common)
    await wait_until(lambda: len(events.applied) == 2, timeout=DEBOUNCE / 2,
                     what="the quick step's Applied, well before the debounce ends")
    assert await bodies(port, "web.example.com") == {"200 alpha", "200 beta"}
    # still before the debounced reconcile: nothing checked, written or reloaded
    assert service.subscriber.reconciles == 1
    assert haproxy.config.read_text() == config
    assert haproxy.worker_pids() == pids
    quick = events.applied[1]
    assert (quick.method, quick.config_hash, quick.detail) == (
        "runtime", "", f"ahead of the file: 1 server slot changed; revision {revision}")

    await wait_until(lambda: len(events.applied) == 3, timeout=DEBOUNCE * 3,
                     what="the debounced apply's Applied")
    full = events.applied[2]
    assert (full.method, full.detail) == ("runtime", f"revision {revision}")
    assert full.config_hash == service.reconciler.applied_hash != ""
    assert service.subscriber.reconciles == 2
    assert f"127.0.0.1:{beta.port} check # {joining.key}" in haproxy.config.read_text()
    assert haproxy.worker_pids() == pids
    assert await bodies(port, "web.example.com") == {"200 alpha", "200 beta"}
    assert events.errors == []


async def test_new_vhost_serves_through_a_spare_before_the_one_reload_of_its_burst(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    alpha, beta, gamma = backends("alpha"), backends("beta"), backends("gamma")
    service = await start_with_web(js, sb_common, alpha.port, port,
                                   slow_switchboard(switchboard_factory), events)
    host_map = f"{haproxy.config.parent}/fe_http_{port}.map"
    web, docs = backend_name("http", "web"), backend_name("http", "docs")
    pids = haproxy.worker_pids()
    config = haproxy.config.read_text()

    await put_instance(js, sb_common, make_instance(
        "docs", "docs-1", "127.0.0.1", beta.port, ["dns=example.com", "vhost=docs",
                                                    f"http={port}"]))
    first = await bucket_revision(js, sb_common)
    await wait_until(lambda: len(events.applied) == 2, timeout=DEBOUNCE / 2,
                     what="the quick step's Applied, well before the debounce ends")
    assert await get_body(port, "docs.example.com") == (200, "beta")
    assert await map_entries(service, host_map) == [("web.example.com", web),
                                                     ("docs.example.com", "be_spare_1")]
    quick = events.applied[1]
    assert (quick.method, quick.config_hash, quick.detail) == (
        "runtime", "", f"ahead of the file: new vhosts through spare backends ({docs} on "
        f"be_spare_1); revision {first}")

    # more of the same burst: an instance joins web (no second quick step in one burst)
    await put_instance(js, sb_common, make_instance(
        "web", "web-2", "127.0.0.1", gamma.port, ["dns=example.com", "vhost=web",
                                                   f"http={port}"]))
    last = await bucket_revision(js, sb_common)
    assert service.subscriber.reconciles == 1
    assert service.subscriber.quick_runs == 1
    assert haproxy.config.read_text() == config
    assert haproxy.worker_pids() == pids
    assert (haproxy.config.parent / f"fe_http_{port}.map").read_text() == (
        f"web.example.com {web}\n")

    await wait_until(lambda: len(events.applied) == 3, timeout=DEBOUNCE * 3,
                     what="the debounced apply's Applied")
    full = events.applied[2]
    assert (full.method, full.detail) == ("reload", f"revision {last}")
    assert full.config_hash == service.reconciler.applied_hash != ""
    assert haproxy.worker_pids() != pids
    assert await map_entries(service, host_map) == [("docs.example.com", docs),
                                                     ("web.example.com", web)]
    assert await get_body(port, "docs.example.com") == (200, "beta")
    assert await bodies(port, "web.example.com") == {"200 alpha", "200 gamma"}
    assert service.subscriber.quick_runs == 1
    # nothing else follows: one reload for the burst (see settle for why this shows it)
    sentinel = await settle(js, sb_common, events)
    assert [(e.method, e.detail) for e in events.applied] == [
        ("reload", events.applied[0].detail), ("runtime", quick.detail),
        ("reload", f"revision {last}"), ("unchanged", f"revision {sentinel}")]
    assert service.subscriber.reasons == {"request": 1, "change": 2}
    assert events.errors == []
