"""A configuration that fails ``haproxy -c`` is never applied: the old one keeps serving and
an ErrorEvent says why."""

from __future__ import annotations

import socket

from sb_support import get_body, start_with_web
from sb_tls import TestCA

from switchboard.desired import backend_name
from tests.fixtures.catalog import make_instance, put_instance
from unify_testkit.aio import wait_until
from unify_testkit.devstack.process import free_port


async def test_rejected_config_keeps_old_one_serving(
        sb_common, nc, haproxy, backends, events, switchboard_factory, tmp_path):
    ca = TestCA(tmp_path / "ca")
    cert_dir = tmp_path / "certs"
    ca.issue(["secure.example.com"], cert_dir / "secure.pem")
    js = nc.jetstream()
    http_port, https_port = free_port(), free_port()
    alpha = backends("alpha")
    await put_instance(js, sb_common, make_instance(
        "web", "web-1", "127.0.0.1", alpha.port, ["dns=example.com", "vhost=web",
                                                   f"http={http_port}"]))
    # The cipher list passes switchboard's syntax check but OpenSSL knows no such cipher, so
    # only HAProxy's own check can reject it, and only once a TLS bind exists.
    await switchboard_factory(cert_dir=cert_dir, ssl_ciphers="NO-SUCH-CIPHER")

    async def web_served() -> bool:
        try:
            return await get_body(http_port, "web.example.com") == (200, "alpha")
        except Exception:
            return False

    await wait_until(web_served, what="web served")
    await wait_until(lambda: [e.method for e in events.applied] == ["reload"],
                     what="Applied of the first config")
    good_config = haproxy.config.read_bytes()
    pids = haproxy.worker_pids()
    applied = len(events.applied)

    await put_instance(js, sb_common, make_instance(
        "secure", "secure-1", "127.0.0.1", backends("beta").port,
        ["dns=example.com", "vhost=secure", f"https={https_port}", "ssl=offloading"]))
    await wait_until(lambda: any(e.reason == "config-check-failed" for e in events.errors),
                     what="config-check-failed error event")
    [error] = [e for e in events.errors if e.reason == "config-check-failed"]
    assert error.source == "switchboard"
    assert error.node == "test-node"
    assert "NO-SUCH-CIPHER" in error.message
    assert haproxy.config.read_bytes() == good_config
    assert haproxy.worker_pids() == pids
    assert len(events.applied) == applied == 1
    assert await get_body(http_port, "web.example.com") == (200, "alpha")
    assert sorted(p.name for p in haproxy.config.parent.glob(".haproxy.cfg.*")) == []


async def test_busy_port_is_left_out_and_picked_up_once_free(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    http_port = free_port()
    alpha, beta = backends("alpha"), backends("beta")
    await start_with_web(js, sb_common, alpha.port, http_port, switchboard_factory, events)

    # Another program holds the port a new tcp frontend wants: haproxy -c cannot know, so
    # switchboard probes new ports, leaves this one out and applies everything else.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy_port = blocker.getsockname()[1]
    try:
        await put_instance(js, sb_common, make_instance(
            "raw", "raw-1", "127.0.0.1", alpha.port, [f"tcp={busy_port}"]))
        await wait_until(lambda: any(e.reason == "port-unavailable" for e in events.errors),
                         what="port-unavailable error event")
        await put_instance(js, sb_common, make_instance(
            "docs", "docs-1", "127.0.0.1", beta.port, ["dns=example.com", "vhost=docs",
                                                        f"http={http_port}"]))

        async def docs_served() -> bool:
            return await get_body(http_port, "docs.example.com") == (200, "beta")

        await wait_until(docs_served, what="other changes still applied")
        assert f":{busy_port}" not in haproxy.config.read_text()
    finally:
        blocker.close()

    async def raw_served() -> bool:
        try:
            return await get_body(busy_port, "anything") == (200, "alpha")
        except Exception:
            return False

    # The subscriber's retry (capped backoff) adds the frontend once the port is free.
    await wait_until(raw_served, timeout=60, what="tcp frontend after the port was freed")
    [error] = [e for e in events.errors if e.reason == "port-unavailable"]
    assert (error.service, error.message) == ("raw", f"port {busy_port} is held by another "
                                              "program on this node; its routes wait until "
                                              "it is free")


async def test_reload_failure_is_reported_and_retried(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    http_port = free_port()
    alpha, beta = backends("alpha"), backends("beta")
    await start_with_web(js, sb_common, alpha.port, http_port, switchboard_factory, events)

    haproxy.stop()  # HAProxy goes away: the checked file is written, the reload cannot happen
    await put_instance(js, sb_common, make_instance(
        "docs", "docs-1", "127.0.0.1", beta.port, ["dns=example.com", "vhost=docs",
                                                    f"http={http_port}"]))
    await wait_until(lambda: any(e.reason == "reload-failed" for e in events.errors),
                     what="reload-failed error event")
    # host-only vhosts live in the frontend's host map, written with the configuration
    assert (haproxy.config.parent / f"fe_http_{http_port}.map").read_text() == (
        f"docs.example.com {backend_name('http', 'docs')}\n"
        f"web.example.com {backend_name('http', 'web')}\n")
    assert f"map_str({haproxy.config.parent}/fe_http_{http_port}.map)" in (
        haproxy.config.read_text())
    haproxy.start()  # back: it loads the written file, and the retry confirms with a reload
    await wait_until(lambda: [e.method for e in events.applied].count("reload") == 2,
                     timeout=60, what="reload after HAProxy came back")
    assert await get_body(http_port, "docs.example.com") == (200, "beta")
    assert [e.reason for e in events.errors] == ["reload-failed"]
