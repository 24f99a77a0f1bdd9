"""Desired records -> dnsmasq files (pure tables, exact bytes)."""

from __future__ import annotations

import pytest

from dns411.model import RecordSet
from dns411.render import (
    HEADER,
    consul_server_line,
    parse_conf_file,
    parse_hosts_file,
    render_conf,
    render_hosts,
)


def rs(name, rtype, *values, ttl=30):
    return RecordSet(name, rtype, tuple(values), ttl)


RECORDS = [
    rs("web.example.com", "A", "10.0.0.1", "10.0.0.2"),
    rs("shop.example.com", "CNAME", "haproxy.example.com"),
    rs("haproxy.example.com", "A", "10.0.9.1"),
    rs("web.example.com", "AAAA", "2001:db8::1"),
]


def test_hosts_file_exact():
    assert render_hosts(RECORDS).decode() == HEADER + (
        "10.0.9.1 haproxy.example.com\n"
        "10.0.0.1 web.example.com\n"
        "10.0.0.2 web.example.com\n"
        "2001:db8::1 web.example.com\n")


def test_conf_file_exact():
    assert render_conf(RECORDS, ttl=30, consul_dns="127.0.0.1:8600").decode() == HEADER + (
        "local-ttl=30\n"
        "server=/consul/127.0.0.1#8600\n"
        "cname=shop.example.com,haproxy.example.com,30\n")


def test_local_domains_answer_nxdomain_for_unknown_names():
    conf = render_conf(RECORDS, ttl=30, local_domains=["unify.test", "example.com",
                                                       "unify.test"]).decode()
    assert conf == HEADER + (
        "local-ttl=30\n"
        "local=/example.com/\n"
        "local=/unify.test/\n"
        "cname=shop.example.com,haproxy.example.com,30\n")
    assert parse_conf_file(conf) == (30, [RecordSet("shop.example.com", "CNAME",
                                                    ("haproxy.example.com",), 30, "dnsmasq")])


def test_empty_files():
    assert render_hosts([]) == HEADER.encode()
    assert render_conf([], ttl=5) == (HEADER + "local-ttl=5\n").encode()


def test_same_records_same_bytes_whatever_order():
    assert render_hosts(RECORDS) == render_hosts(list(reversed(RECORDS)))
    assert render_conf(RECORDS, ttl=30) == render_conf(list(reversed(RECORDS)), ttl=30)


@pytest.mark.parametrize(("addr", "line"), [
    pytest.param("127.0.0.1:8600", "server=/consul/127.0.0.1#8600\n", id="ip-port"),
    pytest.param("10.1.2.3", "server=/consul/10.1.2.3#8600\n", id="default-port"),
    pytest.param("[::1]:53", "server=/consul/::1#53\n", id="ipv6-port"),
])
def test_consul_server_line(addr, line):
    assert consul_server_line(addr) == line


@pytest.mark.parametrize("addr", [
    pytest.param("consul.local:8600", id="name-not-ip"),
    pytest.param("127.0.0.1:0", id="port-zero"),
    pytest.param("127.0.0.1:99999", id="port-too-big"),
    pytest.param("127.0.0.1:86\n00", id="newline"),
])
def test_consul_server_line_rejects(addr):
    with pytest.raises(ValueError, match="Consul DNS address"):
        consul_server_line(addr)


def test_files_parse_back():
    hosts = parse_hosts_file(render_hosts(RECORDS).decode(), 30)
    ttl, cnames = parse_conf_file(render_conf(RECORDS, ttl=30).decode())
    back = sorted(hosts + cnames)
    assert ttl == 30
    assert [(r.name, r.type, r.values, r.ttl) for r in back] == [
        (r.name, r.type, r.values, r.ttl) for r in sorted(RECORDS)]


def test_rendered_hosts_file_passes_its_check():
    from dns411.apply.dnsmasq import check_hosts

    hosts = render_hosts(RECORDS)
    assert check_hosts(hosts) == frozenset(hosts.decode().splitlines())


@pytest.mark.parametrize(("hosts", "message"), [
    pytest.param(b"10.0.0.1\n", "hosts file line 1 is not '<address> <name>': '10.0.0.1'",
                 id="no-name"),
    pytest.param(b"# ok\n10.0.0.300 web.example.com\n",
                 "hosts file line 2 is not '<address> <name>': '10.0.0.300 web.example.com'",
                 id="bad-address"),
    pytest.param(b"10.0.0.1 web.example.com bad_name\n",
                 "hosts file line 1 is not '<address> <name>': "
                 "'10.0.0.1 web.example.com bad_name'", id="bad-second-name"),
    pytest.param(b"fe80::1%eth0 web.example.com\n",
                 "hosts file line 1 is not '<address> <name>': 'fe80::1%eth0 web.example.com'",
                 id="zone-index"),
    pytest.param(b"10.0.0.1 caf\xc3 .example.com\n", "hosts file is not UTF-8 (byte 12)",
                 id="not-utf8"),
])
def test_hosts_check_names_the_first_bad_line(hosts, message):
    from dns411.apply.dnsmasq import DnsmasqConfigError, check_hosts

    with pytest.raises(DnsmasqConfigError) as caught:
        check_hosts(hosts)
    assert str(caught.value) == message


def test_hosts_check_skips_lines_known_good():
    from dns411.apply.dnsmasq import check_hosts

    # a line is checked once: known lines are trusted (they passed before)
    assert check_hosts(b"x y\n", known=frozenset({"x y"})) == frozenset({"x y"})
