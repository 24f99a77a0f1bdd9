"""What dns411 serves, as each dns411 node publishes it, and ``unify dns list`` over it.

After every reconcile a dns411 node (primary mode) puts one :class:`DnsState` document into
the NATS KV bucket ``UNIFY_DNS411_STATE_BUCKET`` (default ``unify-dns411``), under its node
name: the records it wants, what its dnsmasq files hold and what Route 53 holds per hosted
zone, each already compared with the wanted records (drift marks, see :class:`Row`), with
the catalog revision and the time. Anyone with NATS access reads it: no dnsmasq file, AWS
credential or dns411 package is needed, and the last known state stays readable while
dns411 is down (its age says so). Why a document rather than a request to dns411: it
answers when dns411 is stopped or restarting, one read serves every node, and a listing
costs dns411 and Route 53 nothing (the rows come from the listing dns411 keeps anyway).

The value is zlib-compressed JSON (msgspec) of :class:`DnsState`; rows are JSON arrays
``[name, type, value, ttl, owner, origin, drift]`` to stay small (a catalog of 10,000 names
gives about 0.16 MB). A document expires :data:`STATE_MAX_AGE` seconds after its last update,
so the node names of containers long gone do not stay listed.

Drift words (``Row.drift``): ``""`` for the desired listing itself; otherwise ``in-sync``,
``ttl`` (value present, TTL differs), ``missing`` (desired, absent there), ``extra`` (there,
owned by this dns411, not desired), ``foreign`` (there, not owned by this dns411, not
desired) or ``not-owned`` (desired, but the record there is someone else's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
import zlib
from collections.abc import Callable, Sequence

import msgspec
from nats.js.errors import KeyNotFoundError, NotFoundError

from .natsio import connect_nats, unreachable_message
from .settings import CommonSettings, bucket_name

__all__ = ["DnsState", "Row", "ZoneListing", "SOURCES", "STATE_BUCKET", "STATE_MAX_AGE",
           "StateUnavailable", "choose_state", "decode_state", "encode_state",
           "format_table", "in_zone", "list_command", "node_key", "read_states",
           "select_rows", "state_note"]

#: default name of the KV bucket dns411 publishes into (``UNIFY_DNS411_STATE_BUCKET``)
STATE_BUCKET = "unify-dns411"
#: seconds a node's document lives without an update (the bucket's TTL)
STATE_MAX_AGE = 86400.0
#: what ``unify dns list --source`` compares
SOURCES = ("desired", "dnsmasq", "route53")
#: Route 53 as a node sees it: ``off`` (UNIFY_ROUTE53_ENABLED=0), ``standby`` (another node
#: holds the writer lock), ``on`` (this node writes; ``zones`` hold what it last listed)
ROUTE53_STATES = ("off", "standby", "on")

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_=.-]")


class Row(msgspec.Struct, frozen=True, order=True, array_like=True):
    """One listed value: ``name`` (lower case, no trailing dot), ``type`` (A, AAAA, CNAME),
    ``value``, ``ttl`` (seconds), ``owner`` (owner id, ``""`` unknown), ``origin`` (catalog,
    kv, file, dnsmasq, route53), ``drift`` (see the module doc)."""

    name: str
    type: str
    value: str
    ttl: int
    owner: str = ""
    origin: str = ""
    drift: str = ""

    def as_dict(self) -> dict[str, str | int]:
        """JSON-ready dict with the column names of the table."""
        return {"type": self.type, "name": self.name, "value": self.value, "ttl": self.ttl,
                "owner": self.owner, "origin": self.origin, "drift": self.drift}


class ZoneListing(msgspec.Struct, frozen=True):
    """One hosted zone: ``zone_id`` (without ``/hostedzone/``), ``zone`` (its name),
    ``listed_at`` (ms since the epoch: when dns411 last read the zone; the changes it made
    since are included) and its rows (the zone's A/AAAA/CNAME values compared with the
    desired records of names in this zone, ``missing`` rows included), sorted."""

    zone_id: str
    zone: str
    listed_at: int
    rows: tuple[Row, ...] = ()


class DnsState(msgspec.Struct, frozen=True):
    """What one dns411 node serves (the document of the module doc).

    ``node``, ``owner_id`` (``UNIFY_DNS_OWNER_ID``), ``published_at`` (ms since the epoch),
    ``revision`` (the catalog bucket's revision the records come from), ``every`` (seconds
    between publications when nothing changes: the node's periodic resync, 0 unknown);
    ``desired`` (rows, drift ``""``); ``dnsmasq`` (rows of dns411's dnsmasq files compared
    with the desired records, read after the apply; ``None`` when the node writes no
    dnsmasq files); ``route53`` (one of :data:`ROUTE53_STATES`) and ``zones`` (the managed
    hosted zones, by id); ``error`` (``""``, or why the rows are left out, e.g. too large).
    """

    node: str
    owner_id: str
    published_at: int
    revision: int = 0
    every: float = 0.0
    desired: tuple[Row, ...] = ()
    dnsmasq: tuple[Row, ...] | None = None
    route53: str = "off"
    zones: tuple[ZoneListing, ...] = ()
    error: str = ""
    schema: int = 1


class StateUnavailable(LookupError):
    """No usable document: the bucket is missing, empty, or lacks the asked node/source."""


def node_key(node: str) -> str:
    """The KV key of ``node``'s document: the node name with every character a NATS key
    does not allow (``[-/_=.a-zA-Z0-9]``, no leading/trailing dot) replaced by ``_``."""
    key = _KEY_UNSAFE.sub("_", node).strip(".") or "_"
    return key[:200]


def encode_state(state: DnsState) -> bytes:
    """The KV value of ``state``: zlib-compressed JSON."""
    return zlib.compress(msgspec.json.encode(state), 6)


def decode_state(data: bytes) -> DnsState:
    """Inverse of :func:`encode_state`.

    :raises ValueError: not a dns411 state document (corrupt, or another format).
    """
    try:
        return msgspec.json.decode(zlib.decompress(data), type=DnsState)
    except (zlib.error, msgspec.DecodeError) as err:
        raise ValueError(f"not a dns411 state document: {err}") from None


def in_zone(name: str, zone: str | None) -> bool:
    """True when ``zone`` is None or ``name`` is ``zone`` or below it (on a label boundary;
    both compared case-insensitively, trailing dots ignored)."""
    if zone is None:
        return True
    name, zone = name.rstrip(".").lower(), zone.rstrip(".").lower()
    return name == zone or name.endswith("." + zone)


def choose_state(states: Sequence[DnsState], source: str, node: str | None = None
                 ) -> DnsState:
    """The document to list ``source`` from: ``node``'s when given; otherwise the newest
    that has the source (for ``route53``: the node that writes Route 53; for ``dnsmasq``: a
    node writing dnsmasq files), else the newest.

    :raises StateUnavailable: no document, or none of ``node``.
    """
    if not states:
        raise StateUnavailable("no dns411 has published its records on this NATS yet")
    if node is not None:
        mine = [s for s in states if s.node == node]
        if not mine:
            raise StateUnavailable(f"no state from dns411 on node {node!r} (nodes: "
                                   f"{', '.join(sorted(s.node for s in states))})")
        return max(mine, key=lambda s: s.published_at)
    having = [s for s in states if (source != "route53" or s.route53 == "on")
              and (source != "dnsmasq" or s.dnsmasq is not None)]
    return max(having or states, key=lambda s: (s.published_at, s.node))


def select_rows(state: DnsState, source: str, zone: str | None = None) -> list[Row]:
    """Rows of ``source`` in ``state`` (sorted by name, type, value), limited to ``zone`` (a
    name; for ``route53`` the hosted zone of that name or id).

    :raises ValueError: unknown ``source``.
    :raises StateUnavailable: the node does not serve ``source`` or left its rows out.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if state.error:
        raise StateUnavailable(f"dns411 on node {state.node} left its rows out: {state.error}")
    if source == "desired":
        return sorted(r for r in state.desired if in_zone(r.name, zone))
    if source == "dnsmasq":
        if state.dnsmasq is None:
            raise StateUnavailable(f"dns411 on node {state.node} writes no dnsmasq files")
        return sorted(r for r in state.dnsmasq if in_zone(r.name, zone))
    if state.route53 != "on":
        why = ("another node holds the Route 53 writer lock" if state.route53 == "standby"
               else "Route 53 is off there")
        raise StateUnavailable(f"dns411 on node {state.node} does not write Route 53 ({why})")
    wanted = zone.rstrip(".").lower() if zone else None
    return sorted(r for z in state.zones if wanted is None or wanted in (z.zone, z.zone_id.lower())
                  for r in z.rows)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def state_note(state: DnsState, source: str, *, now_ms: int, nodes: int = 1) -> str:
    """One line saying whose state is listed and how old it is (for Route 53: also the
    oldest zone listing), flagged when the node has not published for over twice its
    period plus 30 s. ``now_ms``: ms since the epoch."""
    age = (now_ms - state.published_at) / 1000
    note = (f"# dns411 on {state.node}, catalog revision {state.revision}, published "
            f"{_when(state.published_at)} ({_ago(age)})")
    if source == "route53" and state.route53 == "on":
        if state.zones:
            oldest = min(z.listed_at for z in state.zones)
            note += f"; Route 53 listed {_ago((now_ms - oldest) / 1000)}"
        else:
            note += "; no hosted zone listed yet"
    if state.every and age > 2 * state.every + 30:
        note += (f"; STALE: it publishes every {state.every:g} s, is it running?")
    if nodes > 1:
        note += f"; {nodes} nodes publish (--node to choose)"
    return note


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width table: TYPE NAME VALUE TTL OWNER ORIGIN DRIFT (``-`` for empty)."""
    header = ("TYPE", "NAME", "VALUE", "TTL", "OWNER", "ORIGIN", "DRIFT")
    cells = [header] + [(r.type, r.name, r.value, str(r.ttl), r.owner or "-", r.origin,
                         r.drift or "-") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(header))).rstrip()
                     for c in cells)


async def read_states(settings: CommonSettings, bucket: str = STATE_BUCKET, *, timeout: float = 10.0
                      ) -> tuple[list[DnsState], list[str]]:
    """Every node's document in ``bucket``, and a warning line per unreadable one. Each NATS
    server is tried once.

    :raises ConnectionError: no NATS server answered (the message says where it looked).
    :raises StateUnavailable: the bucket does not exist (no dns411 published yet).
    """
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # one clear error, not a retry log
    try:
        nc = await asyncio.wait_for(connect_nats(settings, name="unify-dns-list",
                                                 fail_fast=True), timeout)
    except Exception as err:
        raise ConnectionError(unreachable_message(settings, err)) from None
    try:
        js = nc.jetstream(timeout=timeout)
        prefix = f"$KV.{bucket}."
        try:
            info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
            kv = await js.key_value(bucket)
        except NotFoundError:
            raise StateUnavailable(
                f"no dns411 has published its records on this NATS yet (bucket {bucket} "
                "does not exist; dns411 creates it after its first reconcile)") from None
        states: list[DnsState] = []
        warnings: list[str] = []
        for subject in sorted(info.state.subjects or {}):
            key = subject.removeprefix(prefix)
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:  # deleted, or expired since the stream info
                continue
            try:
                states.append(decode_state(entry.value or b""))
            except ValueError as err:
                warnings.append(f"key {key!r} skipped: {err}")
        return states, warnings
    finally:
        await nc.close()


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="List the DNS records dns411 serves, with drift marks, from "
        "the state each dns411 node publishes on NATS (NATS_URL...; "
        "UNIFY_DNS411_STATE_BUCKET).")
    parser.add_argument("--zone", default=None, help="only names in this zone (for route53: "
                        "the hosted zone of this name or id)")
    parser.add_argument("--source", default="desired", choices=SOURCES,
                        help="desired (default): the records dns411 wants, DRIFT '-'; "
                        "dnsmasq / route53: what that side serves compared with them, marking "
                        "missing, extra and foreign records")
    parser.add_argument("--node", default=None, help="the dns411 node whose state to list "
                        "(default: the newest that has the source)")
    parser.add_argument("--json", action="store_true", help="one JSON array instead of a "
                        "table (the state line then goes to stderr)")
    return parser


def list_command(argv: Sequence[str] | None = None, *, prog: str = "unify dns list",
                 settings: CommonSettings | None = None, now_ms: Callable[[], int] | None = None) -> int:
    """``unify dns list`` (and ``unify-dns411 list``): print the rows as a table after one
    line saying whose state it is and how old (:func:`state_note`), or ``--json`` (an array
    of :meth:`Row.as_dict`, the line on stderr). Returns the exit status: 0, 1 when NATS or
    the state is unavailable (one line on stderr), 2 for bad arguments or settings.

    :param settings: connection settings (default: ``CommonSettings.from_env()``).
    :param now_ms: clock in ms since the epoch (default: ``time.time``).
    """
    args = _parser(prog).parse_args(argv)
    try:
        if settings is None:
            settings = CommonSettings.from_env()
        bucket = os.environ.get("UNIFY_DNS411_STATE_BUCKET", "") or STATE_BUCKET
        bucket_name(bucket, "UNIFY_DNS411_STATE_BUCKET")
    except ValueError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    try:
        states, warnings = asyncio.run(read_states(settings, bucket))
        for warning in warnings:
            print(f"{prog}: {warning}", file=sys.stderr)
        state = choose_state(states, args.source, args.node)
        rows = select_rows(state, args.source, args.zone)
    except (ConnectionError, StateUnavailable) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    now = now_ms() if now_ms is not None else int(time.time() * 1000)
    note = state_note(state, args.source, now_ms=now, nodes=len({s.node for s in states}))
    if args.json:
        print(note, file=sys.stderr)
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(note)
        print(format_table(rows))
    return 0
