"""registry-admin's pure core: certificates, the shared secret, notification parsing, the
catalog -> SANs / trust directories / rolling restart plan."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from registry_admin import notify, pki, plan, secret
from unify_common.events import Instance
from unify_common.state import CatalogState

NOW = dt.datetime(2026, 12, 6, 1, 0, tzinfo=dt.UTC)
D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


@pytest.fixture(scope="module")
def ca() -> pki.Bundle:
    return pki.new_ca(NOW)


# ---- certificates -------------------------------------------------------------------------

def test_server_certificate_carries_exactly_the_sans_and_chains_to_the_ca(ca):
    sans = pki.SanSet.of(["registry.unify.test", "LOCALHOST", "node-1"], ["127.0.0.1", "10.0.0.7"])
    server = pki.issue_server(ca, sans, NOW, days=90)
    assert pki.sans_of(server.cert) == pki.SanSet(
        ("localhost", "node-1", "registry.unify.test"), ("10.0.0.7", "127.0.0.1"))
    server.cert.verify_directly_issued_by(ca.cert)
    assert server.cert.not_valid_after_utc - NOW == dt.timedelta(days=90)
    assert pki.load_bundle(server.cert_pem, server.key_pem) == server
    assert pki.load_bundle(server.cert_pem, ca.key_pem) is None  # key of another cert
    assert pki.load_bundle(b"garbage", server.key_pem) is None
    assert pki.cert_fingerprint(server.cert_pem).startswith("sha256:")


@pytest.mark.parametrize("age_days, wanted_extra, expected", [
    (0, (), None),
    (59, (), None),                       # 59/90 < 2/3
    (60, (), "renewal-due"),              # exactly 2/3 of 90 days (+5 min skew margin)
    (91, (), "expired"),
    (1, ("node-2",), "sans-changed"),
])
def test_renewal_reason(ca, age_days, wanted_extra, expected):
    base = pki.SanSet.of(["registry.unify.test"], ["127.0.0.1"])
    server = pki.issue_server(ca, base, NOW, days=90)
    wanted = pki.SanSet.of(["registry.unify.test", *wanted_extra], ["127.0.0.1"])
    # +5 minutes: the certificate starts 5 minutes before NOW (clock skew allowance)
    now = NOW + dt.timedelta(days=age_days, minutes=5 if age_days == 60 else 0)
    assert pki.renewal_reason(server, ca, wanted, now) == expected


def test_renewal_reason_missing_and_other_ca(ca):
    sans = pki.SanSet.of(["a.test"], [])
    assert pki.renewal_reason(None, ca, sans, NOW) == "missing"
    other = pki.issue_server(pki.new_ca(NOW), sans, NOW)
    assert pki.renewal_reason(other, ca, sans, NOW) == "other-ca"


def test_issue_refuses_an_empty_san_set(ca):
    with pytest.raises(ValueError, match="at least one name"):
        pki.issue_server(ca, pki.SanSet(), NOW)


# ---- shared secret ------------------------------------------------------------------------

def test_secret_fingerprints():
    s1, s2 = secret.new_secret(), secret.new_secret()
    assert len(s1) == 64 and s1 != s2
    fp = secret.fingerprint(s1)
    assert fp == secret.fingerprint(s1) and len(fp) == 7 + 32 and s1 not in fp
    problems = secret.secret_problems(fp, {"a": fp, "b": secret.fingerprint(s2), "c": None})
    assert list(problems) == ["b"]
    assert s2 not in problems["b"] and secret.fingerprint(s2) not in problems["b"]
    assert "blob upload unknown" in problems["b"]


# ---- notifications ------------------------------------------------------------------------

def _event(action="push", media="application/vnd.docker.distribution.manifest.v2+json",
           repo="team/app", tag="1.0", digest=D1, eid="3f1c2a4e-0000-4000-8000-000000000001",
           **extra):
    ev = {"id": eid, "timestamp": "2026-12-06T01:02:03.123456789Z", "action": action,
          "target": {"mediaType": media, "size": 528, "digest": digest, "length": 528,
                     "repository": repo, "url": "https://r/v2/x", "tag": tag},
          "request": {"id": "r", "addr": "1.2.3.4", "host": "r", "method": "PUT",
                      "useragent": "docker/20"},
          "actor": {"name": "ci"}, "source": {"addr": "reg-1:5000", "instanceID": "i"}}
    ev.update(extra)
    return ev


def _body(*events) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def test_manifest_push_is_kept_blobs_and_pulls_dropped():
    kept, dropped = notify.parse_envelope(_body(
        _event(media="application/octet-stream", tag=""),                 # blob push
        _event(action="pull"),
        _event(action="mount", media="application/vnd.docker.image.rootfs.diff.tar.gzip"),
        _event()))
    assert dropped == 3
    assert kept == [notify.Pushed(
        event_id="3f1c2a4e-0000-4000-8000-000000000001", repository="team/app", tag="1.0",
        digest=D1, size=528, media_type="application/vnd.docker.distribution.manifest.v2+json",
        actor="ci", instance="reg-1:5000", at_ms=1796518923123)]


def test_deletes_are_kept():
    kept, dropped = notify.parse_envelope(_body(
        _event(action="delete", media="", tag="", digest=D2),
        _event(action="delete", media="", tag="old", digest="")))
    assert dropped == 0
    assert [(k.repository, k.tag, k.digest) for k in kept] == [
        ("team/app", "", D2), ("team/app", "old", "")]
    assert all(isinstance(k, notify.Deleted) for k in kept)


@pytest.mark.parametrize("body, reason", [
    (b"not json", "not a notification envelope"),
    (b'{"events": 5}', "not a notification envelope"),
    (b"[]", "not a notification envelope"),
    (b"x" * (notify.MAX_BODY_BYTES + 1), "body larger than"),
    (_body(_event(repo="Team/App")), "event 0: target.repository is not a repository name"),
    (_body(_event(repo="a/../b")), "target.repository is not a repository name"),
    (_body(_event(tag="bad tag")), "event 0: target.tag is not a tag"),
    (_body(_event(digest="sha256:xyz")), "event 0: target.digest is not a digest"),
    (_body(_event(eid="a b")), "event 0: id is not a registry event id"),
    (_body(_event(), _event(action="explode")), "event 1: unknown action"),
    (_body(_event(actor={"name": "evil\nline"})), "actor.name is not printable"),
    (_body(*[_event(action="pull")] * (notify.MAX_EVENTS + 1)), "more than 1000 events"),
])
def test_hostile_bodies_are_rejected_with_a_reason(body, reason):
    with pytest.raises(notify.NotificationError, match=reason.replace(".", r"\.")):
        notify.parse_envelope(body)


# ---- catalog -> plan ----------------------------------------------------------------------

def _inst(node, address, port=5000, service="registry", iid=None, meta=None) -> Instance:
    return Instance(service=service, instance_id=iid or f"{node}:reg:{port}", node=node,
                    address=address, port=port, meta=meta or {})


def _state(*insts: Instance) -> CatalogState:
    return CatalogState(instances={i.key: i for i in insts})


def test_registry_nodes_and_sans():
    fp = secret.fingerprint("s")
    state = _state(_inst("node-1", "10.0.0.1", meta={plan.META_SECRET_FP: fp}),
                   _inst("Node_2", "10.0.0.2"),                    # node name no host name
                   _inst("node-3", "bad address!"),
                   _inst("node-4", "10.0.0.4", port=0),
                   _inst("node-5", "10.0.0.5", meta={plan.META_SECRET_FP: "nope"}),
                   _inst("web", "10.0.0.9", service="web"))
    nodes, rejected = plan.registry_nodes(state, "registry")
    assert [(n.name, n.host, n.hostname, n.secret_fp) for n in nodes] == [
        ("Node_2/Node_2:reg:5000", "10.0.0.2", "", None),
        ("node-1/node-1:reg:5000", "10.0.0.1", "node-1", fp),
        ("node-5/node-5:reg:5000", "10.0.0.5", "node-5", "malformed"),
    ]
    assert [(r.node, r.reason) for r in rejected] == [
        ("node-3", "address is neither an IP address nor a host name"),
        ("node-4", "port is not 1-65535")]
    sans = plan.wanted_sans(nodes, service="registry", domains=("unify.test", "b_ad"),
                            extra_names=("registry.example.com",))
    assert sans == pki.SanSet(("localhost", "node-1", "node-5", "registry.example.com",
                               "registry.unify.test"),
                              ("10.0.0.1", "10.0.0.2", "10.0.0.5", "127.0.0.1"))
    dirs = plan.trust_dirs(nodes[:1], pki.SanSet(("registry.unify.test",), ("127.0.0.1",)),
                           extra_ports=(443,))
    assert dirs == ["127.0.0.1:443", "127.0.0.1:5000", "registry.unify.test:443",
                    "registry.unify.test:5000"]


def test_rollout_restarts_only_stale_instances_in_order():
    nodes, _ = plan.registry_nodes(_state(_inst("n1", "10.0.0.1"), _inst("n2", "10.0.0.2"),
                                          _inst("n3", "10.0.0.3")), "registry")
    served = {nodes[0].key: "sha256:new", nodes[1].key: "sha256:old"}  # n3 unknown
    order = plan.rollout_order(nodes, served, "sha256:new")
    assert [n.hostname for n in order] == ["n2", "n3"]
    assert plan.rollout_order(nodes, {n.key: "sha256:new" for n in nodes}, "sha256:new") == []


@pytest.mark.parametrize("verdicts, verified, expected", [
    ({"b": True, "c": None}, False, []),
    ({"b": False, "c": True}, True, ["b"]),
    ({"b": False, "c": True}, False, ["b"]),          # one of two refuses: not a majority
    ({"b": False, "c": False}, False, ["a"]),         # both refuse an unverified reference
    ({"b": False, "c": False}, True, ["b", "c"]),     # the reference is known to be right
    ({"b": False, "c": None}, False, ["a"]),          # undecided ones do not count
])
def test_probe_problems_blame_the_odd_one(verdicts, verified, expected):
    problems = secret.probe_problems("a", verdicts, reference_verified=verified)
    assert sorted(problems) == expected
    for name, why in problems.items():
        assert why.startswith(f"REGISTRY_HTTP_SECRET of {name} differs from ")
