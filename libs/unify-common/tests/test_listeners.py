"""Pure tables: which listener a vhost can be served on, the TLS plan, certificates."""

from __future__ import annotations

import msgspec
import pytest

from unify_common.listeners import (
    Refusal,
    TlsPlan,
    VerdictDocument,
    VhostVerdict,
    certificate_covers,
    listener_refusal,
    needs_certificate,
    tls_plan,
    unroutable_vhost,
)
from unify_common.tags import Listener, parse_tags

HTTP, HTTPS, TCP = Listener("http", 80), Listener("https", 443), Listener("tcp", 5432)
PASS_ON_HTTP = Refusal("ssl-mode-conflict", "ssl=pass-through needs an https listener, not http")
BACKEND_ON_HTTPS = Refusal("ssl-mode-conflict",
                           "ssl=backend keeps clients on plain HTTP: use http=, not https=")


@pytest.mark.parametrize(("ssl", "ports", "expected"), [
    (None, [8080], TlsPlan(False, "offloading")),
    (None, [443, 443], TlsPlan(True, "bridge")),
    (None, [443, 8443], TlsPlan(False, "offloading")),
    (None, [], TlsPlan(True, "bridge")),
    ("offloading", [443], TlsPlan(False, "offloading")),
    ("bridge", [8443], TlsPlan(True, "bridge")),
    ("backend", [8443], TlsPlan(True, "invalid")),
    ("pass-through", [8443], TlsPlan(True, "pass-through")),
])
def test_tls_plan(ssl, ports, expected):
    assert tls_plan(ssl, ports) == expected


@pytest.mark.parametrize(("listener", "ssl", "has_hosts", "expected"), [
    (TCP, None, False, None),
    (TCP, "pass-through", False, None),
    (HTTP, None, True, None),
    (HTTPS, None, True, None),
    (HTTP, None, False, Refusal("missing-vhost", "http=80 needs vhost= and dns= tags")),
    (HTTPS, "backend", False, Refusal("missing-vhost", "https=443 needs vhost= and dns= tags")),
    (HTTP, "pass-through", True, PASS_ON_HTTP),
    (HTTPS, "pass-through", True, None),
    (HTTP, "backend", True, None),
    (HTTPS, "backend", True, BACKEND_ON_HTTPS),
    (HTTP, "bridge", True, None),
    (HTTPS, "offloading", True, None),
])
def test_listener_refusal(listener, ssl, has_hosts, expected):
    assert listener_refusal(listener, ssl, has_hosts) == expected


@pytest.mark.parametrize(("listener", "mode", "expected"), [
    (HTTPS, "offloading", True),
    (HTTPS, "bridge", True),
    (HTTPS, "pass-through", False),
    (HTTP, "offloading", False),
    (HTTP, "bridge", False),
    (TCP, "offloading", False),
])
def test_needs_certificate(listener, mode, expected):
    assert needs_certificate(listener, mode) is expected


@pytest.mark.parametrize(("host", "names", "expected"), [
    ("web.example.com", ["web.example.com"], True),
    ("web.example.com", ["*.example.com"], True),
    ("a.web.example.com", ["*.example.com"], False),  # one label only
    ("example.com", ["*.example.com"], False),
    ("web.example.com", ["*.com"], False),
    ("web.example.com", ["other.example.com", "*.example.org"], False),
    ("localhost", ["*."], False),
    ("web.example.com", [], False),
])
def test_certificate_covers(host, names, expected):
    assert certificate_covers(host, names) is expected


@pytest.mark.parametrize(("tags", "expected"), [
    (["dns=a.com", "vhost=w"], None),
    (["dns=a.com", "vhost=w", "ssl=pass-through"],
     "ssl=pass-through refuses every listener (http=80); no CNAME for vhost w"),
    (["dns=a.com", "vhost=w", "https", "ssl=backend"],
     "ssl=backend refuses every listener (https=443); no CNAME for vhost w"),
    (["dns=a.com", "vhost=w", "http", "https", "ssl=pass-through"], None),
    (["dns=a.com", "vhost=w", "http", "https", "ssl=backend"], None),
    (["dns=a.com", "vhost=w", "https", "tcp=9000", "ssl=backend"], None),
])
def test_unroutable_vhost(tags, expected):
    assert unroutable_vhost(parse_tags(tags)) == expected


def test_verdict_document_json_shape():
    doc = VerdictDocument(node="n1", revision=7, written_at=1000, vhosts={
        "a.example.com": VhostVerdict(True),
        "b.example.com": VhostVerdict(False, "route-conflict", "taken", "b")})
    data = msgspec.json.encode(doc)
    assert data == (b'{"node":"n1","revision":7,"written_at":1000,"vhosts":{'
                    b'"a.example.com":{"accepted":true},"b.example.com":{"accepted":false,'
                    b'"reason":"route-conflict","message":"taken","service":"b"}}}')
    assert msgspec.json.decode(data, type=VerdictDocument) == doc
