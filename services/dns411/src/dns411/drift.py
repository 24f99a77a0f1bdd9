"""Compare what a place holds (dnsmasq files, a hosted zone) with the desired records (pure).

One :class:`Row` per value. ``drift`` is ``""`` for the desired listing itself; for another
source it is ``in-sync``, ``ttl`` (value present, TTL differs), ``missing`` (desired, absent
there), ``extra`` (there, owned by this dns411, not desired), ``foreign`` (there, not owned
by this dns411, not desired) or ``not-owned`` (desired, but the record there is someone
else's).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import msgspec

from .model import RecordSet
from .names import zone_for

__all__ = ["Row", "compare", "desired_rows", "in_zone"]


class Row(msgspec.Struct, frozen=True, order=True):
    """One listed value: ``type``, ``name``, ``value``, ``ttl`` (seconds), ``owner`` (owner id,
    ``""`` unknown), ``origin`` (catalog, kv, file, dnsmasq, route53), ``drift``."""

    name: str
    type: str
    value: str
    ttl: int
    owner: str = ""
    origin: str = ""
    drift: str = ""

    def as_dict(self) -> dict:
        """JSON-ready dict with the column names of the table."""
        return {"type": self.type, "name": self.name, "value": self.value, "ttl": self.ttl,
                "owner": self.owner, "origin": self.origin, "drift": self.drift}


def in_zone(name: str, zone: str | None) -> bool:
    """True when ``zone`` is None or ``name`` is ``zone`` or below it (label boundary)."""
    return zone is None or zone_for(name, [zone]) is not None


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
