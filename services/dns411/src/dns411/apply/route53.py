"""The Route 53 sink: read hosted zones and record sets, submit planned changes.

API calls (Route 53 API Reference): zone discovery, a step of its own (see
:meth:`Route53Sink.zones`): ListHostedZones, or one GetHostedZone per configured zone id
(``UNIFY_ROUTE53_ZONE_IDS``), once and then cached; at most one paginated
ListResourceRecordSets per zone per reconcile (300 record sets a page, the maximum; a
listing kept up to date with dns411's own changes is reused for ``max_age`` seconds), and
ChangeResourceRecordSets per batch. A batch rejected with ``InvalidChangeBatch`` (or
``InvalidInput``) is split in halves until every valid unit has landed and each bad unit is
isolated and reported (a lone unit of CREATEs is first checked: if its record sets are in
fact absent, it is sent again as UPSERT). Throttling (``Throttling``,
``PriorRequestNotComplete``), 5xx answers and lost connections are retried by botocore itself
(:func:`route53_config`: its ``standard`` or ``adaptive`` retry mode).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from unify_common.logs import get_logger
from unify_common.problems import Problem

from ..model import RecordSet
from ..names import normalize_name
from ..plan import Change, ChangeUnit, batch_units, to_boto_change

__all__ = ["Route53Result", "Route53Sink", "ZoneNotFound", "make_route53_client",
           "route53_config", "sink_for"]

log = get_logger("dns411.route53")
_REJECTED = frozenset({"InvalidChangeBatch", "InvalidInput"})


class ZoneNotFound(LookupError):
    """A configured hosted zone id does not exist (or is not visible to these credentials);
    ``str()`` names it."""


def route53_config(*, max_attempts: int = 8, retry_mode: str = "standard") -> Config:
    """The botocore client configuration of dns411's Route 53 clients: botocore's own retry
    mode (``standard``, or ``adaptive``, which also rate-limits the client while it is
    throttled) with ``max_attempts`` tries per call in all (botocore's
    ``total_max_attempts``: 1 means no retry; its ``max_attempts`` key would count retries
    only), 5 s to connect and 30 s to read.

    botocore retries throttling codes (``Throttling``, ``PriorRequestNotComplete``, ...),
    HTTP 500/502/503/504 and connection errors, waiting ``rand(0, 1) * min(scale * 2**i, 20)``
    seconds before retry ``i + 1`` (scale 1 s for throttling, 50 ms otherwise).
    """
    return Config(retries={"mode": retry_mode, "total_max_attempts": max_attempts},
                  connect_timeout=5, read_timeout=30)


def make_route53_client(region: str | None = None, *, max_attempts: int = 8,
                        retry_mode: str = "standard"):
    """A boto3 Route 53 client configured by :func:`route53_config`. Endpoint, credentials
    and region come from the AWS SDK's standard variables (``AWS_ENDPOINT_URL_ROUTE_53``/
    ``AWS_ENDPOINT_URL`` included); Route 53 is global, so the region defaults to
    ``us-east-1``."""
    session = boto3.session.Session()
    return session.client(
        "route53", region_name=region or session.region_name or "us-east-1",
        config=route53_config(max_attempts=max_attempts, retry_mode=retry_mode))


def _record_from_api(rrset: dict) -> RecordSet | None:
    if "ResourceRecords" not in rrset or "SetIdentifier" in rrset:
        return None  # alias, routing-policy sets: never dns411's
    rtype = rrset["Type"]
    values = [r["Value"] for r in rrset["ResourceRecords"]]
    if rtype == "CNAME":
        values = [normalize_name(v) for v in values]
    name = normalize_name(rrset["Name"]).replace("\\052", "*")
    return RecordSet(name, rtype, tuple(sorted(values)), int(rrset.get("TTL", 0)), "route53")


@dataclass
class Route53Result:
    """Outcome of one apply: changes that landed, units rejected, API calls made."""

    changes: int = 0
    rejected: list[Problem] = field(default_factory=list)
    api_calls: int = 0


def _log_retries(what: str, response: dict, *, failed: bool) -> None:
    """Log the retries botocore made for one call (``ResponseMetadata.RetryAttempts``)."""
    retries = response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    if retries:
        log.warning("Route 53 call retried", call=what, retries=retries, failed=failed,
            error=response.get("Error", {}).get("Code", ""))


class Route53Sink:
    """Reads and writes hosted zones through ``client`` (a boto3 Route 53 client, whose
    botocore retry configuration, e.g. :func:`route53_config`, retries transient errors).

    :param zone_ids: hosted zone ids to use (``/hostedzone/`` prefix allowed); when given,
        discovery reads exactly these with GetHostedZone and never lists zones.
    :param zone_ttl: seconds after which :meth:`zones` reads the zone list again (a zone
        created meanwhile is found); 0: never by age. Unused with ``zone_ids``.
    :param zone_refresh: seconds before the zone list may be read again early because a
        name matched no zone (``zones(refresh=True)``). Unused with ``zone_ids``.

    ``api_calls`` counts every HTTP request this sink made (botocore's retries included,
    counted on the client's ``before-send`` event); ``discovery_calls`` those of zone
    discovery.
    :meth:`zones` may run in one thread while another lists or changes record sets (the
    service discovers in the background); everything else is called from one thread.
    """

    def __init__(self, client, *, zone_ids: Sequence[str] = (), zone_ttl: float = 0.0,
                 zone_refresh: float = 60.0) -> None:
        self.client = client
        self.zone_ids = tuple(z.rsplit("/", 1)[-1] for z in zone_ids)
        self.zone_ttl = zone_ttl
        self.zone_refresh = zone_refresh
        self._zones: dict[str, str] | None = None
        self._zones_at = 0.0
        #: zone id -> (monotonic time of the listing, record sets by key), kept up to date
        #: with every change that landed
        self._listings: dict[str, tuple[float, dict[tuple[str, str], RecordSet]]] = {}
        self.api_calls = 0
        self.discovery_calls = 0
        self._zones_lock = threading.Lock()  # one discovery at a time; readers wait for it
        self._count_lock = threading.Lock()
        #: per thread: the kind of call this sink is making (None: not this sink's)
        self._calling = threading.local()
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service}", self._count_request)

    def _count_request(self, **_: Any) -> None:
        """botocore's ``before-send`` event: one HTTP request (a try) is about to go out.
        Returns None, so the request is sent."""
        discovery = getattr(self._calling, "discovery", None)
        if discovery is None:  # another sink on the same client, or a direct call
            return
        with self._count_lock:
            self.api_calls += 1
            self.discovery_calls += discovery

    def _call(self, what: str, fn: Callable[[], dict], *, discovery: bool = False) -> dict:
        self._calling.discovery = discovery
        try:
            response = fn()
        except ClientError as err:
            _log_retries(what, err.response, failed=True)
            raise
        finally:
            self._calling.discovery = None
        _log_retries(what, response, failed=False)
        return response

    def zones(self, *, refresh: bool = False) -> dict[str, str]:
        """Hosted zone id (``/hostedzone/`` stripped) -> normalised zone name.

        Discovered on the first call, then cached: read again only when older than
        ``zone_ttl`` (when set), or with ``refresh`` once older than ``zone_refresh``.
        Configured ``zone_ids`` are read once per process.

        :raises ZoneNotFound: a configured id names no hosted zone.
        :raises botocore.exceptions.ClientError: / ConnectionError: after the retries.
        """
        with self._zones_lock:
            if self._zones is not None and (self.zone_ids or not self._zones_due(refresh)):
                return dict(self._zones)
            before = self.discovery_calls
            zones = self._read_zone_ids() if self.zone_ids else self._list_zones()
            self._zones, self._zones_at = zones, time.monotonic()
            log.info("hosted zones discovered", zones=len(zones),
                api_calls=self.discovery_calls - before)
            return dict(zones)

    def _zones_due(self, refresh: bool) -> bool:
        age = time.monotonic() - self._zones_at
        return (0 < self.zone_ttl < age) or (refresh and age > self.zone_refresh)

    def _list_zones(self) -> dict[str, str]:
        zones: dict[str, str] = {}
        marker = None
        while True:
            kwargs: dict[str, str] = {"Marker": marker} if marker else {}
            page = self._call("ListHostedZones",
                              partial(self.client.list_hosted_zones, **kwargs),
                              discovery=True)
            for zone in page["HostedZones"]:
                zones[zone["Id"].rsplit("/", 1)[-1]] = normalize_name(zone["Name"])
            if not page.get("IsTruncated"):
                return zones
            marker = page["NextMarker"]

    def _read_zone_ids(self) -> dict[str, str]:
        zones: dict[str, str] = {}
        for zone_id in self.zone_ids:
            try:
                zone = self._call("GetHostedZone", partial(self.client.get_hosted_zone, Id=zone_id),
                                  discovery=True)["HostedZone"]
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") == "NoSuchHostedZone":
                    raise ZoneNotFound(f"UNIFY_ROUTE53_ZONE_IDS: no hosted zone {zone_id}") \
                        from None
                raise
            zones[zone["Id"].rsplit("/", 1)[-1]] = normalize_name(zone["Name"])
        return zones

    def list_zone(self, zone_id: str, *, max_age: float = 0.0) -> list[RecordSet]:
        """Every plain record set of the zone (aliases and routing-policy sets skipped).

        :param max_age: seconds a previous listing (updated with the changes dns411 made
            since) may be reused instead of reading the zone again; 0 always reads.
        """
        cached = self._listings.get(zone_id)
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return list(cached[1].values())
        read_at = time.monotonic()
        out: list[RecordSet] = []
        start: dict[str, str] = {}
        while True:
            kwargs = {"HostedZoneId": zone_id, "MaxItems": "300", **start}
            page = self._call("ListResourceRecordSets",
                              partial(self.client.list_resource_record_sets, **kwargs))
            out.extend(r for r in map(_record_from_api, page["ResourceRecordSets"]) if r)
            if not page.get("IsTruncated"):
                break
            start = {"StartRecordName": page["NextRecordName"],
                     "StartRecordType": page["NextRecordType"]}
            if page.get("NextRecordIdentifier"):
                start["StartRecordIdentifier"] = page["NextRecordIdentifier"]
        self._listings[zone_id] = (read_at, {r.key: r for r in out})
        return out

    def kept(self, zone_id: str) -> tuple[int, tuple[RecordSet, ...]] | None:
        """The kept listing of a zone, no API call: ``(when it was read, in ms since the
        epoch; its record sets with the changes that landed since)``, or ``None`` when none
        is kept (never read, or dropped after a rejected or failed change)."""
        cached = self._listings.get(zone_id)
        if cached is None:
            return None
        read_ms = int((time.time() - (time.monotonic() - cached[0])) * 1000)
        return read_ms, tuple(cached[1].values())

    def forget(self) -> None:
        """Drop kept listings (another writer may change the zones meanwhile)."""
        self._listings.clear()

    def _landed(self, zone_id: str, units: Sequence[ChangeUnit]) -> None:
        cached = self._listings.get(zone_id)
        if cached is None:
            return
        for unit in units:
            for change in unit.changes:
                rec = change.record
                if change.action == "DELETE":
                    cached[1].pop(rec.key, None)
                else:
                    cached[1][rec.key] = RecordSet(rec.name, rec.type, rec.values, rec.ttl,
                                                   "route53")

    def _absent(self, zone_id: str, rec: RecordSet) -> bool:
        """True when the zone holds no record set ``(rec.name, rec.type)`` right now."""
        page = self._call("ListResourceRecordSets", lambda: self.client.list_resource_record_sets(
            HostedZoneId=zone_id, StartRecordName=rec.name + ".", StartRecordType=rec.type,
            MaxItems="1"))
        first = next(iter(page["ResourceRecordSets"]), None)
        return first is None or (normalize_name(first["Name"]), first["Type"]) != rec.key

    def _rejected(self, zone_id: str, unit: ChangeUnit, err: ClientError,
                  result: Route53Result, creates_checked: bool) -> None:
        if not creates_checked and all(c.action == "CREATE" for c in unit.changes) \
                and all(self._absent(zone_id, c.record) for c in unit.changes):
            # Route 53 refuses a CREATE only when the record set exists; if a fresh look
            # shows it absent (moto refuses a CREATE identical to an earlier one), the names
            # are free: send the unit again as UPSERT.
            upsert = ChangeUnit(unit.zone_id, unit.what,
                                tuple(Change("UPSERT", c.record) for c in unit.changes))
            self._submit(zone_id, [upsert], result, creates_checked=True)
            return
        code = err.response.get("Error", {}).get("Code", "")
        message = err.response.get("Error", {}).get("Message", "")[:300]
        log.error("Route 53 rejected a change", zone=zone_id, record=unit.what, error=message)
        result.rejected.append(Problem("change-rejected", f"{unit.what}: {code}: {message}"))

    def _submit(self, zone_id: str, units: Sequence[ChangeUnit], result: Route53Result,
                *, creates_checked: bool = False) -> None:
        changes = [to_boto_change(c) for u in units for c in u.changes]
        try:
            self._call("ChangeResourceRecordSets", lambda: self.client.change_resource_record_sets(
                HostedZoneId=zone_id,
                ChangeBatch={"Comment": "dns411", "Changes": changes}))
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code not in _REJECTED:
                raise
            self._listings.pop(zone_id, None)  # the zone differs from what dns411 believed
            if len(units) == 1:
                self._rejected(zone_id, units[0], err, result, creates_checked)
                return
            half = len(units) // 2
            self._submit(zone_id, units[:half], result)
            self._submit(zone_id, units[half:], result)
            return
        self._landed(zone_id, units)
        result.changes += len(changes)

    def apply(self, units: Sequence[ChangeUnit]) -> Route53Result:
        """Submit ``units`` zone by zone in quota-sized batches.

        :raises botocore.exceptions.ClientError: / ConnectionError: a transient error
            outlasted the retries, or another error; earlier batches stay applied.
        """
        before = self.api_calls
        result = Route53Result()
        by_zone: dict[str, list[ChangeUnit]] = {}
        for unit in units:
            by_zone.setdefault(unit.zone_id, []).append(unit)
        try:
            for zone_id in sorted(by_zone):
                batches, too_big = batch_units(by_zone[zone_id])
                for unit in too_big:
                    result.rejected.append(Problem(
                        "change-rejected",
                        f"{unit.what}: larger than one ChangeResourceRecordSets request allows"))
                for batch in batches:
                    self._submit(zone_id, batch, result)
        except Exception:
            self._listings.clear()  # unknown what landed: read the zones next time
            raise
        result.api_calls = self.api_calls - before
        return result


def sink_for(settings, client=None) -> Route53Sink:
    """The sink ``settings`` (a :class:`~dns411.settings.Dns411Settings`) ask for, on
    ``client`` or a new client from :func:`make_route53_client`."""
    client = client or make_route53_client(max_attempts=settings.max_attempts,
                                           retry_mode=settings.retry_mode)
    return Route53Sink(client, zone_ids=settings.zone_ids,
                       zone_ttl=settings.zone_ttl)
