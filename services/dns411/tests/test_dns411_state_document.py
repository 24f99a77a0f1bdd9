"""The state document dns411 publishes for ``unify dns list`` (pure: tables)."""

from __future__ import annotations

from dns411.listing import Served, encode_within, route53_zones, state_document
from dns411.model import RecordSet
from unify_common.dnslisting import (
    DnsState,
    Row,
    ZoneListing,
    decode_state,
    encode_state,
    select_rows,
)

OWN = '"heritage=unify-dns411,owner=me"'
DESIRED = (RecordSet("web.example.com", "A", ("10.0.0.1", "10.0.0.2"), 30),
           RecordSet("api.dev.example.com", "A", ("10.0.0.5",), 30),
           RecordSet("shop.example.com", "CNAME", ("haproxy.example.com",), 30, "kv"),
           RecordSet("lost.example.org", "A", ("10.0.0.9",), 30))
ZONES = {"Z1": "example.com", "Z2": "dev.example.com"}
LISTINGS = {
    "Z1": (1_000, (RecordSet("web.example.com", "A", ("10.0.0.1",), 30, "route53"),
                   RecordSet("_dns411-a.web.example.com", "TXT", (OWN,), 30, "route53"),
                   RecordSet("hand.example.com", "A", ("10.7.7.7",), 300, "route53"),
                   RecordSet("example.com", "NS", ("ns1.example.net",), 172800, "route53"))),
    "Z2": (2_000, (RecordSet("api.dev.example.com", "A", ("10.0.0.5",), 60, "route53"),
                   RecordSet("_dns411-a.api.dev.example.com", "TXT", (OWN,), 30, "route53"))),
}


def test_route53_zones_compare_each_zone_with_its_own_names():
    assert route53_zones(DESIRED, ZONES, LISTINGS, "me") == (
        ZoneListing("Z1", "example.com", 1_000, (
            Row("hand.example.com", "A", "10.7.7.7", 300, "", "route53", "foreign"),
            Row("shop.example.com", "CNAME", "haproxy.example.com", 30, "", "kv", "missing"),
            Row("web.example.com", "A", "10.0.0.1", 30, "me", "route53", "in-sync"),
            Row("web.example.com", "A", "10.0.0.2", 30, "", "catalog", "missing"))),
        ZoneListing("Z2", "dev.example.com", 2_000, (
            Row("api.dev.example.com", "A", "10.0.0.5", 60, "me", "route53", "ttl"),)))
    # a managed zone without a listing yet is left out (not shown as all missing)
    assert [z.zone_id for z in route53_zones(DESIRED, ZONES, {"Z2": LISTINGS["Z2"]}, "me")] \
        == ["Z2"]


def test_state_document_per_route53_state():
    dnsmasq = [RecordSet("web.example.com", "A", ("10.0.0.1", "10.0.0.2"), 30, "dnsmasq"),
               RecordSet("stray.example.com", "A", ("10.3.3.3",), 30, "dnsmasq")]
    on = state_document(Served(DESIRED, 42, "on", ZONES, LISTINGS), node="n1", owner_id="me",
                        published_at=5_000, every=30.0, dnsmasq=dnsmasq)
    assert (on.node, on.owner_id, on.published_at, on.revision, on.every, on.route53,
            on.error) == ("n1", "me", 5_000, 42, 30.0, "on", "")
    assert on.desired[:2] == (
        Row("api.dev.example.com", "A", "10.0.0.5", 30, "me", "catalog"),
        Row("lost.example.org", "A", "10.0.0.9", 30, "me", "catalog"))
    assert len(on.desired) == 5
    assert on.dnsmasq == (
        Row("api.dev.example.com", "A", "10.0.0.5", 30, "", "catalog", "missing"),
        Row("lost.example.org", "A", "10.0.0.9", 30, "", "catalog", "missing"),
        Row("shop.example.com", "CNAME", "haproxy.example.com", 30, "", "kv", "missing"),
        Row("stray.example.com", "A", "10.3.3.3", 30, "me", "dnsmasq", "extra"),
        Row("web.example.com", "A", "10.0.0.1", 30, "me", "dnsmasq", "in-sync"),
        Row("web.example.com", "A", "10.0.0.2", 30, "me", "dnsmasq", "in-sync"))
    assert [z.zone_id for z in on.zones] == ["Z1", "Z2"]
    standby = state_document(Served(DESIRED, 42, "standby", ZONES, LISTINGS), node="n2",
                             owner_id="me", published_at=5_000, every=30.0, dnsmasq=None)
    assert (standby.route53, standby.zones, standby.dnsmasq) == ("standby", (), None)
    assert decode_state(encode_state(on)) == on


def test_too_large_a_document_keeps_its_header_and_says_why():
    state = state_document(Served(DESIRED, 7, "on", ZONES, LISTINGS), node="n1",
                           owner_id="me", published_at=5_000, every=30.0, dnsmasq=[])
    assert decode_state(encode_within(state, 1 << 20)) == state
    small = decode_state(encode_within(state, 100))
    size = len(encode_state(state))
    assert small == DnsState(
        node="n1", owner_id="me", published_at=5_000, revision=7, every=30.0, desired=(),
        dnsmasq=(), route53="on",
        zones=(ZoneListing("Z1", "example.com", 1_000), ZoneListing("Z2", "dev.example.com",
                                                                     2_000)),
        error=f"the state is too large to publish ({size} bytes compressed, the NATS server "
              "takes 100)")


def test_ten_thousand_names_fit_the_default_max_payload():
    """10,000 names in three sources (desired, dnsmasq, Route 53) stay well below NATS's
    default 1 MB payload."""
    desired = tuple(RecordSet(f"svc{i}.example.com", "A", (f"10.{i // 65536}.{i // 256 % 256}."
                                                           f"{i % 256}",), 30)
                    for i in range(10_000))
    held = tuple(RecordSet(r.name, "A", r.values, 30, "route53") for r in desired) + tuple(
        RecordSet(f"_dns411-a.{r.name}", "TXT", (OWN,), 30, "route53") for r in desired)
    dnsmasq = [RecordSet(r.name, "A", r.values, 30, "dnsmasq") for r in desired]
    state = state_document(Served(desired, 1, "on", {"Z1": "example.com"},
                                  {"Z1": (1_000, held)}), node="n1", owner_id="me",
                           published_at=5_000, every=30.0, dnsmasq=dnsmasq)
    data = encode_within(state, 1 << 20)
    assert len(data) < 400_000
    listed = select_rows(decode_state(data), "route53")
    assert len(listed) == 10_000 and {r.drift for r in listed} == {"in-sync"}
