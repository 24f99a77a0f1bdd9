"""registrator's plan as tables: current agent services (only ours) vs wanted."""

from __future__ import annotations

import pytest

from registrator.plan import is_ours, make_plan, ours, scope_prefix
from registrator.rules import DIGEST, MARKER, Registration

NODE = "n1"


def want(service_id: str, port: int = 8080, digest: str = "d1") -> Registration:
    return Registration(id=service_id, name="shop", address="10.0.0.7", port=port,
                        tags=("a",), meta={MARKER: NODE, DIGEST: digest})


def have(service_id: str, port: int = 8080, digest: str = "d1", node: str = NODE,
         tags=("a",)) -> dict:
    """An entry of GET /v1/agent/services."""
    return {"ID": service_id, "Service": "shop", "Address": "10.0.0.7", "Port": port,
            "Tags": list(tags), "Meta": {MARKER: node, DIGEST: digest}}


@pytest.mark.parametrize("service,expected", [
    (have("n1:web:80"), True),
    (have("n1:web:80", node="n2"), False),                    # another node's registrator
    (have("n2:web:80"), False),                               # marker forged on a foreign ID
    ({"ID": "n1:web:80", "Service": "x", "Meta": {}}, False),  # no marker
    ({"ID": "n1:web:80", "Service": "x", "Meta": None}, False),
    ({"ID": "consul", "Service": "consul"}, False),
])
def test_is_ours(service, expected):
    assert is_ours(service, NODE) is expected


def test_ours_filters():
    services = {"n1:a:80": have("n1:a:80"), "other": {"ID": "other", "Meta": {}}}
    assert list(ours(services, NODE)) == ["n1:a:80"]


PLANS = [
    ("nothing to do", {"n1:a:80": have("n1:a:80")}, [want("n1:a:80")], None, (),
     [], []),
    ("new container", {}, [want("n1:a:80")], None, (), ["n1:a:80"], []),
    ("gone container", {"n1:a:80": have("n1:a:80")}, [], None, (), [], ["n1:a:80"]),
    ("changed digest re-registers", {"n1:a:80": have("n1:a:80", digest="old")},
     [want("n1:a:80")], None, (), ["n1:a:80"], []),
    ("changed port re-registers", {"n1:a:80": have("n1:a:80", port=1)}, [want("n1:a:80")],
     None, (), ["n1:a:80"], []),
    ("tags edited elsewhere re-registers", {"n1:a:80": have("n1:a:80", tags=("b",))},
     [want("n1:a:80")], None, (), ["n1:a:80"], []),
    ("scope: one container's services only",
     {"n1:a:80": have("n1:a:80"), "n1:b:80": have("n1:b:80")}, [], scope_prefix(NODE, "a"),
     (), [], ["n1:a:80"]),
    ("scope does not match a longer name", {"n1:ab:80": have("n1:ab:80")}, [],
     scope_prefix(NODE, "a"), (), [], []),
    ("keep: an unreadable container's services stay",
     {"n1:a:80": have("n1:a:80"), "n1:b:80": have("n1:b:80")}, [], None,
     (scope_prefix(NODE, "b"),), [], ["n1:a:80"]),
]


@pytest.mark.parametrize("current,wanted,scope,keep,register,deregister",
                         [case[1:] for case in PLANS], ids=[case[0] for case in PLANS])
def test_plan(current, wanted, scope, keep, register, deregister):
    plan = make_plan(current, wanted, scope=scope, keep=keep)
    assert [r.id for r in plan.register] == register
    assert list(plan.deregister) == deregister
    assert plan.empty is (not register and not deregister)
