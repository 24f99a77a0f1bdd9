"""Drift marks of listings (pure table)."""

from __future__ import annotations

from dns411.drift import Row, compare, desired_rows
from dns411.model import RecordSet
from unify_common.dnslisting import format_table

DESIRED = [RecordSet("web.example.com", "A", ("10.0.0.1", "10.0.0.2"), 30),
           RecordSet("api.example.com", "A", ("10.0.0.5",), 30),
           RecordSet("db.example.com", "A", ("10.0.0.7",), 30, "kv")]


def test_compare_marks_every_kind_of_drift():
    found = [RecordSet("web.example.com", "A", ("10.0.0.1", "10.0.0.9"), 30, "route53"),
             RecordSet("api.example.com", "A", ("10.0.0.5",), 60, "route53"),
             RecordSet("db.example.com", "A", ("10.0.0.7",), 30, "route53"),
             RecordSet("hand.example.com", "A", ("10.0.0.8",), 300, "route53")]
    owners = {("web.example.com", "A"): "me", ("api.example.com", "A"): "me",
              ("db.example.com", "A"): "other"}
    assert compare(DESIRED, found, owners, "me") == [
        Row("api.example.com", "A", "10.0.0.5", 60, "me", "route53", "ttl"),
        Row("db.example.com", "A", "10.0.0.7", 30, "other", "route53", "not-owned"),
        Row("hand.example.com", "A", "10.0.0.8", 300, "", "route53", "foreign"),
        Row("web.example.com", "A", "10.0.0.1", 30, "me", "route53", "in-sync"),
        Row("web.example.com", "A", "10.0.0.2", 30, "", "catalog", "missing"),
        Row("web.example.com", "A", "10.0.0.9", 30, "me", "route53", "extra"),
    ]


def test_desired_rows_and_table():
    rows = desired_rows(DESIRED, "me")
    assert format_table(rows).splitlines() == [
        "TYPE  NAME             VALUE     TTL  OWNER  ORIGIN   DRIFT",
        "A     api.example.com  10.0.0.5  30   me     catalog  -",
        "A     db.example.com   10.0.0.7  30   me     kv       -",
        "A     web.example.com  10.0.0.1  30   me     catalog  -",
        "A     web.example.com  10.0.0.2  30   me     catalog  -",
    ]
    assert rows[0].as_dict() == {"type": "A", "name": "api.example.com", "value": "10.0.0.5",
                                 "ttl": 30, "owner": "me", "origin": "catalog", "drift": ""}
