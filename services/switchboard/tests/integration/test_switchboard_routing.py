"""Core slice against real HAProxy + nats-server + HTTP backends: vhost routing, removal,
no reload when nothing changed."""

from __future__ import annotations

import httpx
from sb_support import get_body

from tests.fixtures.catalog import delete_instance, make_instance, put_instance
from unify_testkit.aio import wait_until
from unify_testkit.devstack.process import free_port


async def test_vhost_routes_to_passing_instance_and_404_after_removal(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    alpha, beta = backends("alpha"), backends("beta")
    web = make_instance("web", "web-1", "127.0.0.1", alpha.port,
                        ["dns=example.com", "vhost=web", f"http={port}"])
    # A critical instance of the same service must get no traffic.
    sick = make_instance("web", "web-2", "127.0.0.1", beta.port,
                         ["dns=example.com", "vhost=web", f"http={port}"], status="critical")
    # Another vhost on the same port keeps the frontend up after web leaves.
    other = make_instance("docs", "docs-1", "127.0.0.1", backends("gamma").port,
                          ["dns=example.com", "vhost=docs", f"http={port}"])
    await put_instance(js, sb_common, web)
    await put_instance(js, sb_common, sick)
    await put_instance(js, sb_common, other)
    # Malformed tags: skipped with an error event, the rest keeps working.
    await put_instance(js, sb_common, make_instance(
        "evil", "evil-1", "127.0.0.1", beta.port,
        ["dns=example.com", "vhost=web\n  server x 1.2.3.4:80", f"http={port}"]))
    await switchboard_factory()

    async def routed() -> bool:
        try:
            return await get_body(port, "web.example.com") == (200, "alpha")
        except Exception:
            return False

    await wait_until(routed, what="web.example.com served by alpha")
    assert [(e.reason, e.service, e.instance_id, e.node) for e in events.errors] == [
        ("invalid-tags", "evil", "evil-1", "node-1")]
    for _ in range(6):
        assert await get_body(port, "web.example.com") == (200, "alpha")
    # Host matching ignores a :port and the case of the name.
    assert await get_body(port, f"WEB.example.com:{port}") == (200, "alpha")
    assert await get_body(port, "docs.example.com") == (200, "gamma")
    assert await get_body(port, "other.example.com") == (404, "no-route")

    before = len(events.applied)
    await delete_instance(js, sb_common, web)
    await delete_instance(js, sb_common, sick)

    async def gone() -> bool:
        return await get_body(port, "web.example.com") == (404, "no-route")

    await wait_until(gone, what="route removed")
    # The host may leave the frontend's host map at runtime first (web's last passing
    # instance went); the backend going needs the reload that follows.
    await wait_until(lambda: "reload" in [e.method for e in events.applied[before:]],
                     what="the reload")
    assert await get_body(port, "docs.example.com") == (200, "gamma")
    assert await get_body(port, "web.example.com") == (404, "no-route")
    assert events.applied[-1].source == "switchboard"
    assert events.applied[-1].node == "test-node"


async def test_forwarded_for_and_no_reload_when_nothing_changes(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    alpha = backends("alpha")
    await put_instance(js, sb_common, make_instance(
        "web", "web-1", "127.0.0.1", alpha.port,
        ["dns=example.com", "vhost=web", f"http={port}", "url_prefix=/"]))
    service = await switchboard_factory()
    await wait_until(lambda: any(e.method == "reload" for e in events.applied),
                     what="first reload")
    async with httpx.AsyncClient(timeout=5.0) as client:
        resp = await client.get(f"http://127.0.0.1:{port}/x?y=1",
                                headers={"Host": "web.example.com"})
    assert (resp.status_code, resp.text) == (200, "alpha")
    assert resp.headers["X-Seen-Forwarded-For"] == "127.0.0.1"
    assert resp.headers["X-Seen-Forwarded-Proto"] == "http"
    assert resp.headers["X-Seen-Path"] == "/x?y=1"

    pids = haproxy.worker_pids()
    config = (haproxy.config).read_bytes()
    applied_before = len(events.applied)
    # A catalog change that does not touch routing: an untagged instance of another service.
    await put_instance(js, sb_common, make_instance("metrics", "m-1", "127.0.0.1", 9100))
    await wait_until(lambda: len(events.applied) > applied_before, what="next Applied")
    assert events.applied[-1].method == "unchanged"
    assert events.applied[-1].config_hash == service.reconciler.applied_hash
    assert haproxy.worker_pids() == pids
    assert haproxy.config.read_bytes() == config
    assert events.errors == []


async def test_owner_leaving_does_not_hand_an_http_port_to_a_rejected_tcp_claim(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    """alpha (oldest) serves HTTP on a port, grab's older tcp= claim on it is rejected, beta
    shares the port for HTTP. When alpha goes, beta keeps being served and grab stays
    rejected; when beta goes too, grab gets the port."""
    js = nc.jetstream()
    port = free_port()
    alpha = make_instance("alpha", "a-1", "127.0.0.1", backends("alpha").port,
                          ["dns=example.com", "vhost=alpha", f"http={port}"], create_index=1)
    grab = make_instance("grab", "g-1", "127.0.0.1", backends("grab").port,
                         [f"tcp={port}"], create_index=2)
    beta = make_instance("beta", "b-1", "127.0.0.1", backends("beta").port,
                         ["dns=example.com", "vhost=beta", f"http={port}"], create_index=3)
    for inst in (alpha, grab, beta):
        await put_instance(js, sb_common, inst)
    await switchboard_factory()

    async def body(host: str):
        try:
            return await get_body(port, host)
        except Exception as err:
            return repr(err)

    await wait_until(lambda: events.applied, what="first apply")
    assert await body("beta.example.com") == (200, "beta")
    before = len(events.applied)
    await delete_instance(js, sb_common, alpha)
    await wait_until(lambda: "reload" in [e.method for e in events.applied[before:]],
                     what="the reload without alpha's backend")
    assert await body("beta.example.com") == (200, "beta")
    assert await body("alpha.example.com") == (404, "no-route")
    assert f"frontend fe_tcp_{port}" not in haproxy.config.read_text()
    assert ("port-conflict", "grab", f"port {port} is already used for http by service "
            "'beta'") in [(e.reason, e.service, e.message) for e in events.errors]

    before = len(events.applied)
    await delete_instance(js, sb_common, beta)
    await wait_until(lambda: f"frontend fe_tcp_{port}" in haproxy.config.read_text(),
                     what="grab takes the port")
    # the file is written before its reload is confirmed: wait for this change's report
    await wait_until(lambda: "reload" in [e.method for e in events.applied[before:]],
                     what="its reload")
    assert await body("anything.example.com") == (200, "grab")
