"""What this dns411 node serves, as the document it publishes on NATS.

After every reconcile the reconciler hands a :class:`Served` snapshot to the service, which
turns it into a :class:`~unify_common.dnslisting.DnsState` (:func:`build_state`) and puts it
into the state bucket (``UNIFY_DNS411_STATE_BUCKET``) under the node's name; ``unify dns
list`` reads it from there, on any machine with NATS access (see
:mod:`unify_common.dnslisting` for the format and why a document).

* desired: the records of that reconcile (drift ``""``);
* dnsmasq: dns411's hosts and conf files as they are on disk after the apply (the last good
  files when a new set was refused), compared with the desired records;
* Route 53: per managed hosted zone, the listing dns411 keeps (read from Route 53 at most
  ``UNIFY_ROUTE53_RESYNC`` seconds before, with the changes that landed since; the listing
  of the plan when a change was rejected), compared with the desired records of names in
  that zone. Listing costs no API call.

:func:`state_document` is the pure part (tested as a table).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import msgspec

from unify_common.dnslisting import DnsState, ZoneListing, encode_state

from .drift import compare, desired_rows
from .model import RECORD_TYPES, RecordSet
from .names import zone_for
from .plan import companion_name, owner_of
from .render import parse_conf_file, parse_hosts_file
from .settings import Dns411Settings

__all__ = ["Served", "build_state", "encode_within", "route53_zones", "state_document"]


class Served(msgspec.Struct, frozen=True):
    """One reconcile's result, for the published state (no I/O to take it).

    ``records``: desired record sets; ``revision``: the catalog revision; ``route53``:
    ``off``, ``standby`` or ``on``; ``zones``: managed hosted zone id -> name;
    ``listings``: zone id -> (ms since the epoch it was read, record sets held there).
    """

    records: tuple[RecordSet, ...]
    revision: int
    route53: str = "off"
    zones: Mapping[str, str] = msgspec.field(default_factory=dict)
    listings: Mapping[str, tuple[int, tuple[RecordSet, ...]]] = msgspec.field(
        default_factory=dict)


def route53_zones(desired: Sequence[RecordSet], zones: Mapping[str, str],
                  listings: Mapping[str, tuple[int, Sequence[RecordSet]]], owner_id: str
                  ) -> tuple[ZoneListing, ...]:
    """One :class:`ZoneListing` per managed zone that has a listing (sorted by zone id):
    its A/AAAA/CNAME record sets (owners from their companion TXT records) compared with the
    desired records whose closest managed zone it is."""
    names = set(zones.values())
    wanted: dict[str, list[RecordSet]] = {}
    for rec in desired:
        zone = zone_for(rec.name, names)
        if zone is not None:
            wanted.setdefault(zone, []).append(rec)
    out = []
    for zone_id in sorted(z for z in zones if z in listings):
        listed_at, held = listings[zone_id]
        by_key = {r.key: r for r in held}
        found = [r for r in held if r.type in RECORD_TYPES]
        owners = {}
        for rec in found:
            owner = owner_of(by_key.get((companion_name(*rec.key), "TXT")))
            if owner:
                owners[rec.key] = owner
        rows = compare(wanted.get(zones[zone_id], []), found, owners, owner_id)
        out.append(ZoneListing(zone_id, zones[zone_id], listed_at, tuple(rows)))
    return tuple(out)


def state_document(served: Served, *, node: str, owner_id: str, published_at: int,
                   every: float, dnsmasq: Sequence[RecordSet] | None) -> DnsState:
    """The document of ``served`` (pure).

    :param dnsmasq: the record sets dns411's dnsmasq files hold, or ``None`` (dnsmasq off).
    :param published_at: ms since the epoch; ``every``: seconds between publications.
    """
    desired = served.records
    return DnsState(
        node=node, owner_id=owner_id, published_at=published_at, revision=served.revision,
        every=every, desired=tuple(desired_rows(desired, owner_id)),
        dnsmasq=None if dnsmasq is None else tuple(
            compare(desired, dnsmasq, {r.key: owner_id for r in dnsmasq}, owner_id)),
        route53=served.route53,
        zones=route53_zones(desired, served.zones, served.listings, owner_id)
        if served.route53 == "on" else ())


def _read(path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def build_state(served: Served, settings: Dns411Settings, *, node: str,
                now_ms: int | None = None) -> DnsState:
    """:func:`state_document` with the dnsmasq files read from disk (when dnsmasq is on).

    :raises OSError: a file exists but cannot be read.
    """
    dnsmasq = None
    if settings.dnsmasq_enabled:
        ttl, cnames = parse_conf_file(_read(settings.conf_path))
        dnsmasq = parse_hosts_file(_read(settings.hosts_path), ttl or 0) + cnames
    return state_document(served, node=node, owner_id=settings.owner_id,
                          published_at=int(time.time() * 1000) if now_ms is None else now_ms,
                          every=settings.tick, dnsmasq=dnsmasq)


def encode_within(state: DnsState, max_bytes: int) -> bytes:
    """The KV value of ``state``; when larger than ``max_bytes`` (the server's max payload),
    the value of the same document without rows and with ``error`` saying why."""
    data = encode_state(state)
    if len(data) <= max_bytes:
        return data
    return encode_state(msgspec.structs.replace(
        state, desired=(), dnsmasq=None if state.dnsmasq is None else (),
        zones=tuple(msgspec.structs.replace(z, rows=()) for z in state.zones),
        error=f"the state is too large to publish ({len(data)} bytes compressed, the NATS "
              f"server takes {max_bytes})"))
