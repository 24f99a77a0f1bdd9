"""The Unify tag language: valid forms, defaults, and a hostile corpus."""

import pytest

from unify_common.tags import HealthCheck, Listener, TagError, UnifyTags, parse_tags


@pytest.mark.parametrize(("tags", "expected"), [
    pytest.param([], None, id="no-tags"),
    pytest.param(["primary", "version=3", "traefik.enable=true"], None, id="foreign-only"),
    pytest.param(["dns=Example.COM"], UnifyTags(dns=("example.com",)), id="dns-lowercased"),
    pytest.param(["dns=b.com", "dns=a.com", "dns=a.com"], UnifyTags(dns=("a.com", "b.com")),
                 id="dns-repeatable-sorted-dedup"),
    pytest.param(["dns=a.com", "vhost=WWW"],
                 UnifyTags(dns=("a.com",), vhost="www", listeners=(Listener("http", 80),)),
                 id="vhost-defaults-to-http-80"),
    pytest.param(["dns=a.com", "vhost=w", "https"],
                 UnifyTags(dns=("a.com",), vhost="w", listeners=(Listener("https", 443),)),
                 id="bare-https-443"),
    pytest.param(["dns=a.com", "vhost=w", "http=8080", "https=8443"],
                 UnifyTags(dns=("a.com",), vhost="w",
                           listeners=(Listener("http", 8080), Listener("https", 8443))),
                 id="two-listeners"),
    pytest.param(["tcp=5432"], UnifyTags(listeners=(Listener("tcp", 5432),)), id="tcp"),
    pytest.param(["url_prefix=/api/"], UnifyTags(url_prefix="/api"), id="prefix-trailing-slash"),
    pytest.param(["check=GET /health?full=1"],
                 UnifyTags(check=HealthCheck(method="GET", path="/health?full=1")),
                 id="check"),
    pytest.param(["check=disabled"], UnifyTags(check=HealthCheck(enabled=False)),
                 id="check-disabled"),
    pytest.param(["balance=leastconn", "ssl=pass-through"],
                 UnifyTags(balance="leastconn", ssl="pass-through"), id="balance-ssl"),
    pytest.param(["ssl=bridge", "ssl=bridge"], UnifyTags(ssl="bridge"), id="same-twice-ok"),
])
def test_valid(tags, expected):
    assert parse_tags(tags) == expected


@pytest.mark.parametrize(("tags", "message"), [
    pytest.param(["vhost=www"], "tag 'vhost=www': vhost needs at least one dns=<domain> tag",
                 id="vhost-without-dns"),
    pytest.param(["dns=a.com", "vhost=a\nb"], "tag 'vhost=a\\nb': only printable ASCII is allowed",
                 id="newline"),
    pytest.param(["dns=a.com", "vhost=a b"], "tag 'vhost=a b': spaces are not allowed",
                 id="space"),
    pytest.param(["dns=a.com}"], "tag 'dns=a.com}': dns must be a DNS name of letters, "
                 "digits, '-' and '.'", id="brace"),
    pytest.param(["dns={{a}}.com"], "tag 'dns={{a}}.com': dns must be a DNS name of letters, "
                 "digits, '-' and '.'", id="template"),
    pytest.param(["dns=a.com#x"], "tag 'dns=a.com#x': dns must be a DNS name of letters, "
                 "digits, '-' and '.'", id="hash"),
    pytest.param(["dns=exämple.com"], "tag 'dns=exämple.com': only printable ASCII is allowed",
                 id="unicode"),
    pytest.param(["dns=" + "a" * 300], "tag '" + ("dns=" + "a" * 300)[:77]
                 + "...': dns is 300 characters long; at most 253 are allowed", id="huge"),
    pytest.param(["ssl=maybe"], "tag 'ssl=maybe': ssl must be one of backend, bridge, "
                 "offloading, pass-through", id="unknown-ssl"),
    pytest.param(["balance=hdr(host)"], "tag 'balance=hdr(host)': balance must be one of "
                 "first, leastconn, random, roundrobin, source, static-rr, uri",
                 id="balance-with-args"),
    pytest.param(["tcp="], "tag 'tcp=': tcp needs a port", id="tcp-without-port"),
    pytest.param(["tcp"], "tag 'tcp': expected tcp=<value>", id="bare-tcp"),
    pytest.param(["http=0"], "tag 'http=0': port must be an integer from 1 to 65535",
                 id="port-zero"),
    pytest.param(["http=70000"], "tag 'http=70000': port must be an integer from 1 to 65535",
                 id="port-too-big"),
    pytest.param(["check=FETCH /"], "tag 'check=FETCH /': check must be 'disabled' or "
                 "'<METHOD> /path' (e.g. 'GET /health')", id="bad-method"),
    pytest.param(["url_prefix=api"], "tag 'url_prefix=api': url_prefix must look like /path "
                 "(letters, digits, ._~-/)", id="prefix-no-slash"),
    pytest.param(["url_prefix=//evil"], "tag 'url_prefix=//evil': url_prefix must look like "
                 "/path (letters, digits, ._~-/)", id="prefix-double-slash"),
    pytest.param(["dns=a.com", "vhost=a", "vhost=b"], "tag 'vhost=b': vhost is given more than "
                 "once with different values", id="vhost-twice"),
    pytest.param(["dns=-a.com"], "tag 'dns=-a.com': dns must be a DNS name of letters, "
                 "digits, '-' and '.'", id="leading-hyphen"),
    pytest.param(["vhost"], "tag 'vhost': expected vhost=<value>", id="bare-vhost"),
])
def test_invalid(tags, message):
    with pytest.raises(TagError) as err:
        parse_tags(tags)
    assert str(err.value) == message
