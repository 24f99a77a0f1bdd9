"""A new default-profile vhost serves through a spare backend (runtime API: server slots and
the frontend's host map) before the reload that gives it its own backend; real HAProxy."""

from __future__ import annotations

import asyncio

from sb_support import get_body, start_with_web

from switchboard.desired import backend_name
from tests.fixtures.catalog import make_instance, put_instance
from unify_common.natsio import ensure_catalog_bucket
from unify_testkit.aio import wait_until
from unify_testkit.devstack.process import free_port


async def map_entries(service, path: str) -> list[tuple[str, str]]:
    """``show map`` of the current worker: (key, value) per entry, in HAProxy's order."""
    answer = await service.sink.cli(f"@1 show map {path}")
    return [tuple(line.split()[1:3]) for line in answer.splitlines() if line.strip()]


async def backend_sessions(service, backend: str) -> int:
    """Total sessions (``stot``) the current worker sent to ``backend``."""
    answer = await service.sink.cli("@1 show stat")
    header = answer.splitlines()[0].lstrip("# ").split(",")
    for line in answer.splitlines()[1:]:
        fields = line.split(",")
        if fields[:2] == [backend, "BACKEND"]:
            return int(fields[header.index("stot")])
    raise AssertionError(f"no backend {backend} in show stat")


async def bucket_revision(js, settings) -> int:
    """The catalog bucket's last revision (what ``Applied.detail`` names)."""
    bucket = await ensure_catalog_bucket(js, settings)
    return (await bucket.status()).stream_info.state.last_seq


def hold_reloads(service) -> asyncio.Event:
    """Make ``service``'s reloads wait until the returned event is set (to look at the
    worker between the runtime step and the reload that follows it)."""
    gate = asyncio.Event()
    reload = service.sink.reload

    async def held_reload() -> int:
        await gate.wait()
        return await reload()

    service.sink.reload = held_reload
    return gate


async def assert_docs_on_its_own_backend(service, port: int, host_map: str) -> None:
    """After the reload: docs is served by its own backend (the spare got no more traffic),
    the map points at it, and web still answers."""
    web, docs = backend_name("http", "web"), backend_name("http", "docs")
    assert await get_body(port, "docs.example.com") == (200, "beta")
    assert await map_entries(service, host_map) == [("docs.example.com", docs),
                                                     ("web.example.com", web)]
    assert await backend_sessions(service, docs) == 1
    assert await backend_sessions(service, "be_spare_1") == 0
    assert await get_body(port, "web.example.com") == (200, "alpha")


async def test_new_vhost_serves_through_a_spare_then_from_its_own_backend(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    alpha, beta = backends("alpha"), backends("beta")
    service = await start_with_web(js, sb_common, alpha.port, port, switchboard_factory,
                                   events, spare_backends=2)
    host_map = f"{haproxy.config.parent}/fe_http_{port}.map"
    web, docs = backend_name("http", "web"), backend_name("http", "docs")
    assert await map_entries(service, host_map) == [("web.example.com", web)]
    pids = haproxy.worker_pids()

    # Hold the reload that follows the runtime step, to look at the worker in between.
    gate = hold_reloads(service)
    await put_instance(js, sb_common, make_instance(
        "docs", "docs-1", "127.0.0.1", beta.port, ["dns=example.com", "vhost=docs",
                                                    f"http={port}"]))
    revision = await bucket_revision(js, sb_common)
    await wait_until(lambda: len(events.applied) == 2, what="Applied (runtime)")
    # the quick step (before the debounce) took the spare: nothing rendered yet, no hash
    assert (events.applied[1].method, events.applied[1].config_hash,
            events.applied[1].detail) == (
        "runtime", "", f"ahead of the file: new vhosts through spare backends ({docs} on "
        f"be_spare_1); revision {revision}")
    assert await get_body(port, "docs.example.com") == (200, "beta")
    assert await map_entries(service, host_map) == [("web.example.com", web),
                                                     ("docs.example.com", "be_spare_1")]
    assert await backend_sessions(service, "be_spare_1") == 1
    assert haproxy.worker_pids() == pids
    # then the reconcile writes the checked configuration with docs' own backend and map
    # entry (its reload is held), without taking the spare a second time
    await wait_until(lambda: (haproxy.config.parent / f"fe_http_{port}.map").read_text() == (
        f"docs.example.com {docs}\nweb.example.com {web}\n"), what="map file written")
    assert await map_entries(service, host_map) == [("web.example.com", web),
                                                     ("docs.example.com", "be_spare_1")]

    gate.set()
    await wait_until(lambda: len(events.applied) == 3, what="Applied (reload)")
    assert [e.method for e in events.applied] == ["reload", "runtime", "reload"]
    assert events.applied[2].config_hash == service.reconciler.applied_hash != ""
    assert events.applied[2].detail == f"revision {revision}"
    assert haproxy.worker_pids() != pids
    await assert_docs_on_its_own_backend(service, port, host_map)
    assert events.errors == []


async def test_reconcile_takes_the_spare_itself_without_a_quick_step(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    alpha, beta = backends("alpha"), backends("beta")
    service = await start_with_web(js, sb_common, alpha.port, port, switchboard_factory,
                                   events, spare_backends=2)
    host_map = f"{haproxy.config.parent}/fe_http_{port}.map"
    web, docs = backend_name("http", "web"), backend_name("http", "docs")
    assert await map_entries(service, host_map) == [("web.example.com", web)]
    pids = haproxy.worker_pids()

    async def no_quick_step(state) -> None:  # e.g. a change that came while disarmed
        return None

    service.reconciler.quick = no_quick_step
    # Hold the reload that follows the runtime step, to look at the worker in between.
    gate = hold_reloads(service)
    await put_instance(js, sb_common, make_instance(
        "docs", "docs-1", "127.0.0.1", beta.port, ["dns=example.com", "vhost=docs",
                                                    f"http={port}"]))
    await wait_until(lambda: len(events.applied) == 2, what="Applied (runtime)")
    assert events.applied[1].method == "runtime"
    assert events.applied[1].detail.endswith(f"new vhosts through spare backends ({docs} on "
                                             "be_spare_1); reload follows")
    assert await get_body(port, "docs.example.com") == (200, "beta")
    assert await map_entries(service, host_map) == [("web.example.com", web),
                                                     ("docs.example.com", "be_spare_1")]
    assert await backend_sessions(service, "be_spare_1") == 1
    assert haproxy.worker_pids() == pids
    # the file then holds the checked configuration with docs' own backend and map entry
    await wait_until(lambda: (haproxy.config.parent / f"fe_http_{port}.map").read_text() == (
        f"docs.example.com {docs}\nweb.example.com {web}\n"), what="map file written")

    gate.set()
    await wait_until(lambda: len(events.applied) == 3, what="Applied (reload)")
    assert [e.method for e in events.applied] == ["reload", "runtime", "reload"]
    assert events.applied[2].config_hash == events.applied[1].config_hash
    assert haproxy.worker_pids() != pids
    await assert_docs_on_its_own_backend(service, port, host_map)
    assert events.errors == []


async def test_spare_is_taken_back_when_the_new_config_is_rejected(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    alpha, beta = backends("alpha"), backends("beta")
    service = await start_with_web(js, sb_common, alpha.port, port, switchboard_factory,
                                   events, spare_backends=1)
    host_map = f"{haproxy.config.parent}/fe_http_{port}.map"
    web = backend_name("http", "web")
    config = haproxy.config.read_bytes()
    # haproxy -c cannot succeed any more: the next configuration counts as rejected
    service.sink.haproxy_bin = str(haproxy.config.parent / "no-such-haproxy")
    await put_instance(js, sb_common, make_instance(
        "docs", "docs-1", "127.0.0.1", beta.port, ["dns=example.com", "vhost=docs",
                                                    f"http={port}"]))
    await wait_until(lambda: any(e.reason == "config-check-failed" for e in events.errors),
                     what="config-check-failed")
    assert [e.method for e in events.applied] == ["reload", "runtime"]
    assert await map_entries(service, host_map) == [("web.example.com", web)]
    assert await get_body(port, "docs.example.com") == (404, "no-route")
    assert haproxy.config.read_bytes() == config
    assert (haproxy.config.parent / f"fe_http_{port}.map").read_text() == (
        f"web.example.com {web}\n")


async def test_a_host_for_an_existing_backend_is_added_at_runtime(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    alpha = backends("alpha")
    tags = ["dns=example.com", "vhost=web", f"http={port}"]
    await put_instance(js, sb_common, make_instance("web", "web-1", "127.0.0.1", alpha.port,
                                                    tags))
    service = await switchboard_factory()
    await wait_until(lambda: [e.method for e in events.applied] == ["reload"],
                     what="first reload")
    pids = haproxy.worker_pids()
    config = haproxy.config.read_bytes()
    web = backend_name("http", "web")
    host_map = f"{haproxy.config.parent}/fe_http_{port}.map"
    assert await get_body(port, "web.example.org") == (404, "no-route")

    await put_instance(js, sb_common, make_instance("web", "web-1", "127.0.0.1", alpha.port,
                                                    tags + ["dns=example.org"]))
    await wait_until(lambda: len(events.applied) == 3, what="quick and full Applied")
    assert [e.method for e in events.applied] == ["reload", "runtime", "runtime"]
    assert events.applied[1].config_hash == ""
    assert events.applied[1].detail.startswith("ahead of the file: 1 host map entry changed;")
    assert events.applied[2].config_hash == service.reconciler.applied_hash != ""
    assert await get_body(port, "web.example.org") == (200, "alpha")
    assert await map_entries(service, host_map) == [("web.example.com", web),
                                                     ("web.example.org", web)]
    assert haproxy.worker_pids() == pids
    assert haproxy.config.read_bytes() == config  # only the map changed
    assert (haproxy.config.parent / f"fe_http_{port}.map").read_text() == (
        f"web.example.com {web}\nweb.example.org {web}\n")


async def server_status(service, backend: str, server: str) -> tuple[str, str]:
    """``status`` and ``check_status`` of one server in the current worker's ``show stat``."""
    answer = await service.sink.cli("@1 show stat")
    header = answer.splitlines()[0].lstrip("# ").split(",")
    for line in answer.splitlines()[1:]:
        fields = line.split(",")
        if fields[:2] == [backend, server]:
            return fields[header.index("status")], fields[header.index("check_status")]
    raise AssertionError(f"no server {backend}/{server} in show stat")


async def test_unchecked_vhost_serves_through_a_spare_with_its_check_stopped(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    """``check=disabled`` on a new vhost: the spare's slot runs with its check stopped
    (HAProxy then counts it as up), so the spare behaves as the vhost's own backend will."""
    js = nc.jetstream()
    port = free_port()
    alpha, beta = backends("alpha"), backends("beta")
    service = await start_with_web(js, sb_common, alpha.port, port, switchboard_factory,
                                   events, spare_backends=1)
    assert await server_status(service, "be_spare_1", "s1") == ("MAINT", "")
    gate = hold_reloads(service)
    await put_instance(js, sb_common, make_instance(
        "docs", "docs-1", "127.0.0.1", beta.port, ["dns=example.com", "vhost=docs",
                                                    f"http={port}", "check=disabled"]))
    await wait_until(lambda: len(events.applied) == 2, what="Applied (runtime)")
    assert events.applied[1].method == "runtime"
    assert await get_body(port, "docs.example.com") == (200, "beta")
    # web's server is checked every 2 s (HAProxy's default inter), as the spare's slot would
    # be: two more of its checks mean a whole interval went by with the slot serving, in
    # which a running check of the slot would have reached beta
    seen = alpha.checks
    await wait_until(lambda: alpha.checks >= seen + 2, timeout=10,
                     what="two more health checks of web's server")
    assert beta.checks == 0
    assert await server_status(service, "be_spare_1", "s1") == ("no check", "")
    gate.set()
    await wait_until(lambda: len(events.applied) == 3, what="Applied (reload)")
    assert [e.method for e in events.applied] == ["reload", "runtime", "reload"]
    assert await get_body(port, "docs.example.com") == (200, "beta")
    assert await server_status(service, backend_name("http", "docs"), "s1") == (
        "no check", "")
    assert events.errors == []
