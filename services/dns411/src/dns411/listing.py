"""``list_records``: what dns411 wants, what dnsmasq serves, what Route 53 holds, with drift.

Used by ``unify dns list`` (through :func:`dns411.cli_list`) and ``unify-dns411 list``.
Reads the catalog from NATS (when no ``state`` is given), dnsmasq's files from the
configured paths, and Route 53 through boto3 (standard AWS variables).
"""

from __future__ import annotations

import asyncio
import logging

from unify_common.catalog import CatalogState, read_catalog
from unify_common.natsio import connect_nats, ensure_catalog_bucket, unreachable_message
from unify_common.settings import CommonSettings

from .apply.route53 import Route53Sink, sink_for
from .drift import Row, compare, desired_rows, in_zone
from .model import RecordSet
from .names import zone_for
from .plan import companion_name, owner_of
from .reconciler import Reconciler
from .render import parse_conf_file, parse_hosts_file
from .settings import Dns411Settings

__all__ = ["SOURCES", "format_table", "list_records", "Row"]

SOURCES = ("desired", "dnsmasq", "route53")


async def read_state(common: CommonSettings, *, timeout: float = 10.0) -> CatalogState:
    """Read the catalog once (for one-shot commands): each NATS server is tried once.

    :raises ConnectionError: no NATS server answered (within ``timeout`` seconds).
    """
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # one clear error, not a retry log
    try:
        nc = await asyncio.wait_for(
            connect_nats(common, name="dns411-list", fail_fast=True), timeout)
    except Exception as err:
        raise ConnectionError(unreachable_message(common, err)) from None
    try:
        return await read_catalog(await ensure_catalog_bucket(nc.jetstream(), common))
    finally:
        await nc.close()


def _dnsmasq_records(settings: Dns411Settings) -> list[RecordSet]:
    try:
        conf_text = settings.conf_path.read_text()
    except FileNotFoundError:
        conf_text = ""
    ttl, cnames = parse_conf_file(conf_text)
    try:
        hosts_text = settings.hosts_path.read_text()
    except FileNotFoundError:
        hosts_text = ""
    return parse_hosts_file(hosts_text, ttl or 0) + cnames


def _route53_records(sink: Route53Sink, zones: dict[str, str]
                     ) -> tuple[list[RecordSet], dict[tuple[str, str], str]]:
    records: list[RecordSet] = []
    for zid in sorted(zones):
        records.extend(sink.list_zone(zid))
    by_key = {r.key: r for r in records}
    owners: dict[tuple[str, str], str] = {}
    found = []
    for rec in records:
        if rec.type not in ("A", "AAAA", "CNAME"):
            continue
        found.append(rec)
        owner = owner_of(by_key.get((companion_name(*rec.key), "TXT")))
        if owner:
            owners[rec.key] = owner
    return found, owners


def list_records(zone: str | None = None, source: str = "desired", *,
                 settings: Dns411Settings | None = None, common: CommonSettings | None = None,
                 state: CatalogState | None = None, route53_client=None) -> list[Row]:
    """Rows (sorted by name, type, value) from ``source``, limited to ``zone`` (a name; for
    ``route53`` also a hosted zone id), with drift marked (see :mod:`.drift`).

    :raises ValueError: unknown ``source``.
    :raises ConnectionError: NATS unreachable (catalog needed, no ``state``).
    :raises botocore.exceptions.ClientError: Route 53 refused.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    settings = settings or Dns411Settings.from_env()
    common = common or CommonSettings.from_env()
    if state is None:
        state = asyncio.run(read_state(common))
    desired = Reconciler(settings, node=common.node).desired(state).records
    if source == "desired":
        rows = desired_rows(desired, settings.owner_id)
    elif source == "dnsmasq":
        found = _dnsmasq_records(settings)
        rows = compare(desired, found, {r.key: settings.owner_id for r in found},
                       settings.owner_id)
    else:
        sink = sink_for(settings, route53_client)
        managed = {zid: name for zid, name in sink.zones().items()
                   if not settings.zones or name in settings.zones
                   or zid.lower() in settings.zones}
        wanted = zone.rstrip(".").lower() if zone else None
        chosen = {zid: name for zid, name in managed.items()
                  if wanted is None or wanted in (name, zid.lower())}
        found, owners = _route53_records(sink, chosen)
        names = set(managed.values())
        desired = [r for r in desired if zone_for(r.name, names) in chosen.values()]
        return compare(desired, found, owners, settings.owner_id)
    return [r for r in rows if in_zone(r.name, zone)]


def format_table(rows: list[Row]) -> str:
    """A fixed-width table: TYPE NAME VALUE TTL OWNER ORIGIN DRIFT."""
    header = ("TYPE", "NAME", "VALUE", "TTL", "OWNER", "ORIGIN", "DRIFT")
    cells = [header] + [(r.type, r.name, r.value, str(r.ttl), r.owner or "-", r.origin,
                         r.drift or "-") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(header))).rstrip()
                     for c in cells)
