"""Membership changes go through the runtime API into pre-allocated server slots: the worker
PID stays; only running out of slots (or a frontend change) reloads."""

from __future__ import annotations

import httpx

from tests.fixtures.catalog import delete_instance, make_instance, put_instance
from unify_common.events import Applied
from unify_common.natsio import ensure_catalog_bucket
from unify_testkit.aio import wait_until
from unify_testkit.devstack.process import free_port


async def bodies(port: int, host: str, count: int = 12) -> set[str]:
    seen = set()
    async with httpx.AsyncClient(timeout=5.0) as client:
        for _ in range(count):
            resp = await client.get(f"http://127.0.0.1:{port}/", headers={"Host": host})
            seen.add(f"{resp.status_code} {resp.text}")
    return seen


async def test_membership_changes_without_reload(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    tags = ["dns=example.com", "vhost=web", f"http={port}"]
    names = ["b1", "b2", "b3", "b4", "b5"]
    servers = {name: backends(name) for name in names}
    inst = {name: make_instance("web", f"web-{name}", "127.0.0.1", servers[name].port, tags)
            for name in names}
    await put_instance(js, sb_common, inst["b1"])
    await switchboard_factory(min_slots=4)

    async def only(*expected: str) -> bool:
        try:
            return await bodies(port, "web.example.com") == {f"200 {n}" for n in expected}
        except httpx.HTTPError:
            return False

    await wait_until(lambda: only("b1"), what="b1 serving")
    await wait_until(lambda: len(events.applied) == 1, what="first Applied")
    pids = haproxy.worker_pids()
    bucket = await ensure_catalog_bucket(js, sb_common)

    async def change(step) -> Applied:
        """Make the catalog change ``step`` (awaitable), return the full apply's report of the
        bucket revision it ends at (each change first reaches the worker through the quick
        step, whose report has no config hash)."""
        await step
        revision = (await bucket.status()).stream_info.state.last_seq
        await wait_until(lambda: any(e.config_hash and e.detail == f"revision {revision}"
                                     for e in events.applied), what=f"revision {revision}")
        return next(e for e in events.applied
                    if e.config_hash and e.detail == f"revision {revision}")

    assert (await change(put_instance(js, sb_common, inst["b2"]))).method == "runtime"
    await wait_until(lambda: only("b1", "b2"), what="b1 and b2 serving")
    assert haproxy.worker_pids() == pids

    # Health going critical drains the instance out of rotation, at runtime.
    assert (await change(put_instance(js, sb_common, make_instance(
        "web", "web-b1", "127.0.0.1", servers["b1"].port, tags, status="critical")))
    ).method == "runtime"
    await wait_until(lambda: only("b2"), what="only b2 serving")
    assert (await change(delete_instance(js, sb_common, inst["b1"]))).method == "runtime"
    assert await bodies(port, "web.example.com") == {"200 b2"}

    await put_instance(js, sb_common, inst["b3"])
    assert (await change(put_instance(js, sb_common, inst["b4"]))).method == "runtime"
    await wait_until(lambda: only("b2", "b3", "b4"), what="b2-b4 serving")
    assert haproxy.worker_pids() == pids
    assert "# " + inst["b4"].key in haproxy.config.read_text()
    assert "reload" not in [e.method for e in events.applied[1:]]

    # Four slots hold b2, b3, b4 and the slot b1 left: b5 fits, then b1 again needs a reload.
    await put_instance(js, sb_common, inst["b5"])
    await wait_until(lambda: only("b2", "b3", "b4", "b5"), what="b2-b5 serving")
    assert haproxy.worker_pids() == pids
    reloads = sum(e.method == "reload" for e in events.applied)
    assert (await change(put_instance(js, sb_common, inst["b1"]))).method == "reload"
    await wait_until(lambda: only(*names), what="all five serving")
    assert sum(e.method == "reload" for e in events.applied) == reloads + 1
    assert haproxy.worker_pids() != pids


async def test_http_check_from_the_tag_takes_a_failing_server_out(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    tags = ["dns=example.com", "vhost=web", f"http={port}", "check=HEAD /health"]
    good, bad = backends("good"), backends("bad")
    bad.healthy = False
    for name, backend in (("good", good), ("bad", bad)):
        await put_instance(js, sb_common, make_instance("web", f"web-{name}", "127.0.0.1",
                                                        backend.port, tags))
    await switchboard_factory()

    async def only_good() -> bool:
        try:
            return await bodies(port, "web.example.com") == {"200 good"}
        except httpx.HTTPError:
            return False

    # HAProxy's own check (HEAD /health every 2 s, down after 3 failures) removes "bad".
    await wait_until(only_good, timeout=30, what="failing server taken out by its check")
    assert set(bad.health_methods) == {"HEAD"}
    assert set(good.health_methods) == {"HEAD"}


async def test_weight_change_at_runtime(sb_common, nc, haproxy, backends, events,
                                        switchboard_factory):
    """A new Consul weight reaches the running worker (same PID) and shares the traffic."""
    import msgspec

    from switchboard.desired import backend_name

    js = nc.jetstream()
    port = free_port()
    tags = ["dns=example.com", "vhost=web", f"http={port}", "check=disabled"]
    one, two = backends("one"), backends("two")
    a = make_instance("web", "web-a", "127.0.0.1", one.port, tags)
    b = make_instance("web", "web-b", "127.0.0.1", two.port, tags)
    await put_instance(js, sb_common, a)
    await put_instance(js, sb_common, b)
    await switchboard_factory(min_slots=4)
    await wait_until(lambda: len(events.applied) >= 1, what="first Applied")
    await wait_until(lambda: _served(port), what="web serving")
    pids = haproxy.worker_pids()
    server = [line.split()[1] for line in haproxy.config.read_text().splitlines()
              if line.startswith("    server s") and a.key in line][0]
    await put_instance(js, sb_common, msgspec.structs.replace(a, weight=3))
    # the full apply's report (the quick step's, with no config hash, comes first)
    await wait_until(lambda: any(e.method == "runtime" and e.config_hash
                                 for e in events.applied[1:]), what="Applied runtime")
    backend = backend_name("http", "web")
    assert haproxy.cli(f"@1 get weight {backend}/{server}").strip() == "3 (initial 1)"
    assert haproxy.worker_pids() == pids
    assert f"{server} 127.0.0.1:{one.port} weight 3 # {a.key}" in haproxy.config.read_text()
    async with httpx.AsyncClient(timeout=5.0) as client:
        answers = [(await client.get(f"http://127.0.0.1:{port}/",
                                     headers={"Host": "web.example.com"})).text
                   for _ in range(8)]
    assert (answers.count("one"), answers.count("two")) == (6, 2)


async def _served(port: int) -> bool:
    try:
        return bool(await bodies(port, "web.example.com", 2))
    except httpx.HTTPError:
        return False


async def test_unreachable_unchecked_instance_costs_no_failed_request(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    """An instance the catalog lists with check=disabled whose port refuses connections:
    every request still gets the live instance's answer (the retry goes elsewhere)."""
    js = nc.jetstream()
    port = free_port()
    tags = ["dns=example.com", "vhost=web", f"http={port}", "check=disabled"]
    live = backends("live")
    await put_instance(js, sb_common, make_instance("web", "web-live", "127.0.0.1",
                                                    live.port, tags))
    await put_instance(js, sb_common, make_instance("web", "web-dead", "127.0.0.1",
                                                    free_port(), tags))
    await switchboard_factory(min_slots=4)
    await wait_until(lambda: len(events.applied) >= 1, what="first Applied")
    assert await bodies(port, "web.example.com", 8) == {"200 live"}


async def test_restarted_switchboard_keeps_slots_from_the_layout_file(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    """The layout file is written beside the configuration with the configuration's hash; a
    new switchboard reads it, finds the file as the worker loaded it (``unchanged``), and
    puts the next instance into a free slot at runtime (same worker)."""
    import hashlib
    import json

    from switchboard.desired import backend_name

    js = nc.jetstream()
    port = free_port()
    tags = ["dns=example.com", "vhost=web", f"http={port}"]
    one, two = backends("one"), backends("two")
    a = make_instance("web", "web-a", "127.0.0.1", one.port, tags)
    await put_instance(js, sb_common, a)
    first = await switchboard_factory(min_slots=4)
    await wait_until(lambda: [e.method for e in events.applied] == ["reload"],
                     what="first reload")
    layout = json.loads((haproxy.config.parent / "haproxy.cfg.layout.json").read_text())
    web = backend_name("http", "web")
    assert layout["config_sha256"] == hashlib.sha256(haproxy.config.read_bytes()).hexdigest()
    assert (layout["slots"][web], layout["ports"]) == ([a.key, None, None, None],
                                                       {str(port): "http"})
    await first.stop()
    pids = haproxy.worker_pids()

    await switchboard_factory(min_slots=4)
    await wait_until(lambda: len(events.applied) == 2, what="the new switchboard's Applied")
    assert events.applied[1].method == "unchanged"
    await put_instance(js, sb_common, make_instance("web", "web-b", "127.0.0.1", two.port,
                                                    tags))
    await wait_until(lambda: any(e.method == "runtime" and e.config_hash
                                 for e in events.applied[2:]), what="Applied runtime")
    assert await bodies(port, "web.example.com") == {"200 one", "200 two"}
    assert haproxy.worker_pids() == pids
    assert events.errors == []
