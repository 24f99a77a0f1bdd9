"""Pure tables: slot assignment, slot layout recovery from a config, runtime commands."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from switchboard.desired import backend_name, build_desired, frontend_ports
from switchboard.model import Certificate
from switchboard.plan import layout_from_config, ports_from_config, runtime_commands, slot_layout
from switchboard.render import RenderOptions, render
from switchboard.slots import assign_slots, fresh_capacity
from tests.fixtures.catalog import make_instance

SLOT_CASES = {
    "fresh": (["b", "a"], None, 4, ("a", "b", None, None)),
    "fresh-grows-to-power-of-two": (["a", "b", "c"], None, 2, ("a", "b", "c", None, None, None,
                                                               None, None)),
    "keeps-places": (["b", "c"], ("a", "b", None, None), 4, ("c", "b", None, None)),
    "newcomers-fill-lowest-free": (["a", "d", "c"], ("a", None, None, None), 4,
                                   ("a", "c", "d", None)),
    "all-gone": ([], ("a", "b"), 4, (None, None)),
    "too-many-starts-fresh": (["a", "b", "c"], ("a", "b"), 4,
                              ("a", "b", "c", None, None, None, None, None)),
}


@pytest.mark.parametrize("case", list(SLOT_CASES.values()), ids=list(SLOT_CASES))
def test_assign_slots(case):
    keys, previous, min_slots, expected = case
    assert assign_slots(keys, previous, min_slots) == expected


@pytest.mark.parametrize(("count", "minimum", "expected"),
                         [(0, 4, 4), (1, 4, 4), (2, 4, 4), (3, 4, 8), (100, 4, 256)],
                         ids=["zero", "one", "two", "three", "hundred"])
def test_fresh_capacity(count, minimum, expected):
    assert fresh_capacity(count, minimum) == expected


TAGS = ["dns=example.com", "vhost=web", "http=8080"]
WEB = backend_name("http", "web")


def web(instance_id: str, address: str, status: str = "passing", port: int = 80):
    return make_instance("web", instance_id, address, port, TAGS, status=status)


def test_layout_survives_a_render_round_trip():
    desired = build_desired([web("w1", "10.0.0.1"), web("w2", "10.0.0.2")])
    text = render(desired, RenderOptions(host_maps=False)).decode()
    assert layout_from_config(text) == slot_layout(desired) | {"be_no_route": ()}
    assert layout_from_config("garbage\nbackend x\n    server s2 1.2.3.4:1\n") == {"x": ()}


def test_port_kinds_survive_a_render_round_trip():
    """A restarted switchboard reads each port's kind back from the live file (the https
    port's internal ``_tls`` frontend is not a port)."""
    certs = (Certificate("/c/star.pem", ("*.example.com",), "f1"),)
    desired = build_desired([
        web("w1", "10.0.0.1"),
        make_instance("db", "d1", "10.0.0.5", 5432, ["tcp=15432"]),
        make_instance("app", "p1", "10.0.0.6", 8080,
                      ["dns=example.com", "vhost=app", "https=8443"])], certificates=certs)
    text = render(desired, RenderOptions(host_maps=False)).decode()
    assert ports_from_config(text) == frontend_ports(desired) == {
        8080: "http", 8443: "https", 15432: "tcp"}
    assert ports_from_config("frontend fe_http_80x\nfrontend fe_https_8443_tls\n") == {}


def _runtime(before, after):
    live = build_desired(before)
    desired = build_desired(after, previous_slots=slot_layout(live))
    return runtime_commands(live, desired)


def _slot(desired_instances, instance_id):
    desired = build_desired(desired_instances)
    key = web(instance_id, "0.0.0.0").key
    return 1 + [s.key if s else None for s in desired.backends[0].slots].index(key)


def test_added_instance_goes_to_a_free_slot_at_runtime():
    w1 = web("w1", "10.0.0.1")
    w2 = web("w2", "10.0.0.2")
    slot = 2  # w1 keeps s1; the lowest free slot takes w2
    assert _runtime([w1], [w1, w2]) == [
        f"set server {WEB}/s{slot} addr 10.0.0.2 port 80",
        f"set weight {WEB}/s{slot} 1",
        f"set server {WEB}/s{slot} state ready",
        f"set server {WEB}/s{slot} health up",
    ]


def test_health_changes_at_runtime():
    w1 = web("w1", "10.0.0.1")
    assert _runtime([w1], [web("w1", "10.0.0.1", "critical")]) == [
        f"set server {WEB}/s1 state maint"]
    assert _runtime([w1], [web("w1", "10.0.0.1", "warning")]) == [
        f"set weight {WEB}/s1 0", f"set server {WEB}/s1 state ready",
        f"set server {WEB}/s1 health up"]


def test_removed_instance_frees_its_slot_at_runtime():
    w1, w2 = web("w1", "10.0.0.1"), web("w2", "10.0.0.2")
    slot = _slot([w1, w2], "w2")
    assert _runtime([w1, w2], [w1]) == [f"set server {WEB}/s{slot} state maint",
                                        f"set server {WEB}/s{slot} addr 127.0.0.1 port 1"]


def test_same_state_needs_no_command():
    assert _runtime([web("w1", "10.0.0.1")], [web("w1", "10.0.0.1")]) == []


def test_structural_changes_need_a_reload():
    w1 = web("w1", "10.0.0.1")
    other = make_instance("api", "a1", "10.0.0.9", 80, ["dns=example.com", "vhost=api",
                                                        "http=8080"])
    assert _runtime([w1], [w1, other]) is None
    assert _runtime([w1], [web(f"w{i}", f"10.0.0.{i}") for i in range(1, 5)]) is not None
    assert _runtime([w1], [web(f"w{i}", f"10.0.0.{i}") for i in range(1, 6)]) is None
    live = build_desired([w1])
    changed = msgspec.structs.replace(live.backends[0], balance="leastconn")
    assert runtime_commands(live, dataclasses.replace(live, backends=(changed,))) is None


def test_weight_is_rendered_and_changed_at_runtime():
    """Consul's Weights.Passing becomes the server weight, clamped to HAProxy's 1-256."""
    w1 = web("w1", "10.0.0.1")
    heavy = msgspec.structs.replace(w1, weight=7)
    huge = msgspec.structs.replace(w1, weight=1000)
    assert _runtime([w1], [heavy]) == [
        f"set weight {WEB}/s1 7", f"set server {WEB}/s1 state ready",
        f"set server {WEB}/s1 health up"]
    assert _runtime([heavy], [huge]) == [
        f"set weight {WEB}/s1 256", f"set server {WEB}/s1 state ready",
        f"set server {WEB}/s1 health up"]
    text = render(build_desired([heavy]), RenderOptions(host_maps=False)).decode()
    assert f"    server s1 10.0.0.1:80 check weight 7 # {w1.key}\n" in text
    drained = msgspec.structs.replace(heavy, health="warning")
    text = render(build_desired([drained]), RenderOptions(host_maps=False)).decode()
    assert f"    server s1 10.0.0.1:80 check weight 0 # {w1.key}\n" in text
    assert layout_from_config(text)[WEB][0] == w1.key
