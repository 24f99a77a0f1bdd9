"""Name rules: hosted zone matching by longest suffix, address parsing (pure tables)."""

from __future__ import annotations

import pytest

from dns411.names import is_hostname, parse_address, zone_for

ZONES = ["example.com", "dev.example.com", "com.au"]


@pytest.mark.parametrize(("name", "zone"), [
    pytest.param("web.example.com", "example.com", id="plain"),
    pytest.param("web.dev.example.com", "dev.example.com", id="longest-suffix"),
    pytest.param("dev.example.com", "dev.example.com", id="apex"),
    pytest.param("badexample.com", None, id="substring-not-suffix"),
    pytest.param("web.notdev.example.com", "example.com", id="label-boundary"),
    pytest.param("WEB.Example.COM.", "example.com", id="case-and-dot"),
    pytest.param("web.example.org", None, id="no-zone"),
])
def test_zone_for(name, zone):
    assert zone_for(name, ZONES) == zone


@pytest.mark.parametrize(("text", "parsed"), [
    pytest.param("10.0.0.1", ("A", "10.0.0.1"), id="v4"),
    pytest.param("2001:0db8:0000::0001", ("AAAA", "2001:db8::1"), id="v6-compressed"),
    pytest.param("fe80::1%eth0", None, id="scoped-refused"),
    pytest.param("10.0.0.256", None, id="bad-v4"),
    pytest.param("web", None, id="name"),
])
def test_parse_address(text, parsed):
    assert parse_address(text) == parsed


@pytest.mark.parametrize(("name", "ok"), [
    pytest.param("web.example.com", True, id="ok"),
    pytest.param("-web.example.com", False, id="leading-dash"),
    pytest.param("we_b.example.com", False, id="underscore"),
    pytest.param("a" * 64 + ".com", False, id="label-too-long"),
    pytest.param(".".join(["a" * 63] * 4), False, id="name-too-long"),
])
def test_is_hostname(name, ok):
    assert is_hostname(name) is ok
