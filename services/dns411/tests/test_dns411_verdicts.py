"""switchboard's verdicts in dns411 (pure tables): which names are withheld, and the
records and problems that follow."""

from __future__ import annotations

import pytest

from dns411.desired import build_desired
from dns411.model import RecordSet
from dns411.verdicts import Judged, Rejection, judged, pending, rejected_names
from tests.fixtures.catalog import make_instance
from unify_common.catalog import CatalogState
from unify_common.listeners import VerdictDocument, VhostVerdict

OK = VhostVerdict(True)
NO_CERT = VhostVerdict(False, "missing-certificate",
                       "no certificate covers shop.example.com; https route skipped", "shop")
HELD = VhostVerdict(False, "port-unavailable", "port 80 is held by another program on this "
                    "node; its routes wait until it is free", "shop")


def doc(node, **vhosts):
    return VerdictDocument(node=node, revision=1, written_at=0,
                           vhosts={k.replace("_", "."): v for k, v in vhosts.items()})


@pytest.mark.parametrize(("documents", "expected"), [
    pytest.param([], {}, id="no-switchboard"),
    pytest.param([doc("n1", shop_example_com=OK)], {}, id="accepted"),
    pytest.param([doc("n1", shop_example_com=NO_CERT)],
                 {"shop.example.com": Rejection("n1", "missing-certificate", NO_CERT.message,
                                                "shop")}, id="rejected"),
    pytest.param([doc("n2", shop_example_com=OK), doc("n1", shop_example_com=HELD)],
                 {"shop.example.com": Rejection("n1", "port-unavailable", HELD.message,
                                                "shop")}, id="any-node-rejecting-wins"),
    pytest.param([doc("n2", shop_example_com=NO_CERT), doc("n1", shop_example_com=HELD)],
                 {"shop.example.com": Rejection("n1", "port-unavailable", HELD.message,
                                                "shop")}, id="first-node-by-name"),
    pytest.param([doc("n1", web_example_com=OK)], {}, id="name-not-mentioned"),
])
def test_rejected_names(documents, expected):
    assert rejected_names(documents) == expected


SHOP_1 = make_instance("shop", "shop-1", "10.0.1.1", 80,
                       ["dns=example.com", "vhost=shop", "https"])
SHOP_2 = make_instance("shop", "shop-2", "10.0.1.2", 80,
                       ["dns=example.com", "vhost=shop", "https"], node="node-2")
HAPROXY = make_instance("haproxy", "hp-1", "10.0.9.1", 80, ["dns=example.com"])
STATE = CatalogState(instances={i.key: i for i in (SHOP_1, SHOP_2, HAPROXY)})
HAPROXY_A = RecordSet("haproxy.example.com", "A", ("10.0.9.1",), 30, "catalog")
SHOP_CNAME = RecordSet("shop.example.com", "CNAME", ("haproxy.example.com",), 30, "catalog")


def test_a_rejected_name_gets_no_cname_and_one_problem():
    rejected = rejected_names([doc("node-1", shop_example_com=NO_CERT)])
    desired = build_desired(STATE, ttl=30, rejected=rejected)
    assert desired.records == (HAPROXY_A,)
    assert [(p.reason, p.message, p.service, p.instance_id) for p in desired.problems] == [
        ("vhost-rejected", "shop.example.com gets no CNAME: switchboard on node-1 rejects it "
         "(missing-certificate: no certificate covers shop.example.com; https route "
         "skipped)", "shop", "")]


@pytest.mark.parametrize("rejected", [None, {}, rejected_names([doc("n1", shop_example_com=OK)])],
                         ids=["no-verdicts", "none-rejected", "accepted"])
def test_without_a_rejection_the_cname_stays(rejected):
    desired = build_desired(STATE, ttl=30, rejected=rejected)
    assert desired.records == (HAPROXY_A, SHOP_CNAME)
    assert desired.problems == ()


def doc_at(node, revision, **vhosts):
    return VerdictDocument(node=node, revision=revision, written_at=0,
                           vhosts={k.replace("_", "."): v for k, v in vhosts.items()})


@pytest.mark.parametrize(("documents", "expected"), [
    pytest.param([], None, id="no-switchboard"),
    pytest.param([doc_at("n1", 7, shop_example_com=OK),
                  doc_at("n2", 9, web_example_com=NO_CERT)],
                 Judged(frozenset({"shop.example.com", "web.example.com"}), 9), id="union-newest"),
    pytest.param([doc_at("n1", 3)], Judged(frozenset(), 3), id="empty-document"),
])
def test_judged(documents, expected):
    assert judged(documents) == expected


@pytest.mark.parametrize(("covered", "revision", "expected"), [
    pytest.param(None, 10, False, id="no-switchboard-nothing-waits"),
    pytest.param(Judged(frozenset({"shop.example.com"}), 5), 10, False, id="mentioned"),
    pytest.param(Judged(frozenset({"web.example.com"}), 5), 10, True, id="new-name-older-documents"),
    pytest.param(Judged(frozenset({"web.example.com"}), 10), 10, False, id="document-as-new"),
    pytest.param(Judged(frozenset({"web.example.com"}), 11), 10, False, id="document-newer"),
])
def test_pending(covered, revision, expected):
    assert pending("shop.example.com", covered, revision) is expected


def test_a_new_name_waits_for_a_verdict_without_a_problem():
    state = CatalogState(instances=STATE.instances, revision=12)
    older = judged([doc_at("node-1", 11, web_example_com=OK)])
    desired = build_desired(state, ttl=30, rejected={}, judged=older)
    assert (desired.records, desired.problems, desired.pending) == (
        (HAPROXY_A,), (), ("shop.example.com",))
    # switchboard applied revision 12 without mentioning shop: it is published
    current = judged([doc_at("node-1", 12, web_example_com=OK)])
    desired = build_desired(state, ttl=30, rejected={}, judged=current)
    assert (desired.records, desired.pending) == ((HAPROXY_A, SHOP_CNAME), ())
    # and once accepted, whatever the revision
    accepted = judged([doc_at("node-1", 11, shop_example_com=OK)])
    desired = build_desired(state, ttl=30, rejected={}, judged=accepted)
    assert (desired.records, desired.pending) == ((HAPROXY_A, SHOP_CNAME), ())
