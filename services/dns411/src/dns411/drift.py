"""Compare what a place holds (dnsmasq files, a hosted zone) with the desired records (pure).

One :class:`~unify_common.dnslisting.Row` per value (the row of the state dns411 publishes
and ``unify dns list`` prints). ``drift`` is ``""`` for the desired listing itself; for another
source it is ``in-sync``, ``ttl`` (value present, TTL differs), ``missing`` (desired, absent
there), ``extra`` (there, owned by this dns411, not desired), ``foreign`` (there, not owned
by this dns411, not desired) or ``not-owned`` (desired, but the record there is someone
else's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from unify_common.dnslisting import Row, in_zone

from .model import RecordSet

__all__ = ["Row", "compare", "desired_rows", "in_zone"]


def desired_rows(records: Iterable[RecordSet], owner_id: str) -> list[Row]:
    """Rows of the desired listing (drift empty)."""
    return sorted(Row(r.name, r.type, v, r.ttl, owner_id, r.origin)
                  for r in records for v in r.values)


def compare(desired: Iterable[RecordSet], found: Iterable[RecordSet],
            owners: Mapping[tuple[str, str], str], owner_id: str) -> list[Row]:
    """Rows for ``found`` record sets with drift against ``desired``, plus ``missing`` rows.

    :param owners: ``(name, type)`` -> owner id of what is found (absent: not owned; pass
        ``owner_id`` for every key when the place has no ownership notion, like dnsmasq).
    """
    want = {(r.name, r.type, v): r for r in desired for v in r.values}
    rows: list[Row] = []
    seen: set[tuple[str, str, str]] = set()
    for rec in found:
        owner = owners.get(rec.key, "")
        for value in rec.values:
            key = (rec.name, rec.type, value)
            seen.add(key)
            if key in want:
                if owner != owner_id:
                    drift = "not-owned"
                else:
                    drift = "in-sync" if want[key].ttl == rec.ttl else "ttl"
            else:
                drift = "extra" if owner == owner_id else "foreign"
            rows.append(Row(rec.name, rec.type, value, rec.ttl, owner, rec.origin, drift))
    for key, rec in want.items():
        if key not in seen:
            rows.append(Row(key[0], key[1], key[2], rec.ttl, "", rec.origin, "missing"))
    return sorted(rows)
