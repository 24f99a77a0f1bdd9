"""Pure change detection: tables of named cases, exact events and message ids."""

import pytest

from consul_bridge.diff import diff_instances, diff_kv
from tests.fixtures.catalog import make_instance
from unify_common.events import KvEntry

WEB_A = make_instance("web", "web-a", "10.0.0.1", 8080, ["dns=example.com"])
WEB_A_MOVED = make_instance("web", "web-a", "10.0.0.9", 8080, ["dns=example.com"])
WEB_A_SICK = make_instance("web", "web-a", "10.0.0.1", 8080, ["dns=example.com"],
                           status="critical")
WEB_B = make_instance("web", "web-b", "10.0.0.2", 8080)


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        pytest.param({}, {}, [], id="empty"),
        pytest.param({WEB_A.key: WEB_A}, {WEB_A.key: WEB_A}, [], id="unchanged"),
        pytest.param({}, {WEB_A.key: WEB_A}, [("instance.registered", "registered")],
                     id="new"),
        pytest.param({WEB_A.key: WEB_A}, {WEB_A.key: WEB_A_MOVED},
                     [("instance.updated", "updated")], id="address-changed"),
        pytest.param({WEB_A.key: WEB_A}, {WEB_A.key: WEB_A_SICK},
                     [("instance.health", "health")], id="health-only"),
        pytest.param({WEB_A.key: WEB_A}, {}, [("instance.deregistered", "deregistered")],
                     id="gone"),
    ],
)
def test_diff_instances(previous, current, expected):
    changes = diff_instances(previous, current, index=42, now_ms=1000)
    assert [(c.event.type, c.subject.split(".")[3]) for c in changes] == expected
    for change in changes:
        assert change.subject.endswith(".web")
        assert change.msg_id.split(":")[:3] == [change.subject.split(".")[3], WEB_A.key, "42"]
        assert change.event.consul_index == 42
        assert change.event.observed_at == 1000
        assert (change.put is None) == (change.event.type == "instance.deregistered")


def test_message_ids_are_deterministic_and_content_bound():
    first = diff_instances({}, {WEB_A.key: WEB_A}, index=7, now_ms=1)
    again = diff_instances({}, {WEB_A.key: WEB_A}, index=7, now_ms=999)
    other = diff_instances({}, {WEB_A.key: WEB_A_MOVED}, index=7, now_ms=1)
    assert first[0].msg_id == again[0].msg_id
    assert first[0].msg_id != other[0].msg_id


def test_changes_are_sorted_by_key():
    changes = diff_instances({}, {WEB_B.key: WEB_B, WEB_A.key: WEB_A}, index=1, now_ms=0)
    assert [c.key for c in changes] == sorted([WEB_A.key, WEB_B.key])


def test_diff_kv():
    old = KvEntry(key="unify/dns/a.example.com", value="10.0.0.1", modify_index=5)
    new = KvEntry(key="unify/dns/a.example.com", value="10.0.0.2", modify_index=9)
    assert diff_kv({old.key: old}, {old.key: old}, index=9, now_ms=0) == []
    changed = diff_kv({old.key: old}, {new.key: new}, index=9, now_ms=0)
    assert [(c.subject, c.msg_id) for c in changed] == [
        ("unify.catalog.kv.set", f"kv.set:{new.catalog_key}:9")]
    gone = diff_kv({old.key: old}, {}, index=11, now_ms=0)
    assert [(c.subject, c.msg_id, c.put) for c in gone] == [
        ("unify.catalog.kv.deleted", f"kv.deleted:{old.catalog_key}:11", None)]
