"""Choosing, filtering and describing the state dns411 nodes publish (pure)."""

from __future__ import annotations

import pytest

from unify_common.dnslisting import (
    DnsState,
    Row,
    StateUnavailable,
    ZoneListing,
    choose_state,
    decode_state,
    in_zone,
    node_key,
    select_rows,
    state_note,
)

DESIRED = (Row("api.dev.example.com", "A", "10.0.0.5", 30, "me", "catalog"),
           Row("web.example.com", "A", "10.0.0.1", 30, "me", "catalog"),
           Row("web.example.org", "A", "10.0.0.2", 30, "me", "catalog"))
WRITER = DnsState(
    node="n1", owner_id="me", published_at=100_000, revision=9, every=30.0, desired=DESIRED,
    dnsmasq=(Row("web.example.com", "A", "10.0.0.1", 30, "me", "dnsmasq", "in-sync"),),
    route53="on", zones=(
        ZoneListing("Z1", "example.com", 40_000, (
            Row("web.example.com", "A", "10.0.0.1", 30, "me", "route53", "in-sync"),)),
        ZoneListing("Z2", "dev.example.com", 90_000, (
            Row("api.dev.example.com", "A", "10.0.0.5", 30, "", "catalog", "missing"),))))
STANDBY = DnsState(node="n2", owner_id="me", published_at=110_000, revision=9, every=30.0,
                   desired=DESIRED, dnsmasq=None, route53="standby")


def test_the_newest_state_with_the_source_is_chosen():
    assert choose_state([WRITER, STANDBY], "route53") is WRITER
    assert choose_state([WRITER, STANDBY], "dnsmasq") is WRITER
    assert choose_state([WRITER, STANDBY], "desired") is STANDBY
    assert choose_state([WRITER, STANDBY], "desired", "n1") is WRITER
    with pytest.raises(StateUnavailable, match=r"^no state from dns411 on node 'n3' "
                       r"\(nodes: n1, n2\)$"):
        choose_state([WRITER, STANDBY], "desired", "n3")
    with pytest.raises(StateUnavailable, match="^no dns411 has published its records on this "
                       "NATS yet$"):
        choose_state([], "desired")


def test_rows_by_source_and_zone():
    assert select_rows(WRITER, "desired", "Example.COM.") == list(DESIRED[:2])
    assert select_rows(WRITER, "route53") == [WRITER.zones[1].rows[0], WRITER.zones[0].rows[0]]
    # a hosted zone by name or id: dev.example.com is a zone of its own
    assert select_rows(WRITER, "route53", "example.com") == list(WRITER.zones[0].rows)
    assert select_rows(WRITER, "route53", "z2") == list(WRITER.zones[1].rows)
    assert select_rows(WRITER, "dnsmasq", "example.org") == []
    with pytest.raises(StateUnavailable, match="^dns411 on node n2 does not write Route 53 "
                       r"\(another node holds the Route 53 writer lock\)$"):
        select_rows(STANDBY, "route53")
    with pytest.raises(StateUnavailable, match="^dns411 on node n2 writes no dnsmasq files$"):
        select_rows(STANDBY, "dnsmasq")
    with pytest.raises(ValueError, match="^source must be one of desired, dnsmasq, route53"):
        select_rows(WRITER, "bind")


def test_the_note_says_whose_state_and_how_old():
    assert state_note(WRITER, "desired", now_ms=103_000) == (
        "# dns411 on n1, catalog revision 9, published 1970-01-01T00:01:40Z (3 s ago)")
    assert state_note(WRITER, "route53", now_ms=103_000, nodes=2) == (
        "# dns411 on n1, catalog revision 9, published 1970-01-01T00:01:40Z (3 s ago); "
        "Route 53 listed 63 s ago; 2 nodes publish (--node to choose)")
    # more than twice its period + 30 s without a publication: flagged
    assert state_note(WRITER, "desired", now_ms=100_000 + 91_000) == (
        "# dns411 on n1, catalog revision 9, published 1970-01-01T00:01:40Z (91 s ago); "
        "STALE: it publishes every 30 s, is it running?")
    assert state_note(WRITER, "desired", now_ms=100_000 + 3 * 3600_000).endswith(
        "(3 h ago); STALE: it publishes every 30 s, is it running?")


def test_keys_zones_and_bad_documents():
    assert node_key("ip-10-0-0-1.ec2.internal") == "ip-10-0-0-1.ec2.internal"
    assert node_key("host name/*>") == "host_name___"
    assert (in_zone("a.b.example.com", "example.com"), in_zone("badexample.com", "example.com"),
            in_zone("x", None)) == (True, False, True)
    with pytest.raises(ValueError, match="^not a dns411 state document: "):
        decode_state(b"{}")
