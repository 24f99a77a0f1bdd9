"""Route 53 planning: ownership, policies, type changes, healing, batching (pure tables)."""

from __future__ import annotations

import pytest

from dns411.model import RecordSet
from dns411.plan import (
    Change,
    ChangeUnit,
    batch_units,
    owner_of,
    owner_value,
    plan_route53,
    plan_zone,
    to_boto_change,
)

OWN = owner_value("me")
OTHER = owner_value("someone-else")


def rs(name, rtype, *values, ttl=30, origin="catalog"):
    return RecordSet(name, rtype, tuple(values), ttl, origin)


def r53(name, rtype, *values, ttl=30):
    return rs(name, rtype, *values, ttl=ttl, origin="route53")


def txt(name, rtype, value=OWN):
    return r53(f"_dns411-{rtype.lower()}.{name}", "TXT", value)


WEB = rs("web.example.com", "A", "10.0.0.1")


def summary(units):
    return [(u.what, [(c.action, c.record.name, c.record.type, c.record.values)
                      for c in u.changes]) for u in units]


CASES = [
    pytest.param([WEB], [], "sync",
                 [("web.example.com A", [
                     ("CREATE", "web.example.com", "A", ("10.0.0.1",)),
                     ("CREATE", "_dns411-a.web.example.com", "TXT", (OWN,))])], [],
                 id="create-with-companion"),
    pytest.param([WEB], [r53("web.example.com", "A", "10.0.0.1"), txt("web.example.com", "A")],
                 "sync", [], [], id="in-sync-no-changes"),
    pytest.param([rs("web.example.com", "A", "10.0.0.1", "10.0.0.2")],
                 [r53("web.example.com", "A", "10.0.0.1"), txt("web.example.com", "A")], "sync",
                 [("web.example.com A", [
                     ("UPSERT", "web.example.com", "A", ("10.0.0.1", "10.0.0.2"))])], [],
                 id="owned-value-change-upsert"),
    pytest.param([rs("web.example.com", "A", "10.0.0.1", ttl=60)],
                 [r53("web.example.com", "A", "10.0.0.1"), txt("web.example.com", "A")], "sync",
                 [("web.example.com A", [("UPSERT", "web.example.com", "A", ("10.0.0.1",))])],
                 [], id="ttl-change-upsert"),
    pytest.param([WEB], [r53("web.example.com", "A", "10.9.9.9")], "sync", [], ["not-owned"],
                 id="foreign-record-untouched"),
    pytest.param([WEB], [r53("web.example.com", "A", "10.9.9.9"),
                         txt("web.example.com", "A", OTHER)], "sync", [], ["owned-by-other"],
                 id="other-owner-untouched"),
    pytest.param([WEB], [r53("web.example.com", "A", "10.9.9.9"),
                         txt("web.example.com", "A", '"hello"')], "sync", [], ["owned-by-other"],
                 id="unparseable-companion-untouched"),
    pytest.param([], [r53("old.example.com", "A", "10.0.0.5"), txt("old.example.com", "A")],
                 "sync", [("old.example.com A", [
                     ("DELETE", "old.example.com", "A", ("10.0.0.5",)),
                     ("DELETE", "_dns411-a.old.example.com", "TXT", (OWN,))])], [],
                 id="owned-stale-deleted"),
    pytest.param([], [r53("old.example.com", "A", "10.0.0.5"), txt("old.example.com", "A")],
                 "upsert-only", [], [], id="upsert-only-never-deletes"),
    pytest.param([], [r53("hand.example.com", "A", "10.0.0.5")], "sync", [], [],
                 id="foreign-stale-kept"),
    pytest.param([], [r53("x.example.com", "A", "10.0.0.5"),
                      txt("x.example.com", "A", OTHER)], "sync", [], [],
                 id="other-owner-stale-kept"),
    pytest.param([WEB], [txt("web.example.com", "A")], "sync",
                 [("web.example.com A", [("UPSERT", "web.example.com", "A", ("10.0.0.1",))])],
                 [], id="half-deleted-pair-heals"),
    pytest.param([], [txt("gone.example.com", "A")], "sync",
                 [("gone.example.com A", [
                     ("DELETE", "_dns411-a.gone.example.com", "TXT", (OWN,))])], [],
                 id="orphan-companion-removed"),
    pytest.param([rs("web.example.com", "CNAME", "haproxy.example.com")],
                 [r53("web.example.com", "A", "10.0.0.1"), txt("web.example.com", "A")], "sync",
                 [("web.example.com CNAME", [
                     ("DELETE", "web.example.com", "A", ("10.0.0.1",)),
                     ("DELETE", "_dns411-a.web.example.com", "TXT", (OWN,)),
                     ("CREATE", "web.example.com", "CNAME", ("haproxy.example.com",)),
                     ("CREATE", "_dns411-cname.web.example.com", "TXT", (OWN,))])], [],
                 id="type-change-one-unit"),
    pytest.param([rs("web.example.com", "CNAME", "haproxy.example.com")],
                 [r53("web.example.com", "A", "10.0.0.1")], "sync", [], ["not-owned"],
                 id="type-change-over-foreign-refused"),
    pytest.param([rs("web.example.com", "CNAME", "haproxy.example.com")],
                 [r53("web.example.com", "A", "10.0.0.1"), txt("web.example.com", "A")],
                 "upsert-only", [], ["policy-forbids-delete"],
                 id="type-change-needs-delete-upsert-only"),
]


@pytest.mark.parametrize(("desired", "existing", "policy", "units", "reasons"), CASES)
def test_plan_zone(desired, existing, policy, units, reasons):
    got, problems = plan_zone("Z1", desired, existing, owner_id="me", policy=policy)
    assert summary(got) == units
    assert [p.reason for p in problems] == reasons


def test_plan_routes_by_longest_suffix_zone():
    desired = [rs("a.dev.example.com", "A", "10.0.0.1"), rs("b.example.com", "A", "10.0.0.2"),
               rs("c.badexample.com", "A", "10.0.0.3")]
    zones = {"ZDEV": "dev.example.com", "ZTOP": "example.com"}
    plan = plan_route53(desired, zones, {"ZDEV": [], "ZTOP": []}, owner_id="me", policy="sync")
    assert [(u.zone_id, u.what) for u in plan.units] == [
        ("ZDEV", "a.dev.example.com A"), ("ZTOP", "b.example.com A")]
    assert plan.unzoned == ("c.badexample.com",)


def test_each_dns_domain_without_a_hosted_zone_is_one_problem():
    desired = [rs("a.dev.example.org", "A", "10.0.0.1"), rs("b.dev.example.org", "A", "10.0.0.2"),
               rs("c.example.org", "A", "10.0.0.3"), rs("d.example.com", "A", "10.0.0.4"),
               rs("db.static.test", "A", "10.0.0.5")]  # a static record: no dns= domain
    plan = plan_route53(desired, {"ZTOP": "example.com"}, {"ZTOP": []}, owner_id="me",
                        policy="sync", domains=["dev.example.org", "example.org", "example.com",
                                                "quiet.test"])
    assert [(p.reason, p.message) for p in plan.problems] == [
        ("no-hosted-zone", f"dns={d}: no Route 53 hosted zone covers {d}; its records are not "
         "written to Route 53") for d in ("dev.example.org", "example.org")]
    assert plan.unzoned == ("a.dev.example.org", "b.dev.example.org", "c.example.org",
                            "db.static.test")


def test_owner_of():
    assert owner_of(None) is None
    assert owner_of(r53("x", "TXT", OWN)) == "me"
    assert owner_of(r53("x", "TXT", '"v=spf1 -all"')) == ""


def test_boto_change_shape():
    change = Change("CREATE", rs("www.example.com", "CNAME", "haproxy.example.com", ttl=45))
    assert to_boto_change(change) == {"Action": "CREATE", "ResourceRecordSet": {
        "Name": "www.example.com.", "Type": "CNAME", "TTL": 45,
        "ResourceRecords": [{"Value": "haproxy.example.com."}]}}


def unit(name, n_values, action="CREATE"):
    values = tuple(f"10.0.{i // 250}.{i % 250}" for i in range(n_values))
    return ChangeUnit("Z", name, (Change(action, rs(name, "A", *values)),))


def test_batches_respect_record_count_and_upsert_counts_twice():
    units = [unit(f"n{i}.example.com", 300) for i in range(4)]
    batches, too_big = batch_units(units)
    assert [[u.what for u in b] for b in batches] == [
        ["n0.example.com", "n1.example.com", "n2.example.com"], ["n3.example.com"]]
    assert too_big == []
    upserts = [unit(f"u{i}.example.com", 300, "UPSERT") for i in range(2)]
    batches, _ = batch_units(upserts)
    assert [len(b) for b in batches] == [1, 1]


def test_batches_respect_characters_and_flag_oversized():
    units = [unit("big.example.com", 1001), unit("ok.example.com", 1)]
    batches, too_big = batch_units(units)
    assert [u.what for u in too_big] == ["big.example.com"]
    assert [[u.what for u in b] for b in batches] == [["ok.example.com"]]
    batches, _ = batch_units([unit(f"c{i}.example.com", 10) for i in range(3)], max_chars=200)
    assert [len(b) for b in batches] == [2, 1]
