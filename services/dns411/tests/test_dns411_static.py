"""Static records from Consul KV and hosts-style files (pure tables)."""

from __future__ import annotations

import pytest

from dns411.model import RecordSet
from dns411.static import records_from_hosts, records_from_kv
from unify_common.events import KvEntry
from unify_common.problems import Problem


def kv(**entries):
    return {k.replace("__", "/"): KvEntry(key=k.replace("__", "/"), value=v)
            for k, v in entries.items()}


@pytest.mark.parametrize(("entries", "records", "reasons"), [
    pytest.param({"unify/dns/db.example.com": "192.0.2.1"},
                 [RecordSet("db.example.com", "A", ("192.0.2.1",), 30, "kv")], [], id="one-a"),
    pytest.param({"unify/dns/db.example.com": "192.0.2.2, 192.0.2.1 2001:db8::9"},
                 [RecordSet("db.example.com", "A", ("192.0.2.1", "192.0.2.2"), 30, "kv"),
                  RecordSet("db.example.com", "AAAA", ("2001:db8::9",), 30, "kv")], [],
                 id="several-addresses"),
    pytest.param({"unify/dns/WWW.Example.com.": "Web.Example.com."},
                 [RecordSet("www.example.com", "CNAME", ("web.example.com",), 30, "kv")], [],
                 id="cname-case-insensitive"),
    pytest.param({"other/key": "192.0.2.1"}, [], [], id="outside-prefix-ignored"),
    pytest.param({"unify/dns/bad name": "192.0.2.1"}, [], ["invalid-static"], id="bad-key"),
    pytest.param({"unify/dns/x.example.com": "192.0.2.1 web.example.com"}, [],
                 ["invalid-static"], id="mixed-value"),
    pytest.param({"unify/dns/x.example.com": ""}, [], ["invalid-static"], id="empty-value"),
    pytest.param({"unify/dns/x.example.com": "x.example.com"}, [], ["invalid-static"],
                 id="cname-to-itself"),
])
def test_records_from_kv(entries, records, reasons):
    entries = {k: KvEntry(key=k, value=v) for k, v in entries.items()}
    got, problems = records_from_kv(entries, "unify/dns/", 30)
    assert got == records
    assert [p.reason for p in problems] == reasons


def test_kv_value_that_is_not_utf8_is_a_problem_for_that_key_only():
    entries = {"unify/dns/a.example.com": KvEntry.from_bytes("unify/dns/a.example.com",
                                                             b"\xff192.0.2.1"),
               "unify/dns/b.example.com": KvEntry.from_bytes("unify/dns/b.example.com",
                                                             b"192.0.2.2")}
    records, problems = records_from_kv(entries, "unify/dns/", 30)
    assert records == [RecordSet("b.example.com", "A", ("192.0.2.2",), 30, "kv")]
    assert problems == [Problem("invalid-static",
                                "KV key 'unify/dns/a.example.com': value is not UTF-8 text")]


def test_hosts_file_lines():
    text = ("# comment\n\n192.0.2.1 a.example.com B.example.com  # trailing\n"
            "192.0.2.2 a.example.com\n2001:db8::1 a.example.com\nnot-an-ip x.example.com\n"
            "192.0.2.3\n")
    records, problems = records_from_hosts(text, "static.hosts", 60)
    assert records == [
        RecordSet("a.example.com", "A", ("192.0.2.1", "192.0.2.2"), 60, "file"),
        RecordSet("a.example.com", "AAAA", ("2001:db8::1",), 60, "file"),
        RecordSet("b.example.com", "A", ("192.0.2.1",), 60, "file"),
    ]
    assert problems == [
        Problem("invalid-static", "static.hosts line 6: expected '<address> <name>...'"),
        Problem("invalid-static", "static.hosts line 7: expected '<address> <name>...'"),
    ]
