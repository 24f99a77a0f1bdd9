"""Pure table: what switchboard does to get HAProxy from its live state to a desired one
(``decide``: unchanged / runtime / spare / reload, with exactly what each carries)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from switchboard.decision import LiveState, Reload, Runtime, Spare, Unchanged, decide
from switchboard.desired import backend_name, build_desired, frontend_ports
from switchboard.plan import SparePlan, slot_layout
from switchboard.render import RenderOptions
from tests.fixtures.catalog import make_instance

MAPS = RenderOptions(bind="127.0.0.1", run_dir="/run/sb", host_maps=True)
RULES = RenderOptions(bind="127.0.0.1", run_dir="/run/sb", host_maps=False)
WEB, DOCS, API = (backend_name("http", s) for s in ("web", "docs", "api"))
MAP = "/run/sb/fe_http_8080.map"


def inst(service: str, instance_id: str, last: int, tags: list[str], **kwargs):
    return make_instance(service, instance_id, f"10.0.0.{last}", 8000 + last, tags, **kwargs)


def vhost(name: str, *extra: str) -> list[str]:
    return ["dns=example.com", f"vhost={name}", "http=8080", *extra]


W1 = inst("web", "w1", 1, vhost("web"))
W2 = inst("web", "w2", 2, vhost("web"))
A1 = inst("api", "a1", 3, vhost("api"))
D1 = inst("docs", "d1", 4, vhost("docs"))
BASE = [W1, A1]

#: the spare plan that serves docs through be_spare_1 (what ``decide`` gives for + D1)
DOCS_PLAN = SparePlan(
    apply=("set server be_spare_1/s1 addr 10.0.0.4 port 8004", "set weight be_spare_1/s1 1",
           "set server be_spare_1/s1 state ready", "set server be_spare_1/s1 health up",
           f"add map {MAP} docs.example.com be_spare_1"),
    undo=(f"del map {MAP} docs.example.com", "set server be_spare_1/s1 state maint",
          "set server be_spare_1/s1 addr 127.0.0.1 port 1"),
    spares=((DOCS, "be_spare_1"),))


def live_of(instances, **fields) -> LiveState:
    """The live state after a reconcile applied ``instances`` (``fields`` override)."""
    applied = build_desired(instances, spare_backends=2)
    state = LiveState(applied=applied, slots=slot_layout(applied),
                      ports=frontend_ports(applied))
    return replace(state, **fields)


def w2_slot_commands() -> tuple[str, ...]:
    return (f"set server {WEB}/s2 addr 10.0.0.2 port 8002", f"set weight {WEB}/s2 1",
            f"set server {WEB}/s2 state ready", f"set server {WEB}/s2 health up")


CASES = [
    pytest.param(LiveState(), BASE, MAPS, Reload(), id="unknown-worker-reloads-if-file-changes"),
    pytest.param(LiveState(slots={WEB: ("x",)}, ports={8080: "http"}), BASE, MAPS, Reload(),
                 id="layout-from-the-file-but-worker-unknown"),
    pytest.param(live_of(BASE), BASE, MAPS, Unchanged(), id="same-state-unchanged"),
    pytest.param(live_of(BASE, reload_pending=True), BASE, MAPS, Runtime((), first=False),
                 id="same-state-reload-pending-settled-by-the-file"),
    pytest.param(live_of(BASE), [W1, W2, A1], MAPS, Runtime(w2_slot_commands(), first=True),
                 id="new-instance-runtime-before-the-file"),
    pytest.param(live_of(BASE, reload_pending=True), [W1, W2, A1], MAPS,
                 Runtime(w2_slot_commands(), first=False),
                 id="new-instance-reload-pending-file-first"),
    pytest.param(live_of(BASE), [W1, inst("api", "a1", 3, vhost("api2"))], MAPS,
                 Runtime((f"del map {MAP} api.example.com",
                          f"add map {MAP} api2.example.com {API}"), first=True),
                 id="host-renamed-in-the-map-at-runtime"),
    pytest.param(live_of(BASE), [W1, A1, D1], MAPS, Spare(DOCS_PLAN),
                 id="new-default-vhost-through-a-spare"),
    pytest.param(live_of(BASE, reload_pending=True), [W1, A1, D1], MAPS, Reload(),
                 id="new-vhost-reload-pending-reloads"),
    pytest.param(live_of(BASE), [W1, A1, D1], RULES, Reload(),
                 id="new-vhost-without-host-maps-reloads"),
    pytest.param(live_of(BASE), [W1, A1, inst("docs", "d1", 4, vhost("docs", "balance=first"))],
                 MAPS, Reload(), id="new-vhost-other-profile-reloads"),
    pytest.param(live_of(BASE), [W1, A1, inst("db", "d1", 5, ["tcp=15432"])], MAPS, Reload(),
                 id="new-port-reloads"),
    pytest.param(live_of(BASE, spare=DOCS_PLAN), [W1, A1, D1], MAPS,
                 Reload(forced=True, undo=DOCS_PLAN), id="spare-in-flight-forced-reload"),
    pytest.param(live_of(BASE, spare=DOCS_PLAN), BASE, MAPS,
                 Reload(forced=True, undo=DOCS_PLAN),
                 id="spare-in-flight-vhost-gone-again-still-reloads"),
]


@pytest.mark.parametrize(("live", "instances", "options", "expected"), CASES)
def test_decide(live, instances, options, expected):
    desired = build_desired(instances, previous_slots=live.slots, spare_backends=2,
                            previous_ports=live.ports)
    assert decide(live, desired, options) == expected


def test_live_state_is_frozen():
    with pytest.raises(AttributeError):
        LiveState().reload_pending = True  # type: ignore[misc]
