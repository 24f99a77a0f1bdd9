"""consul-bridge against a real Consul agent and a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import urllib.request
from collections.abc import Iterator

import nats
import pytest
from nats.js.api import DeliverPolicy

from consul_bridge.service import run
from consul_bridge.settings import BridgeSettings
from tests.fixtures.components import consul_call
from unify_common.catalog import read_catalog
from unify_common.events import decode_event
from unify_common.logs import configure_logging, get_logger
from unify_common.natsio import ensure_catalog_bucket
from unify_testkit import returns
from unify_testkit.aio import wait_until


class EventLog:
    """Every event on the stream, in order, with subject and message id."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, object]] = []

    async def start(self, url: str) -> None:
        self.nc = await nats.connect(url)
        js = self.nc.jetstream()
        # the bridge creates the stream (nats-py's "not found" is no OSError: retry on any)
        await wait_until(lambda: js.stream_info("UNIFY"), returns, timeout=5,
                         what="stream UNIFY", retry_on=(Exception,))

        async def on_msg(msg):
            self.items.append((msg.subject, msg.headers.get("Nats-Msg-Id", ""),
                               decode_event(msg.data)))

        await js.subscribe("unify.>", cb=on_msg, ordered_consumer=True,
                           deliver_policy=DeliverPolicy.ALL)

    def types(self, prefix: str = "") -> list[tuple[str, str]]:
        return [(e.type, getattr(getattr(e, "instance", None), "instance_id", ""))
                for s, _, e in self.items if s.startswith(prefix)]

    async def wait_for(self, count: int, prefix: str = "unify.", timeout: float = 15.0) -> None:
        await wait_until(lambda: self.types(prefix), lambda seen: len(seen) >= count,
                         timeout=timeout, what=f"{count} events under {prefix}")

    async def wait_for_instance(self, kind: str, instance_id: str,
                                timeout: float = 15.0) -> None:
        """Wait for the ``kind`` event (``instance.registered``...) of ``instance_id``.

        A sentinel: the bridge follows each service through one query whose answers it
        publishes in order, so once the event of an instance registered after the change under
        test is in, every event of that service the change could cause is in too."""
        await wait_until(lambda: self.types("unify.catalog.instance"),
                         lambda seen: (kind, instance_id) in seen, timeout=timeout,
                         what=f"{kind} of {instance_id}")

    async def close(self) -> None:
        await self.nc.close()


def register(addr: str, service_id: str, name: str, port: int, tags: list[str],
             address: str = "127.0.0.1", check_ttl: bool = False) -> None:
    body = {"ID": service_id, "Name": name, "Port": port, "Address": address, "Tags": tags}
    if check_ttl:
        body["Check"] = {"CheckID": f"ttl-{service_id}", "TTL": "300s",
                         "Status": "passing"}
    consul_call(addr, "PUT", "/v1/agent/service/register", body)


@pytest.fixture
def bridge_settings(common_settings):
    return BridgeSettings(common=common_settings, kv_prefixes=("unify/",), wait_s=30.0,
                          removal_confirm_s=2.0)


@pytest.fixture
async def events(nats_server):
    log = EventLog()
    yield log
    await log.close()


async def start_bridge(settings: BridgeSettings):
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop))
    return stop, task


async def stop_bridge(handle) -> None:
    stop, task = handle
    stop.set()
    await asyncio.wait_for(task, 15)


async def test_lifecycle_events_carry_exact_instance(bridge_settings, consul_http_addr,
                                                     nats_server, events):
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    register(consul_http_addr, "web-1", "web", 8080, ["dns=example.com", "vhost=www"],
             check_ttl=True)
    await events.wait_for(1, "unify.catalog.instance")
    subject, msg_id, event = events.items[0]
    assert subject == "unify.catalog.instance.registered.web"
    assert event.type == "instance.registered"
    inst = event.instance
    assert (inst.service, inst.instance_id, inst.node, inst.address, inst.port) == (
        "web", "web-1", "unify-dev", "127.0.0.1", 8080)
    assert inst.tags == ("dns=example.com", "vhost=www")
    assert inst.health == "passing"
    assert inst.unify.dns == ("example.com",) and inst.unify.vhost == "www"
    assert msg_id.startswith(f"registered:{inst.key}:")

    # idempotent re-registration: Consul wakes the query but nothing changed
    register(consul_http_addr, "web-1", "web", 8080, ["dns=example.com", "vhost=www"],
             check_ttl=True)
    consul_call(consul_http_addr, "PUT", "/v1/agent/check/fail/ttl-web-1?note=down")
    await events.wait_for(2, "unify.catalog.instance")
    register(consul_http_addr, "web-1", "web", 9090, ["dns=example.com", "vhost=www"],
             check_ttl=True)
    await events.wait_for(3, "unify.catalog.instance")
    consul_call(consul_http_addr, "PUT", "/v1/agent/service/deregister/web-1")
    await events.wait_for(4, "unify.catalog.instance")
    register(consul_http_addr, "web-2", "web", 8081, [])  # sentinel: nothing of web-1 after
    await events.wait_for_instance("instance.registered", "web-2")
    kinds = [e.type for s, _, e in events.items if s.startswith("unify.catalog.instance")]
    # re-registering with the TTL check resets it to passing: health flips, then port update
    assert kinds[:2] == ["instance.registered", "instance.health"]
    assert kinds[-2:] == ["instance.deregistered", "instance.registered"]
    updated = [e for _, _, e in events.items if e.type == "instance.updated"]
    assert [(u.previous.port, u.instance.port) for u in updated] == [(8080, 9090)]
    healths = [e for _, _, e in events.items if e.type == "instance.health"]
    assert (healths[0].previous_health, healths[0].instance.health) == ("passing", "critical")
    bucket = await ensure_catalog_bucket(events.nc.jetstream(), bridge_settings.common)
    await wait_until(lambda: stored(bucket), lambda ids: ids == [("web-2", "unify-dev")],
                     what="the bucket holding web-2 alone")
    await stop_bridge(handle)


async def stored(bucket) -> list[tuple[str, str]]:
    """(instance id, node) of each instance in the catalog bucket, sorted (the bucket is
    written just after the event is published: poll it)."""
    state = await read_catalog(bucket)
    return sorted((i.instance_id, i.node) for i in state.instances.values())


async def test_kv_events(bridge_settings, consul_http_addr, nats_server, events):
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    consul_call(consul_http_addr, "PUT", "/v1/kv/unify/dns/db.example.com", "10.1.2.3")
    consul_call(consul_http_addr, "PUT", "/v1/kv/elsewhere/x", "ignored")
    await events.wait_for(1, "unify.catalog.kv")
    consul_call(consul_http_addr, "DELETE", "/v1/kv/unify/dns/db.example.com")
    await events.wait_for(2, "unify.catalog.kv")
    kv = [(s, e.entry.key, e.entry.value) for s, _, e in events.items
          if s.startswith("unify.catalog.kv")]
    assert kv == [("unify.catalog.kv.set", "unify/dns/db.example.com", "10.1.2.3"),
                  ("unify.catalog.kv.deleted", "unify/dns/db.example.com", "10.1.2.3")]
    await stop_bridge(handle)


def put_kv_bytes(addr: str, key: str, value: bytes) -> None:
    req = urllib.request.Request(f"http://{addr}/v1/kv/{key}", data=value, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.read().strip() == b"true"


async def test_kv_values_that_are_not_utf8_arrive_byte_exact(bridge_settings, consul_http_addr,
                                                             nats_server, events):
    # both decode to the same lossy text (two U+FFFD); the events and the bucket must not
    first, second = b"\xff\xfe-10.0.0.1", b"\xfe\xff-10.0.0.1"
    assert first.decode("utf-8", "replace") == second.decode("utf-8", "replace")
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    put_kv_bytes(consul_http_addr, "unify/blob", first)
    await events.wait_for(1, "unify.catalog.kv")
    put_kv_bytes(consul_http_addr, "unify/blob", second)
    await events.wait_for(2, "unify.catalog.kv")
    put_kv_bytes(consul_http_addr, "unify/blob", "10.0.0.1 \u00e9".encode())
    await events.wait_for(3, "unify.catalog.kv")
    sets = [e.entry for s, _, e in events.items if s == "unify.catalog.kv.set"]
    assert [(e.key, e.raw, e.value_base64, e.text) for e in sets] == [
        ("unify/blob", first, "//4tMTAuMC4wLjE=", None),
        ("unify/blob", second, "/v8tMTAuMC4wLjE=", None),
        ("unify/blob", "10.0.0.1 \u00e9".encode(), None, "10.0.0.1 \u00e9")]
    assert sets[0].value == sets[1].value == "\ufffd\ufffd-10.0.0.1"

    # what a subscriber reads from the catalog bucket is exact too
    put_kv_bytes(consul_http_addr, "unify/blob", second)
    await events.wait_for(4, "unify.catalog.kv")
    bucket = await ensure_catalog_bucket(events.nc.jetstream(), bridge_settings.common)
    # the bucket is written just after the event is published
    state = await wait_until(lambda: read_catalog(bucket),
                             lambda state: state.kv["unify/blob"].raw == second, timeout=5,
                             what="unify/blob's second value in the catalog bucket")
    assert state.kv["unify/blob"].value_base64 == "/v8tMTAuMC4wLjE="
    await stop_bridge(handle)


async def test_malformed_tags_give_error_event_and_keep_instance(bridge_settings,
                                                                 consul_http_addr,
                                                                 nats_server, events):
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    register(consul_http_addr, "bad-1", "bad", 80, ["vhost=www"])
    await events.wait_for(1, "unify.error")
    _, msg_id, error = [i for i in events.items if i[0].startswith("unify.error")][0]
    assert (error.source, error.reason, error.service, error.instance_id) == (
        "consul-bridge", "invalid-tags", "bad", "bad-1")
    assert error.message == "tag 'vhost=www': vhost needs at least one dns=<domain> tag"
    registered = [e for s, _, e in events.items if e.type == "instance.registered"]
    assert registered[0].instance.unify is None
    assert registered[0].instance.tag_error == error.message
    await stop_bridge(handle)


async def test_restart_reconciles_against_the_bucket(bridge_settings, consul_http_addr,
                                                     nats_server, events):
    for i in range(4):
        register(consul_http_addr, f"api-{i}", "api", 7000 + i, [])
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    await events.wait_for(4, "unify.catalog.instance")
    await stop_bridge(handle)

    consul_call(consul_http_addr, "PUT", "/v1/agent/service/deregister/api-2")
    register(consul_http_addr, "cache-1", "cache", 6379, [])
    before = len(events.items)
    handle = await start_bridge(bridge_settings)
    await events.wait_for(before + 2, "unify.catalog.instance")
    # sentinels in both services: anything else the restart caused in them comes before
    register(consul_http_addr, "api-9", "api", 7009, [])
    register(consul_http_addr, "cache-9", "cache", 6399, [])
    await events.wait_for_instance("instance.registered", "api-9")
    await events.wait_for_instance("instance.registered", "cache-9")
    after = [(e.type, e.instance.instance_id) for _, _, e in events.items[before:]]
    assert sorted(after) == [("instance.deregistered", "api-2"),
                             ("instance.registered", "api-9"),
                             ("instance.registered", "cache-1"),
                             ("instance.registered", "cache-9")]
    await stop_bridge(handle)


async def test_mass_disappearance_is_held_then_confirmed(bridge_settings, consul_http_addr,
                                                         nats_server, events):
    settings = bridge_settings.replace(removal_confirm_s=3.0)
    for i in range(4):
        register_on_node(consul_http_addr, "worker-1", f"job-{i}", "job", 7100 + i)
    with json_log() as written:
        handle = await start_bridge(settings)
        await events.start(nats_server.url)
        await events.wait_for(4, "unify.catalog.instance")
        # one answer without any of them (the whole node is gone): held, not trusted at once
        consul_call(consul_http_addr, "PUT", "/v1/catalog/deregister", {"Node": "worker-1"})
        await written.wait_for("removal held until confirmed")
        await events.wait_for(8, "unify.catalog.instance", timeout=15)
    [held, *_] = [json.loads(line) for line in written.lines
                  if json.loads(line)["msg"] == "removal held until confirmed"]
    assert (held["service"], held["held"], held["confirm_s"]) == ("job", 4, 3.0)
    gone = [e for s, _, e in events.items if s.startswith("unify.catalog.instance.dereg")]
    assert sorted(e.instance.instance_id for e in gone) == [f"job-{i}" for i in range(4)]
    # released only once the absence lasted the window (the line is written when the
    # absence is first seen; both times are wall clock, the line's to the millisecond)
    held_ms = dt.datetime.fromisoformat(held["ts"]).timestamp() * 1000
    assert min(e.observed_at for e in gone) - held_ms >= 2990
    assert [t for t, _ in events.types("unify.catalog.instance")][:4] == [
        "instance.registered"] * 4
    await stop_bridge(handle)


async def test_mass_disappearance_that_comes_back_publishes_nothing(
        bridge_settings, consul_http_addr, nats_server, events):
    settings = bridge_settings.replace(removal_confirm_s=5.0)
    for i in range(4):
        register_on_node(consul_http_addr, "worker-2", f"q-{i}", "queue", 7200 + i)
    with json_log() as written:
        handle = await start_bridge(settings)
        await events.start(nats_server.url)
        await events.wait_for(4, "unify.catalog.instance")
        consul_call(consul_http_addr, "PUT", "/v1/catalog/deregister", {"Node": "worker-2"})
        await written.wait_for("removal held until confirmed")
    for i in range(3):  # the node came back with the same registrations, all but q-3
        register_on_node(consul_http_addr, "worker-2", f"q-{i}", "queue", 7200 + i)
    # q-3 went with the others in the same answer: its removal is released once the window
    # is over, in the same re-check that would release the others were they still held
    await events.wait_for_instance("instance.deregistered", "q-3")
    register_on_node(consul_http_addr, "worker-2", "q-9", "queue", 7209)  # sentinel
    await events.wait_for_instance("instance.registered", "q-9")
    kinds = events.types("unify.catalog.instance")
    # re-registration gives the instances new Consul indexes: they are updates, not losses
    assert [i for k, i in kinds if k == "instance.deregistered"] == ["q-3"]
    assert [k for k, _ in kinds[:4]] == ["instance.registered"] * 4
    await stop_bridge(handle)


def register_on_node(addr: str, node: str, service_id: str, name: str, port: int) -> None:
    consul_call(addr, "PUT", "/v1/catalog/register", {
        "Node": node, "Address": "127.0.0.2",
        "Service": {"ID": service_id, "Service": name, "Port": port, "Address": "127.0.0.2"}})


def _lock_holder(addr: str) -> str:
    answer = consul_call(addr, "GET", "/v1/kv/unify-locks/consul-bridge")
    import base64
    return base64.b64decode(answer[0]["Value"]).decode() if answer[0].get("Session") else ""


async def test_two_bridges_one_publisher_and_takeover(bridge_settings, consul_http_addr,
                                                      nats_server, events):
    import os
    import signal
    import subprocess
    import sys

    def spawn(node: str) -> subprocess.Popen:
        env = dict(os.environ, CONSUL_HTTP_ADDR=consul_http_addr, NATS_URL=nats_server.url,
                   UNIFY_NODE=node, UNIFY_BRIDGE_LOCK_TTL="10", UNIFY_BRIDGE_WAIT="20")
        return subprocess.Popen([sys.executable, "-m", "consul_bridge"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = spawn("bridge-a")
    await wait_until(lambda: _lock_holder(consul_http_addr), lambda holder: holder == "bridge-a",
                     timeout=20, what="bridge-a leading", retry_on=(Exception,))
    second = spawn("bridge-b")
    try:
        await events.start(nats_server.url)
        register(consul_http_addr, "one-1", "one", 81, [])
        await events.wait_for(1, "unify.catalog.instance")
        assert _lock_holder(consul_http_addr) == "bridge-a"
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        # session TTL 10 s; Consul may take up to twice that
        await wait_until(lambda: _lock_holder(consul_http_addr),
                         lambda holder: holder == "bridge-b", timeout=30, interval=0.1,
                         what="bridge-b taking over")
        register(consul_http_addr, "two-1", "two", 82, [])
        await events.wait_for(2, "unify.catalog.instance")
        # sentinels: a republished one-1 or a second two-1 would come before them
        register(consul_http_addr, "one-2", "one", 83, [])
        register(consul_http_addr, "two-2", "two", 84, [])
        await events.wait_for_instance("instance.registered", "one-2")
        await events.wait_for_instance("instance.registered", "two-2")
        seen = events.types("unify.catalog.instance")
        assert seen[:2] == [("instance.registered", "one-1"), ("instance.registered", "two-1")]
        assert sorted(seen[2:]) == [("instance.registered", "one-2"),
                                    ("instance.registered", "two-2")]
    finally:
        for proc in (first, second):
            proc.terminate()
            proc.wait(10)
    _ = json  # keep import used for debugging output


@pytest.mark.parametrize("comes_back", [True, False], ids=["re-registered", "really-gone"])
async def test_consul_agent_restart(tmp_path, nats_server, events, comes_back):
    """A dev agent restarts empty. If registrations come back within the confirmation
    window nothing is deregistered; if they do not, each instance is deregistered once."""
    from unify_common.settings import CommonSettings
    from unify_testkit.devstack.consul import ConsulAgent

    agent = ConsulAgent(tmp_path / "consul").start()
    try:
        settings = BridgeSettings(
            common=CommonSettings(consul_addr=agent.http_addr, nats_urls=(nats_server.url,),
                                  node="restart-node"),
            wait_s=10.0, removal_confirm_s=4.0)
        for i in range(4):
            register(agent.http_addr, f"r-{i}", "restarted", 7300 + i, [])
        handle = await start_bridge(settings)
        await events.start(nats_server.url)
        await events.wait_for(4, "unify.catalog.instance")
        with json_log() as written:
            agent.stop()  # the bridge sees its queries fail and keeps its state
            await written.wait_for("Consul query (last known state stands) failed; retrying")
        with json_log() as written:
            agent.start()
            # the session died with the agent: wait for the new leader, and for it to hold
            # the removals the empty agent's answer shows
            await wait_until(lambda: _lock_holder(agent.http_addr),
                             lambda holder: holder == "restart-node", timeout=30, interval=0.1,
                             what="the bridge leading again", retry_on=(Exception,))
            await written.wait_for("removal held until confirmed")
        if comes_back:  # all but r-3
            for i in range(3):
                register(agent.http_addr, f"r-{i}", "restarted", 7300 + i, [])
        if comes_back:
            # r-3 went with the others: its removal goes out once the window is over, in
            # the same re-check that would release the others were they still held; the
            # sentinel r-9 comes after anything that re-check published
            await events.wait_for_instance("instance.deregistered", "r-3", timeout=30)
            register(agent.http_addr, "r-9", "restarted", 7309, [])
            await events.wait_for_instance("instance.registered", "r-9")
            kinds = events.types("unify.catalog.instance")[4:]
            assert [i for k, i in kinds if k == "instance.deregistered"] == ["r-3"]
        else:
            await events.wait_for(8, "unify.catalog.instance", timeout=30)
            assert sorted(events.types("unify.catalog.instance")[4:]) == [
                ("instance.deregistered", f"r-{i}") for i in range(4)]
        await stop_bridge(handle)
    finally:
        agent.stop()


class WrittenLog:
    """What the log handler wrote: ``lines`` (JSON objects, one a line)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    async def wait_for(self, msg: str, timeout: float = 15.0) -> None:
        """Wait until a line with message ``msg`` was written."""
        await wait_until(lambda: [json.loads(line)["msg"] for line in self.lines],
                         lambda written: msg in written, timeout=timeout,
                         what=f"a log line {msg!r}")


@contextlib.contextmanager
def json_log() -> Iterator[WrittenLog]:
    """Configure logging as a service does (``configure_logging(fmt="json")``, level DEBUG)
    into a buffer, read through the :class:`WrittenLog` given. The root logger's handlers
    and level are restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    written = WrittenLog()
    configure_logging(fmt="json", level="DEBUG", stream=written.stream)
    try:
        yield written
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


async def test_acl_token_is_used_and_never_logged(tmp_path, nats_server, events):
    """With Consul ACLs on (default deny), the bridge sees the catalog only through
    CONSUL_HTTP_TOKEN, and neither the token nor the password of a NATS_URL with one appear
    in what the JSON handler writes (structured fields included), even when a log call
    passes them as fields."""
    from unify_common.settings import CommonSettings
    from unify_testkit.devstack.consul import ConsulAgent

    token = "5e3c7a52-8d1f-4c2b-9a61-acl-management"
    agent = ConsulAgent(tmp_path / "consul", extra_config={"acl": {
        "enabled": True, "default_policy": "deny",
        "tokens": {"initial_management": token}}}).start()
    try:
        req = urllib.request.Request(
            f"http://{agent.http_addr}/v1/agent/service/register", method="PUT",
            data=json.dumps({"ID": "sec-1", "Name": "secured", "Port": 443,
                             "Address": "127.0.0.1"}).encode(),
            headers={"X-Consul-Token": token})
        urllib.request.urlopen(req, timeout=10).read()
        # nats-server without authorization accepts any user: the URL is only a carrier
        nats_url = nats_server.url.replace("nats://", "nats://unify:n4ts-pw-secret@")

        def settings_with(secret: str) -> BridgeSettings:
            return BridgeSettings(
                common=CommonSettings.from_env({"CONSUL_HTTP_ADDR": agent.http_addr,
                                                "CONSUL_HTTP_TOKEN": secret,
                                                "NATS_URL": nats_url,
                                                "UNIFY_NODE": "acl-node"}),
                wait_s=10.0, removal_confirm_s=2.0)

        # without the token the agent denies everything: no leadership, no events
        with json_log() as denied:
            handle = await start_bridge(settings_with(""))
            await events.start(nats_server.url)
            await denied.wait_for("lock attempt failed; retrying")
            await stop_bridge(handle)
        assert events.types() == []
        refusals = [entry for entry in map(json.loads, denied.lines)
                    if entry["msg"] == "lock attempt failed; retrying"]
        assert [(e["lock"], "Permission denied" in e["reason"]) for e in refusals] == [
            ("consul-bridge", True)]

        settings = settings_with(token)
        with json_log() as written:
            handle = await start_bridge(settings)
            await events.wait_for(1, "unify.catalog.instance", timeout=30)
            assert events.types("unify.catalog.instance") == [("instance.registered", "sec-1")]
            await stop_bridge(handle)
            # the settings reach a log line, and a careless call passes the token itself
            get_logger("consul_bridge").warning(
                "settings", nats_urls=settings.common.nats_urls, settings=repr(settings),
                consul_token=settings.common.consul_token.get_secret_value())
        lines = written.lines
        assert token not in "\n".join(lines)
        assert "n4ts-pw-secret" not in "\n".join(lines)
        # the lines do carry the structured fields, masked
        last = json.loads(lines[-1])
        del last["ts"], last["settings"]
        assert last == {"level": "warning", "logger": "consul_bridge", "msg": "settings",
                        "consul_token": "***", "nats_urls": [
                            nats_server.url.replace("nats://", "nats://unify:***@")]}
        loaded = [json.loads(line) for line in lines if '"catalog loaded from bucket"' in line]
        assert [sorted(entry) for entry in loaded] == [
            ["instances", "kv", "level", "logger", "msg", "ts"]]
    finally:
        agent.stop()


async def test_oversized_instance_is_skipped_and_the_bridge_goes_on(bridge_settings,
                                                                    consul_http_addr,
                                                                    nats_server, events):
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    register(consul_http_addr, "big-1", "bigtags", 80, ["x" * 1_500_000, "dns=example.com"])
    await events.wait_for(1, "unify.error")
    errors = [e for s, _, e in events.items if s.startswith("unify.error")]
    assert [(e.reason, e.service, e.instance_id) for e in errors][:1] == [
        ("instance-too-large", "bigtags", "big-1")]
    register(consul_http_addr, "after-1", "after", 81, ["dns=example.com"])
    await events.wait_for(1, "unify.catalog.instance")
    assert events.types("unify.catalog.instance") == [("instance.registered", "after-1")]
    await stop_bridge(handle)


async def test_weight_comes_from_consul_weights(bridge_settings, consul_http_addr,
                                                nats_server, events):
    """``Service.Weights.Passing`` becomes ``Instance.weight``; changing it is an update."""
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    body = {"ID": "w-1", "Name": "weighted", "Port": 8080, "Address": "127.0.0.1",
            "Tags": ["dns=example.com", "vhost=w"], "Weights": {"Passing": 7, "Warning": 1}}
    consul_call(consul_http_addr, "PUT", "/v1/agent/service/register", body)
    await events.wait_for(1, "unify.catalog.instance")
    consul_call(consul_http_addr, "PUT", "/v1/agent/service/register",
                {**body, "Weights": {"Passing": 3, "Warning": 1}})
    await events.wait_for(2, "unify.catalog.instance")
    got = [(e.type, e.instance.weight, getattr(getattr(e, "previous", None), "weight", None))
           for s, _, e in events.items if s.startswith("unify.catalog.instance")]
    assert got == [("instance.registered", 7, None), ("instance.updated", 3, 7)]
    await stop_bridge(handle)


async def test_service_name_consul_cannot_query_is_skipped_with_one_error(
        bridge_settings, consul_http_addr, nats_server, events):
    """A name with a newline is registered fine but every query for it gets HTTP 400: one
    error event, no retry loop, and the other services flow as usual."""
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    register(consul_http_addr, "bad-1", "new\nline", 8080, ["dns=example.com"])
    register(consul_http_addr, "web-1", "web", 8081, ["dns=example.com", "vhost=www"])
    await events.wait_for(1, "unify.catalog.instance")
    await events.wait_for(1, "unify.error.consul-bridge")
    register(consul_http_addr, "web-2", "web", 8082, ["dns=example.com", "vhost=www"])
    await events.wait_for(2, "unify.catalog.instance")
    # sentinels: a second bad name is reported by the same node query after any repeat of
    # the first; web-3 comes after anything else in web
    register(consul_http_addr, "bad-2", "other\nname", 8083, ["dns=example.com"])
    register(consul_http_addr, "web-3", "web", 8084, ["dns=example.com", "vhost=www"])
    await events.wait_for(2, "unify.error.consul-bridge")
    await events.wait_for_instance("instance.registered", "web-3")
    errors = [e for s, _, e in events.items if s == "unify.error.consul-bridge"]
    assert [(e.reason, e.service, e.message) for e in errors] == [(
        "invalid-service-name", "new\nline",
        "service name 'new\\nline' has control characters; Consul refuses queries for it "
        "(HTTP 400), so its instances are skipped"), (
        "invalid-service-name", "other\nname",
        "service name 'other\\nname' has control characters; Consul refuses queries for it "
        "(HTTP 400), so its instances are skipped")]
    assert events.types("unify.catalog.instance") == [("instance.registered", "web-1"),
                                                      ("instance.registered", "web-2"),
                                                      ("instance.registered", "web-3")]
    assert {"bad-1", "bad-2"}.isdisjoint(
        {getattr(getattr(e, "instance", None), "instance_id", "") for _, _, e in events.items})
    await stop_bridge(handle)


def catalog_register(addr: str, node: str, node_address: str, service_id: str, name: str,
                     port: int) -> None:
    """Register on another node, as the catalog API lets an external registrator do."""
    consul_call(addr, "PUT", "/v1/catalog/register", {
        "Node": node, "Address": node_address,
        "Service": {"ID": service_id, "Service": name, "Port": port, "Tags": []}})


async def test_services_on_other_nodes_moving_and_coming_back(bridge_settings,
                                                              consul_http_addr, nats_server,
                                                              events):
    """Services are found through each node's own query: a service on another node, a
    service moving from one node to another (no spurious deregistration of the new instance),
    a whole node going, and a service that went coming back are all exact."""
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    catalog_register(consul_http_addr, "node-a", "10.1.0.1", "mover-1", "mover", 8001)
    await events.wait_for(1, "unify.catalog.instance")
    catalog_register(consul_http_addr, "node-b", "10.1.0.2", "mover-2", "mover", 8002)
    await events.wait_for(2, "unify.catalog.instance")
    consul_call(consul_http_addr, "PUT", "/v1/catalog/deregister",
                {"Node": "node-a", "ServiceID": "mover-1"})
    await events.wait_for(3, "unify.catalog.instance")
    consul_call(consul_http_addr, "PUT", "/v1/catalog/deregister", {"Node": "node-b"})
    await events.wait_for(4, "unify.catalog.instance")
    # the service went from every node; it comes back on the first one
    catalog_register(consul_http_addr, "node-a", "10.1.0.1", "mover-3", "mover", 8003)
    await events.wait_for(5, "unify.catalog.instance")
    # sentinel in the same service: any spurious event of mover-3 would come before it
    catalog_register(consul_http_addr, "node-a", "10.1.0.1", "mover-4", "mover", 8004)
    await events.wait_for_instance("instance.registered", "mover-4")
    assert events.types("unify.catalog.instance") == [
        ("instance.registered", "mover-1"), ("instance.registered", "mover-2"),
        ("instance.deregistered", "mover-1"), ("instance.deregistered", "mover-2"),
        ("instance.registered", "mover-3"), ("instance.registered", "mover-4")]
    addresses = [(e.instance.node, e.instance.address, e.instance.port)
                 for s, _, e in events.items if s.startswith("unify.catalog.instance.reg")]
    assert addresses == [("node-a", "10.1.0.1", 8001), ("node-b", "10.1.0.2", 8002),
                         ("node-a", "10.1.0.1", 8003), ("node-a", "10.1.0.1", 8004)]
    bucket = await ensure_catalog_bucket(events.nc.jetstream(), bridge_settings.common)
    await wait_until(lambda: stored(bucket),
                     lambda ids: ids == [("mover-3", "node-a"), ("mover-4", "node-a")],
                     what="the bucket holding mover-3 and mover-4")
    await stop_bridge(handle)


async def test_node_name_consul_cannot_query_is_skipped_with_one_error(
        bridge_settings, consul_http_addr, nats_server, events):
    """A node name with a newline: Consul answers HTTP 400 to its node query, so the node is
    reported once and skipped; a service it shares with a readable node is still followed
    (the service's own query lists every node), the others flow as usual, names with URL
    characters (``?``, ``/``, ``#``, space) included."""
    handle = await start_bridge(bridge_settings)
    await events.start(nats_server.url)
    catalog_register(consul_http_addr, "bad\nnode", "10.2.0.1", "lonely-1", "lonely", 8001)
    catalog_register(consul_http_addr, "bad\nnode", "10.2.0.1", "shared-1", "shared", 8002)
    catalog_register(consul_http_addr, "good-node", "10.2.0.2", "shared-2", "shared", 8003)
    await events.wait_for(2, "unify.catalog.instance")
    await events.wait_for(1, "unify.error.consul-bridge")
    catalog_register(consul_http_addr, "good-node", "10.2.0.2", "after-1", "after", 8004)
    # characters that mean something in a URL are data in a name
    catalog_register(consul_http_addr, "odd node/a?b#c", "10.2.0.3", "odd-1", "we?ird/na me#x",
                     8005)
    await events.wait_for(4, "unify.catalog.instance")
    # sentinels: a second bad node is reported by the node list query after any repeat of
    # the first; one more instance in each service comes after anything else in it
    catalog_register(consul_http_addr, "bad\nnode2", "10.2.0.4", "lonely-2", "lonely2", 8006)
    catalog_register(consul_http_addr, "good-node", "10.2.0.2", "after-2", "after", 8007)
    catalog_register(consul_http_addr, "good-node", "10.2.0.2", "shared-3", "shared", 8008)
    catalog_register(consul_http_addr, "odd node/a?b#c", "10.2.0.3", "odd-2", "we?ird/na me#x",
                     8009)
    await events.wait_for(2, "unify.error.consul-bridge")
    for sentinel in ("after-2", "shared-3", "odd-2"):
        await events.wait_for_instance("instance.registered", sentinel)
    errors = [e for s, _, e in events.items if s == "unify.error.consul-bridge"]
    assert [(e.reason, e.node, e.service, e.message) for e in errors] == [(
        "invalid-node-name", "bad\nnode", "",
        "node name 'bad\\nnode' has control characters; Consul refuses queries for it "
        "(HTTP 400), so services registered only on it are skipped"), (
        "invalid-node-name", "bad\nnode2", "",
        "node name 'bad\\nnode2' has control characters; Consul refuses queries for it "
        "(HTTP 400), so services registered only on it are skipped")]
    assert sorted(events.types("unify.catalog.instance")) == [
        ("instance.registered", "after-1"), ("instance.registered", "after-2"),
        ("instance.registered", "odd-1"), ("instance.registered", "odd-2"),
        ("instance.registered", "shared-1"), ("instance.registered", "shared-2"),
        ("instance.registered", "shared-3")]
    [odd] = [e.instance for _, _, e in events.items
             if getattr(getattr(e, "instance", None), "instance_id", "") == "odd-1"]
    assert (odd.service, odd.node, odd.address) == ("we?ird/na me#x", "odd node/a?b#c",
                                                    "10.2.0.3")
    await stop_bridge(handle)
