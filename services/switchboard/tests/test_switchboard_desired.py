"""Pure tables: hostile input, tag disagreement, claim conflicts, TLS modes."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from switchboard.desired import backend_name, build_desired, frontend_ports
from switchboard.model import Certificate
from switchboard.render import RenderOptions, render, render_maps
from tests.fixtures.catalog import make_instance
from unify_common.listeners import VhostVerdict
from unify_common.problems import Problem
from unify_common.tags import UnifyTags, parse_tags

OPTIONS = RenderOptions(bind="127.0.0.1", run_dir="/run/sb", host_maps=False)
BASE = [
    make_instance("web", "w1", "10.0.0.1", 8080, ["dns=example.com", "vhost=web"],
                  create_index=5),
    make_instance("db", "d1", "10.0.0.2", 5432, ["tcp=15432"], create_index=6),
]
HOSTILE_TAGS = {
    "newline": ["dns=example.com", "vhost=web\n    use_backend evil"],
    "brace": ["dns=example.com", "vhost=we}b"],
    "jinja": ["dns=example.com", "vhost={{ options }}"],
    "hash": ["dns=example.com", "vhost=web#x"],
    "space": ["dns=example.com", "vhost=web x"],
    "huge": ["dns=example.com", "vhost=" + "a" * 5000],
    "unicode": ["dns=example.com", "vhost=wéb"],
    "prefix-injection": ["dns=example.com", "vhost=web", "url_prefix=/a }"],
    "check-injection": ["dns=example.com", "vhost=web", "check=GET /\n    server x"],
    "balance": ["dns=example.com", "vhost=web", "balance=uri whole"],
    "port": ["dns=example.com", "vhost=web", "http=80 ssl"],
    "vhost-twice": ["dns=example.com", "vhost=web", "vhost=admin"],
}


@pytest.mark.parametrize("tags", list(HOSTILE_TAGS.values()), ids=list(HOSTILE_TAGS))
def test_hostile_tags_only_drop_the_instance(tags):
    bad = make_instance("evil", "e1", "10.0.0.66", 80, tags, create_index=1)
    desired = build_desired(BASE + [bad])
    assert render(desired, OPTIONS) == render(build_desired(BASE), OPTIONS)
    with_maps = RenderOptions(bind="127.0.0.1", run_dir="/run/sb", host_maps=True)
    assert render_maps(desired, with_maps) == render_maps(build_desired(BASE), with_maps) == {
        "/run/sb/fe_http_80.map": f"web.example.com {backend_name('http', 'web')}\n".encode()}
    [problem] = desired.problems
    assert (problem.reason, problem.service, problem.instance_id) == ("invalid-tags", "evil",
                                                                       "e1")


FORGED = {
    # unify never produced by the parser from these tags (a writer bypassed validation)
    "forged-vhost": UnifyTags(dns=("example.com",), vhost="web.example.com }\n  bind :1"),
    "forged-prefix": UnifyTags(dns=("example.com",), vhost="x", url_prefix="/a b"),
    "forged-other-host": UnifyTags(dns=("example.com",), vhost="admin"),
}


@pytest.mark.parametrize("unify", list(FORGED.values()), ids=list(FORGED))
def test_parsed_tags_not_matching_raw_tags_are_refused(unify):
    honest = make_instance("evil", "e1", "10.0.0.66", 80, ["dns=example.com", "vhost=x"])
    forged = msgspec.structs.replace(honest, unify=unify)
    desired = build_desired(BASE + [forged])
    assert render(desired, OPTIONS) == render(build_desired(BASE), OPTIONS)
    assert [p.reason for p in desired.problems] == ["invalid-tags"]


@pytest.mark.parametrize("address", ["web.internal", "10.0.0.1\n", "", "1.2.3.4 backup",
                                     "::1 check"], ids=["hostname", "newline", "empty",
                                                        "option", "ipv6-option"])
def test_non_ip_addresses_only_drop_the_instance(address):
    bad = make_instance("web", "w9", address, 8080, ["dns=example.com", "vhost=web"])
    desired = build_desired(BASE + [bad])
    assert render(desired, OPTIONS) == render(build_desired(BASE), OPTIONS)
    assert [p.reason for p in desired.problems] == ["invalid-address"]


def test_hostile_names_reach_the_config_only_cleaned():
    name = "web}\n frontend evil # ünï"
    inst = make_instance(name, "id\nx", "10.0.0.1", 8080, ["dns=example.com", "vhost=web"],
                         node="n\n")
    text = render(build_desired([inst]), OPTIONS).decode()
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    assert backend_name("http", name) == f"be_http_web_frontend_evil_n__{digest}"
    assert f"backend be_http_web_frontend_evil_n__{digest}\n" in text
    assert "evil #" not in text and "\n frontend evil" not in text
    assert text.isascii()


def test_majority_tags_win_and_dissent_is_reported():
    tags_a = ["dns=example.com", "vhost=web"]
    tags_b = ["dns=example.com", "vhost=www"]
    desired = build_desired([
        make_instance("web", "w1", "10.0.0.1", 80, tags_b),
        make_instance("web", "w2", "10.0.0.2", 80, tags_a),
        make_instance("web", "w3", "10.0.0.3", 80, tags_a),
    ])
    [fe] = desired.frontends
    assert [r.host for r in fe.routes] == ["web.example.com"]
    [backend] = desired.backends
    assert sorted(s.address for s in backend.slots if s) == ["10.0.0.2", "10.0.0.3"]
    assert [(p.reason, p.instance_id) for p in desired.problems] == [
        ("tag-disagreement", "w1")]


def test_tie_goes_to_the_lowest_instance_id():
    desired = build_desired([
        make_instance("web", "w2", "10.0.0.2", 80, ["dns=example.com", "vhost=web"]),
        make_instance("web", "w1", "10.0.0.1", 80, ["dns=example.com", "vhost=www"]),
    ])
    assert [r.host for r in desired.frontends[0].routes] == ["www.example.com"]
    assert [(p.reason, p.instance_id) for p in desired.problems] == [
        ("tag-disagreement", "w2")]


def test_haproxy_instances_with_different_dns_tags_are_no_disagreement():
    """The HAProxy service carries dns= only (a domain is added one instance at a time):
    switchboard routes nothing of it, so its instances are not compared."""
    web = make_instance("web", "w1", "10.0.0.1", 80, ["dns=example.com", "vhost=web"])
    desired = build_desired([
        web,
        make_instance("haproxy", "hp-1", "10.0.9.1", 80, ["dns=example.com"]),
        make_instance("haproxy", "hp-2", "10.0.9.2", 80, ["dns=example.com", "dns=example.org"],
                      node="node-2"),
        make_instance("haproxy", "hp-3", "10.0.9.3", 80, ["dns=example.org"], node="node-3"),
    ])
    assert desired.problems == ()
    assert desired == build_desired([web])
    # a service that does ask for a frontend is still compared, whatever its other members
    mixed = build_desired([web, make_instance("web", "w2", "10.0.0.2", 80, ["dns=example.com"])])
    assert [(p.reason, p.instance_id) for p in mixed.problems] == [("tag-disagreement", "w2")]


def test_oldest_service_keeps_a_claimed_vhost_and_tcp_port():
    older = make_instance("shop", "s1", "10.0.0.1", 80,
                          ["dns=example.com", "vhost=web", "http", "tcp=9000"], create_index=3)
    newer = make_instance("hijack", "h1", "10.0.0.2", 80,
                          ["dns=example.com", "vhost=web", "http", "tcp=9000"], create_index=2000)
    desired = build_desired([newer, older])
    routes = {(fe.port, r.host, r.backend) for fe in desired.frontends for r in fe.routes}
    assert routes == {(80, "web.example.com", backend_name("http", "shop"))}
    assert {fe.default_backend for fe in desired.frontends if fe.kind == "tcp"} == {
        backend_name("tcp", "shop")}
    assert {b.service for b in desired.backends} == {"shop"}
    assert desired.problems == tuple(sorted([
        Problem("port-conflict", "port 9000 is already used for tcp by service 'shop'",
                "hijack", "h1", "node-1"),
        Problem("route-conflict", "web.example.com on port 80 is already routed to "
                "service 'shop'", "hijack", "h1", "node-1"),
    ]))


def test_a_port_keeps_its_kind_while_claimed_for_it():
    """The HTTP owner of a port goes; an older TCP claimant, rejected so far, does not take
    the port from a vhost still served on it. Once no service claims the port for HTTP,
    the TCP claimant gets it."""
    alpha = make_instance("alpha", "a1", "10.0.0.1", 80,
                          ["dns=example.com", "vhost=alpha", "http=9500"], create_index=1)
    grab = make_instance("grab", "g1", "10.0.0.2", 80, ["tcp=9500"], create_index=2)
    beta = make_instance("beta", "b1", "10.0.0.3", 80,
                         ["dns=example.com", "vhost=beta", "http=9500"], create_index=3)
    first = build_desired([alpha, grab, beta])
    assert frontend_ports(first) == {9500: "http"}
    assert [(p.reason, p.service) for p in first.problems] == [("port-conflict", "grab")]

    # without a previous state the oldest claim wins: what a first build does
    assert frontend_ports(build_desired([grab, beta])) == {9500: "tcp"}
    # with the previous state the port stays HTTP while beta claims it
    second = build_desired([grab, beta], previous_ports=frontend_ports(first))
    assert frontend_ports(second) == {9500: "http"}
    assert [(r.host, r.backend) for fe in second.frontends for r in fe.routes] == [
        ("beta.example.com", backend_name("http", "beta"))]
    assert second.problems == (Problem(
        "port-conflict", "port 9500 is already used for http by service 'beta'", "grab", "g1",
        "node-1"),)
    # beta goes too: nothing claims 9500 for HTTP any more, the TCP claimant gets it
    third = build_desired([grab], previous_ports=frontend_ports(second))
    assert [(fe.kind, fe.port, fe.default_backend) for fe in third.frontends] == [
        ("tcp", 9500, backend_name("tcp", "grab"))]
    assert third.problems == ()


def test_a_kind_served_by_no_route_does_not_hold_the_port():
    """The https owner goes; the only other https claimant has no certificate, so its route
    is skipped and the port would serve nothing: the tcp claimant gets it at once, and the
    next build of the same catalog gives the same."""
    certs = (Certificate("/c/web.pem", ("web.example.com",), "f1"),)
    web = make_instance("web", "w1", "10.0.0.1", 80,
                        ["dns=example.com", "vhost=web", "https=9700"], create_index=1)
    grab = make_instance("grab", "g1", "10.0.0.2", 80, ["tcp=9700"], create_index=2)
    bare = make_instance("other", "o1", "10.0.0.3", 80,
                         ["dns=example.com", "vhost=other", "https=9700"], create_index=3)
    first = build_desired([web, grab, bare], certificates=certs)
    assert frontend_ports(first) == {9700: "https"}
    second = build_desired([grab, bare], certificates=certs,
                           previous_ports=frontend_ports(first))
    third = build_desired([grab, bare], certificates=certs,
                          previous_ports=frontend_ports(second))
    assert frontend_ports(second) == frontend_ports(third) == {9700: "tcp"}
    assert [(p.reason, p.service) for p in second.problems] == [
        ("port-conflict", "other")]
    assert second.problems == third.problems


def test_a_claim_that_cannot_reach_the_port_does_not_hold_it():
    """An HTTP listener without dns= (missing-vhost) does not count as a claim."""
    web = make_instance("web", "w1", "10.0.0.1", 80,
                        ["dns=example.com", "vhost=web", "http=9600"], create_index=1)
    grab = make_instance("grab", "g1", "10.0.0.2", 80, ["tcp=9600"], create_index=2)
    bare = make_instance("bare", "x1", "10.0.0.3", 80, ["http=9600"], create_index=3)
    first = build_desired([web, grab, bare])
    second = build_desired([grab, bare], previous_ports=frontend_ports(first))
    assert frontend_ports(second) == {9600: "tcp"}
    assert [(p.reason, p.service) for p in second.problems] == [("missing-vhost", "bare")]


def test_same_create_index_tie_goes_to_the_service_name():
    a = make_instance("b-svc", "x", "10.0.0.1", 80, ["tcp=9000"], create_index=7)
    b = make_instance("a-svc", "y", "10.0.0.2", 80, ["tcp=9000"], create_index=7)
    desired = build_desired([a, b])
    assert [fe.default_backend for fe in desired.frontends] == [backend_name("tcp", "a-svc")]


CERTS = (Certificate("/c/star.pem", ("*.example.com",), "f1"),)
TLS_CASES = {
    # tags, instance port -> (frontend kinds, backend modes, server ssl, problems)
    "https-default-offloading": (["https=8443"], 8080, ["https"], [("http", False)], []),
    "https-default-bridge-on-443": (["https=8443"], 443, ["https"], [("http", True)], []),
    "https-bridge": (["https=8443", "ssl=bridge"], 8443, ["https"], [("http", True)], []),
    "http-backend-tls": (["http=8080", "ssl=backend"], 8443, ["http"], [("http", True)], []),
    "https-pass-through": (["https=8443", "ssl=pass-through"], 8443, ["https"],
                           [("tcp", False)], []),
    "https-with-backend-mode": (["https=8443", "ssl=backend"], 8443, [], [],
                                ["ssl-mode-conflict"]),
    "http-with-pass-through": (["http=8080", "ssl=pass-through"], 8443, [], [],
                               ["ssl-mode-conflict"]),
}


@pytest.mark.parametrize("case", list(TLS_CASES.values()), ids=list(TLS_CASES))
def test_tls_modes(case):
    tags, port, kinds, backends, problems = case
    desired = build_desired([make_instance("app", "a1", "10.0.0.1", port,
                                           ["dns=example.com", "vhost=app", *tags])],
                            certificates=CERTS)
    assert [fe.kind for fe in desired.frontends] == kinds
    assert [(b.mode, b.server_ssl) for b in desired.backends] == backends
    assert [p.reason for p in desired.problems] == problems


def test_missing_certificate_skips_only_that_vhost():
    desired = build_desired([
        make_instance("app", "a1", "10.0.0.1", 80, ["dns=example.com", "vhost=app",
                                                     "https=8443"]),
        make_instance("other", "o1", "10.0.0.2", 80, ["dns=other.org", "vhost=www",
                                                       "https=8443"]),
    ], certificates=CERTS)
    [fe] = desired.frontends
    assert [r.host for r in fe.routes] == ["app.example.com"]
    assert fe.certificates == CERTS
    assert [(p.reason, p.service) for p in desired.problems] == [
        ("missing-certificate", "other")]


def test_wildcard_covers_one_label_only():
    desired = build_desired([make_instance("app", "a1", "10.0.0.1", 80, [
        "dns=example.com", "vhost=a.b", "https=8443"])], certificates=CERTS)
    assert desired.frontends == ()
    assert [p.reason for p in desired.problems] == ["missing-certificate"]


def test_pass_through_and_termination_share_a_port_by_sni():
    desired = build_desired([
        make_instance("app", "a1", "10.0.0.1", 80, ["dns=example.com", "vhost=app",
                                                     "https=8443"]),
        make_instance("vault", "v1", "10.0.0.2", 8200, ["dns=example.com", "vhost=vault",
                                                         "https=8443", "ssl=pass-through"]),
    ], certificates=CERTS)
    text = render(desired, OPTIONS).decode()
    assert f"""
frontend fe_https_8443
    bind 127.0.0.1:8443
    mode tcp
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req.ssl_hello_type 1 }}
    use_backend {backend_name("tcp", "vault")} if {{ req.ssl_sni -i vault.example.com }}
    default_backend be_tls_8443

backend be_tls_8443
    mode tcp
    server terminator unix@/run/sb/tls_8443.sock send-proxy-v2

frontend fe_https_8443_tls
    bind unix@/run/sb/tls_8443.sock accept-proxy ssl crt /c/star.pem
    mode http
""" in text


def test_untagged_instances_are_ignored_silently():
    desired = build_desired([make_instance("plain", "p1", "10.0.0.1", 80, ["primary"])])
    assert (desired.frontends, desired.backends, desired.problems) == ((), (), ())
    assert parse_tags(["primary"]) is None


def test_backend_name_collision_rejects_the_younger_service():
    # Two names that clean to "x_" and share the first 32 bits of their SHA-256.
    first, second = "x@@!!@@@!!!@@@!!", "x@!@!!@!!@@@@@!!@!"
    assert backend_name("tcp", first) == backend_name("tcp", second) == "be_tcp_x__e583bcf7"
    desired = build_desired([
        make_instance(second, "s1", "10.0.0.2", 80, ["tcp=9002"], create_index=2),
        make_instance(first, "f1", "10.0.0.1", 80, ["tcp=9001"], create_index=1),
    ])
    assert [(fe.port, fe.default_backend) for fe in desired.frontends] == [
        (9001, "be_tcp_x__e583bcf7")]
    assert [(b.service, b.name) for b in desired.backends] == [(first, "be_tcp_x__e583bcf7")]
    assert desired.problems == (Problem(
        "name-collision", "backend name be_http_x__e583bcf7 is already used by service "
        f"{first!r}", second, "s1", "node-1"),)


def test_unavailable_port_is_left_out_with_a_reason():
    desired = build_desired(BASE, unavailable_ports=frozenset({15432}))
    assert [fe.port for fe in desired.frontends] == [80]
    assert [(p.reason, p.service) for p in desired.problems] == [("port-unavailable", "db")]


def test_every_rejected_instance_of_a_service_is_named():
    shop = make_instance("shop", "s1", "10.0.0.1", 80, ["dns=example.com", "vhost=web",
                                                        "http", "tcp=9000"], create_index=3)
    hijack = [make_instance("hijack", f"h{i}", f"10.0.1.{i}", 80,
                            ["dns=example.com", "vhost=web", "http", "tcp=9000"],
                            node=f"node-{i}",
                            create_index=2000 + i) for i in (2, 1)]
    # one of hijack's instances disagrees: it is reported for that, not for the conflicts
    odd = make_instance("hijack", "h3", "10.0.1.3", 80, ["tcp=9000"], node="node-3",
                        create_index=2003)
    desired = build_desired([*hijack, odd, shop])
    port = "port 9000 is already used for tcp by service 'shop'"
    route = "web.example.com on port 80 is already routed to service 'shop'"
    disagree = ("tags differ from the 2 of 3 instances the service follows; this instance "
                "is left out")
    assert [(p.reason, p.message, p.service, p.instance_id, p.node)
            for p in desired.problems] == [
        ("port-conflict", port, "hijack", "h1", "node-1"),
        ("port-conflict", port, "hijack", "h2", "node-2"),
        ("route-conflict", route, "hijack", "h1", "node-1"),
        ("route-conflict", route, "hijack", "h2", "node-2"),
        ("tag-disagreement", disagree, "hijack", "h3", "node-3"),
    ]


REJECTIONS = {
    # tags of the rejected service -> reason, message
    "missing-vhost": (["http=8080"], "missing-vhost", "http=8080 needs vhost= and dns= tags"),
    "ssl-mode-conflict": (["dns=example.com", "vhost=app", "http=8080", "ssl=pass-through"],
                          "ssl-mode-conflict",
                          "ssl=pass-through needs an https listener, not http"),
    "missing-certificate": (["dns=other.org", "vhost=app", "https=8443"],
                            "missing-certificate",
                            "no certificate covers app.other.org; https route skipped"),
    "port-unavailable": (["tcp=15432"], "port-unavailable",
                         "port 15432 is held by another program on this node; its routes "
                         "wait until it is free"),
}


@pytest.mark.parametrize("case", list(REJECTIONS.values()), ids=list(REJECTIONS))
def test_rejections_name_each_instance(case):
    tags, reason, message = case
    desired = build_desired([
        make_instance("app", "a2", "10.0.0.2", 80, tags, node="n2"),
        make_instance("app", "a1", "10.0.0.1", 80, tags, node="n1"),
    ], certificates=CERTS, unavailable_ports=frozenset({15432}))
    assert desired.problems == (Problem(reason, message, "app", "a1", "n1"),
                                Problem(reason, message, "app", "a2", "n2"))


#: a valid 249-character domain: ``www.`` + it is 253 long (valid), ``wwww.`` + it 254
DOMAIN_249 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57])


def test_vhost_names_are_judged_whole_by_the_shared_host_name_rule():
    """The same rule and words as dns411 (see its test of the same name)."""
    fits = make_instance("fits", "f1", "10.0.0.3", 80, [f"dns={DOMAIN_249}", "vhost=www"],
                         create_index=7)
    too_long = make_instance("long", "l1", "10.0.0.4", 80,
                             [f"dns={DOMAIN_249}", "dns=example.com", "vhost=wwww"],
                             create_index=8)
    desired = build_desired([fits, too_long])
    [frontend] = desired.frontends
    assert [(r.host, r.backend) for r in frontend.routes] == [
        ("www." + DOMAIN_249, backend_name("http", "fits")),
        ("wwww.example.com", backend_name("http", "long"))]
    assert desired.problems == (Problem(
        reason="invalid-name",
        message="name 'wwww." + "a" * 52 + "...' is 254 characters long; at most 253 are allowed",
        service="long",
        instance_id="l1", node="node-1"),)


def test_a_vhost_whose_every_name_is_refused_is_not_also_missing_a_vhost():
    alone = make_instance("long", "l1", "10.0.0.4", 80, [f"dns={DOMAIN_249}", "vhost=wwww"])
    desired = build_desired([alone])
    assert desired.frontends == ()
    assert [p.reason for p in desired.problems] == ["invalid-name"]


# --- per-vhost verdicts (what switchboard publishes for dns411) ---------------------------

ACCEPTED = VhostVerdict(True)
STAR = Certificate("/c/star.pem", ("*.example.com",), "f1")


def _inst(service, iid, tags, index, port=8080):
    return make_instance(service, iid, f"10.0.{index}.1", port, tags, create_index=index)


VERDICT_CASES = {
    "plain-http": ([_inst("web", "w1", ["dns=example.com", "vhost=web"], 1)], (),
                   {"web.example.com": ACCEPTED}),
    "https-no-certificate": (
        [_inst("shop", "s1", ["dns=example.com", "dns=example.org", "vhost=shop", "https"],
               1)], (STAR,),
        {"shop.example.com": ACCEPTED,
         "shop.example.org": VhostVerdict(False, "missing-certificate", "no certificate "
                                          "covers shop.example.org; https route skipped",
                                          "shop")}),
    "route-conflict": (
        [_inst("web", "w1", ["dns=example.com", "vhost=web"], 1),
         _inst("hijack", "h1", ["dns=example.com", "dns=example.org", "vhost=web"], 2)], (),
        # the name another service routes is served all the same
        {"web.example.com": ACCEPTED, "web.example.org": ACCEPTED}),
    "route-conflict-pass-through": (
        [_inst("tls", "t1", ["dns=example.com", "vhost=app", "https", "ssl=pass-through"], 1),
         _inst("term", "x1", ["dns=example.com", "dns=example.org", "vhost=app", "https"], 2)],
        (STAR,),
        {"app.example.com": ACCEPTED,
         "app.example.org": VhostVerdict(False, "missing-certificate", "no certificate "
                                         "covers app.example.org; https route skipped",
                                         "term")}),
    "port-conflict": (
        [_inst("db", "d1", ["tcp=8000"], 1),
         _inst("web", "w1", ["dns=example.com", "vhost=web", "http=8000"], 2)], (),
        {"web.example.com": VhostVerdict(False, "port-conflict", "port 8000 is already used "
                                         "for tcp by service 'db'", "web")}),
    "ssl-mode-conflict": (
        [_inst("web", "w1", ["dns=example.com", "vhost=web", "ssl=pass-through"], 1)], (),
        {"web.example.com": VhostVerdict(False, "ssl-mode-conflict", "ssl=pass-through needs "
                                         "an https listener, not http", "web")}),
    "tcp-vhost": ([_inst("db", "d1", ["dns=example.com", "vhost=db", "tcp=5432"], 1)], (),
                  {"db.example.com": ACCEPTED}),
    "invalid-name": (
        [_inst("long", "l1", [f"dns={DOMAIN_249}", "vhost=wwww"], 1)], (),
        {f"wwww.{DOMAIN_249}": VhostVerdict(False, "invalid-name", "name 'wwww." + "a" * 52
                                            + "...' is 254 characters long; at most 253 are "
                                            "allowed", "long")}),
    "no-vhost": ([_inst("db", "d1", ["tcp=5432"], 1), _inst("plain", "p1", ["dns=a.com"], 2)],
                 (), {}),
}


@pytest.mark.parametrize("case", list(VERDICT_CASES), ids=list(VERDICT_CASES))
def test_verdicts_per_host_name(case):
    instances, certificates, expected = VERDICT_CASES[case]
    assert build_desired(instances, certificates=certificates).verdicts == expected


def test_verdict_of_a_port_held_on_the_node_and_of_a_name_collision():
    held = build_desired([_inst("web", "w1", ["dns=example.com", "vhost=web"], 1)],
                         unavailable_ports=frozenset({80}))
    assert held.verdicts == {"web.example.com": VhostVerdict(
        False, "port-unavailable", "port 80 is held by another program on this node; its "
        "routes wait until it is free", "web")}
    first, second = "x@@!!@@@!!!@@@!!", "x@!@!!@!!@@@@@!!@!"  # same backend name
    collided = build_desired([_inst(first, "f1", ["dns=a.com", "vhost=one"], 1),
                              _inst(second, "s1", ["dns=a.com", "vhost=two"], 2)])
    assert collided.verdicts == {"one.a.com": ACCEPTED, "two.a.com": VhostVerdict(
        False, "name-collision", "backend name be_http_x__e583bcf7 is already used by "
        f"service {first!r}", second)}


@pytest.mark.parametrize("tags", [
    ["dns=example.com", "vhost=w", "ssl=pass-through"],
    ["dns=example.com", "vhost=w", "https", "ssl=backend"],
    ["dns=example.com", "vhost=w", "http", "https", "ssl=pass-through"],
    ["dns=example.com", "vhost=w", "http=8080", "https", "ssl=backend"],
    ["dns=example.com", "vhost=w", "https", "ssl=offloading"],
])
def test_the_shared_rule_agrees_with_what_switchboard_routes(tags):
    """unify_common.listeners.unroutable_vhost (what dns411 judges alone) says unroutable
    exactly when switchboard, given a certificate and no other service, routes nothing."""
    from unify_common.listeners import unroutable_vhost

    desired = build_desired([_inst("w", "w1", tags, 1)], certificates=(STAR,))
    routed = desired.verdicts["w.example.com"].accepted
    assert (unroutable_vhost(parse_tags(tags)) is None) is routed


def test_a_name_only_left_out_instances_ask_for_is_rejected():
    tags = ["dns=example.com", "vhost=web"]
    desired = build_desired([
        _inst("web", "w1", tags, 1), _inst("web", "w2", tags, 2),
        _inst("web", "w3", ["dns=example.com", "vhost=old"], 3),
        _inst("web", "w4", ["dns=example.com", "vhost=web", "http=81"], 4)])
    message = "tags differ from the 2 of 4 instances the service follows; this instance is left out"
    assert desired.verdicts == {
        "web.example.com": ACCEPTED,  # also asked for by w4, on another port: still served
        "old.example.com": VhostVerdict(False, "tag-disagreement", message, "web")}
