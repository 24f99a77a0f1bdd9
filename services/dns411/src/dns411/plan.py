"""Desired records + what a Route 53 hosted zone holds -> the changes to make (pure).

Ownership works like external-dns's TXT registry, in dns411's own format: every record set
dns411 writes has a companion TXT record set at ``_dns411-<type>.<name>`` (a separate name,
because a CNAME may not share its name with a TXT) whose value is
``"heritage=unify-dns411,owner=<owner id>"``. dns411 only changes or deletes record sets
whose companion names its own owner id; anything else at a desired name is left alone and
reported (``not-owned`` / ``owned-by-other``).

A companion left without its record set (someone deleted the record by hand) still proves
ownership: the record is written again with UPSERT, or the companion removed when the record
is no longer desired.

Policies: ``sync`` creates, updates and deletes; ``upsert-only`` never deletes.

A *unit* is the group of changes that must land together (a record set and its companion;
a type change deletes the old pair and creates the new one). Units are batched into
ChangeResourceRecordSets calls within the Route 53 quotas ("Quotas on API requests" in the
Route 53 Developer Guide: at most 1,000 ResourceRecord elements and 32,000 characters of
values per request, each UPSERT counted twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from unify_common.problems import Problem

from .model import RECORD_TYPES, RecordSet
from .names import MAX_NAME_LEN, zone_for

__all__ = ["Change", "ChangeUnit", "Route53Plan", "batch_units", "companion_name",
           "owner_of", "owner_value", "plan_zone", "plan_route53", "to_boto_change",
           "POLICIES", "MAX_BATCH_RECORDS", "MAX_BATCH_CHARS"]

POLICIES = ("sync", "upsert-only")
HERITAGE = "unify-dns411"
MAX_BATCH_RECORDS = 1000
MAX_BATCH_CHARS = 32000


class Change(msgspec.Struct, frozen=True):
    """One Route 53 change: ``action`` is ``CREATE``, ``UPSERT`` or ``DELETE``."""

    action: str
    record: RecordSet


class ChangeUnit(msgspec.Struct, frozen=True):
    """Changes that must land in one request (see module doc); ``what`` names the record."""

    zone_id: str
    what: str
    changes: tuple[Change, ...]

    def weight(self) -> tuple[int, int]:
        """``(ResourceRecord elements, value characters)`` as Route 53 counts them."""
        records = chars = 0
        for ch in self.changes:
            factor = 2 if ch.action == "UPSERT" else 1
            records += factor * len(ch.record.values)
            chars += factor * sum(len(v) for v in ch.record.values)
        return records, chars


class Route53Plan(msgspec.Struct, frozen=True):
    """``units`` to submit (sorted by zone, then name/type); ``problems`` for records left
    alone; ``unzoned`` names that no hosted zone covers (not written to Route 53)."""

    units: tuple[ChangeUnit, ...] = ()
    problems: tuple[Problem, ...] = ()
    unzoned: tuple[str, ...] = ()


def companion_name(name: str, rtype: str) -> str:
    """Name of the ownership TXT record set of ``(name, rtype)``."""
    return f"_dns411-{rtype.lower()}.{name}"


def owner_value(owner_id: str) -> str:
    """The quoted TXT value naming ``owner_id`` (TXT values are quoted in Route 53)."""
    return f'"heritage={HERITAGE},owner={owner_id}"'


def owner_of(txt: RecordSet | None) -> str | None:
    """The owner id in a companion TXT record set; ``""`` when it exists but is not
    dns411's format (treated as someone else's); ``None`` when there is none."""
    if txt is None:
        return None
    for value in txt.values:
        fields = dict(p.partition("=")[::2] for p in value.strip('"').split(","))
        if fields.get("heritage") == HERITAGE and fields.get("owner"):
            return fields["owner"]
    return ""


def _conflicting(rtype: str, other: str) -> bool:
    return rtype != other and "CNAME" in (rtype, other)


def plan_zone(zone_id: str, desired: Sequence[RecordSet], existing: Sequence[RecordSet], *,
              owner_id: str, policy: str) -> tuple[list[ChangeUnit], list[Problem]]:
    """Changes for one hosted zone.

    :param desired: record sets in this zone (names normalised).
    :param existing: every record set the zone holds (from ListResourceRecordSets).
    :returns: (units sorted by name/type, problems).
    :raises ValueError: unknown ``policy``.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    have = {r.key: r for r in existing}
    want = {r.key: r for r in desired}
    value = owner_value(owner_id)
    units: list[ChangeUnit] = []
    problems: list[Problem] = []
    handled: set[tuple[str, str]] = set()

    def txt_of(key: tuple[str, str]) -> RecordSet | None:
        return have.get((companion_name(*key), "TXT"))

    def companion(key: tuple[str, str], ttl: int) -> RecordSet:
        return RecordSet(companion_name(*key), "TXT", (value,), ttl, "route53")

    def removal(key: tuple[str, str]) -> list[Change]:
        out = [Change("DELETE", have[key])] if key in have else []
        txt = txt_of(key)
        if txt is not None:
            out.append(Change("DELETE", txt))
        return out

    for key in sorted(want):
        rec = want[key]
        if len(companion_name(*key)) > MAX_NAME_LEN:
            problems.append(Problem("invalid-name", f"{rec.name}: too long for an ownership "
                                    "record; not written to Route 53"))
            continue
        owner = owner_of(txt_of(key))
        cur = have.get(key)
        if owner not in (None, owner_id):
            problems.append(Problem("owned-by-other", f"{rec.name} {rec.type} belongs to "
                                    f"owner {owner or '(unknown)'}; left alone"))
            continue
        if cur is not None and owner is None:
            problems.append(Problem("not-owned", f"{rec.name} {rec.type} exists without a "
                                    "dns411 ownership record; left alone"))
            continue
        if cur is not None:
            if cur.values != rec.values or cur.ttl != rec.ttl:
                units.append(ChangeUnit(zone_id, f"{rec.name} {rec.type}",
                                        (Change("UPSERT", rec),)))
            continue
        changes: list[Change] = []
        blocked: Problem | None = None
        for other in RECORD_TYPES:
            okey = (rec.name, other)
            if not _conflicting(rec.type, other) or okey not in have:
                continue
            if owner_of(txt_of(okey)) != owner_id:
                blocked = Problem("not-owned", f"{rec.name} {rec.type} would replace a {other} "
                                  "record set dns411 does not own; left alone")
            elif policy != "sync":
                blocked = Problem("policy-forbids-delete", f"{rec.name} {rec.type} would "
                                  f"replace dns411's {other} record set; {policy} never deletes")
            if blocked is not None:
                break
            changes.extend(removal(okey))
            handled.add(okey)
        if blocked is not None:
            problems.append(blocked)
            continue
        if owner is None:
            # CREATE, not UPSERT: if someone else created the name since the listing,
            # Route 53 rejects the unit instead of letting dns411 take it over
            changes.extend((Change("CREATE", rec), Change("CREATE", companion(key, rec.ttl))))
        else:
            changes.append(Change("UPSERT", rec))  # half-deleted pair: the name is ours
        units.append(ChangeUnit(zone_id, f"{rec.name} {rec.type}", tuple(changes)))

    if policy == "sync":
        stale: set[tuple[str, str]] = set()
        for key in have:
            if key[1] in RECORD_TYPES and key not in want and key not in handled \
                    and owner_of(txt_of(key)) == owner_id:
                stale.add(key)
        # half-deleted pairs: our companion TXT left without its record set
        for key, rec in have.items():
            if key[1] != "TXT" or owner_of(rec) != owner_id:
                continue
            label, _, name = key[0].partition(".")
            rtype = label.removeprefix("_dns411-").upper()
            target = (name, rtype)
            if label.startswith("_dns411-") and target not in have and target not in want:
                stale.add(target)
        for key in sorted(stale):
            units.append(ChangeUnit(zone_id, f"{key[0]} {key[1]}", tuple(removal(key))))
    units.sort(key=lambda u: u.what)
    return units, problems


def plan_route53(desired: Iterable[RecordSet], zones: Mapping[str, str],
                 existing: Mapping[str, Sequence[RecordSet]], *, owner_id: str,
                 policy: str, domains: Iterable[str] = ()) -> Route53Plan:
    """Changes for every hosted zone.

    :param zones: hosted zone id -> zone name (normalised). Two zones with one name (public
        and private) both receive the records.
    :param existing: hosted zone id -> its record sets (zones missing here are skipped).
    :param domains: the catalog's ``dns=`` domains. Each one holding a desired name that no
        hosted zone covers (the longest such domain for each name) gives one
        ``no-hosted-zone`` problem, worded the same while it lasts so it is reported once.
    """
    by_zone: dict[str, list[RecordSet]] = {zid: [] for zid in zones}
    unzoned: list[str] = []
    names = set(zones.values())
    for rec in desired:
        zone = zone_for(rec.name, names)
        if zone is None:
            unzoned.append(rec.name)
            continue
        for zid, zname in zones.items():
            if zname == zone:
                by_zone[zid].append(rec)
    units: list[ChangeUnit] = []
    problems: list[Problem] = []
    for zid in sorted(by_zone):
        if zid not in existing:
            continue
        u, p = plan_zone(zid, by_zone[zid], existing[zid], owner_id=owner_id, policy=policy)
        units.extend(u)
        problems.extend(p)
    unzoned_names = sorted(set(unzoned))
    domains = tuple(domains)
    zoneless = {zone for zone in (zone_for(name, domains) for name in unzoned_names)
                if zone is not None} if domains else set()
    problems.extend(Problem("no-hosted-zone", f"dns={domain}: no Route 53 hosted zone covers "
                            f"{domain}; its records are not written to Route 53")
                    for domain in sorted(zoneless))
    return Route53Plan(tuple(units), tuple(problems), tuple(unzoned_names))


def to_boto_change(change: Change) -> dict:
    """The ``Changes`` element of ChangeResourceRecordSets (Route 53 API Reference)."""
    rec = change.record
    return {"Action": change.action, "ResourceRecordSet": {
        "Name": rec.name + ".", "Type": rec.type, "TTL": rec.ttl,
        "ResourceRecords": [{"Value": v if rec.type != "CNAME" else v + "."}
                            for v in rec.values]}}


def batch_units(units: Sequence[ChangeUnit], *, max_records: int = MAX_BATCH_RECORDS,
                max_chars: int = MAX_BATCH_CHARS) -> tuple[list[list[ChangeUnit]],
                                                           list[ChangeUnit]]:
    """Group one zone's units into requests within the quotas, keeping each unit whole.

    :returns: (batches in input order, units too big for any request on their own).
    """
    batches: list[list[ChangeUnit]] = []
    too_big: list[ChangeUnit] = []
    current: list[ChangeUnit] = []
    records = chars = 0
    for unit in units:
        r, c = unit.weight()
        if r > max_records or c > max_chars:
            too_big.append(unit)
            continue
        if current and (records + r > max_records or chars + c > max_chars):
            batches.append(current)
            current, records, chars = [], 0, 0
        current.append(unit)
        records += r
        chars += c
    if current:
        batches.append(current)
    return batches, too_big


def owned_records(existing: Iterable[RecordSet], owner_id: str) -> list[RecordSet]:
    """The A/AAAA/CNAME record sets among ``existing`` whose companion names ``owner_id``
    (what a replica serves), sorted, origin ``route53``."""
    have = {r.key: r for r in existing}
    return sorted(r for r in have.values() if r.type in RECORD_TYPES
                  and owner_of(have.get((companion_name(*r.key), "TXT"))) == owner_id)
