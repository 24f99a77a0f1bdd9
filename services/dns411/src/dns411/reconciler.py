"""One reconcile: catalog state -> desired records -> dnsmasq and Route 53, with reports.

Level-triggered: every call starts from the whole catalog. Problems (skipped instances,
rejected changes, failed applies) are logged and published as ``ErrorEvent`` once each
while they persist; after every call an ``Applied`` event is published, except an
``unchanged`` one equal to the report before it (a quiet periodic tick says nothing new).
A failed sink makes the call raise *after* the other sink ran, so the subscriber retries
with backoff.

Route 53 is planned only when the desired records changed since the last verified apply or
``UNIFY_ROUTE53_RESYNC`` seconds passed. Zones are planned against a listing kept up to date
with dns411's own changes, read again (one listing per zone) once older than that, so drift
made by hand heals then. (The Route 53 API allows five requests per second per account; a
10,000-record zone takes 67 pages to list.)
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from unify_common import subjects
from unify_common.events import Applied, Event
from unify_common.logs import get_logger
from unify_common.problems import Problem, ProblemReporter
from unify_common.state import CatalogState

from .apply.dnsmasq import DnsmasqConfigError, DnsmasqSink
from .apply.route53 import Route53Sink
from .desired import build_desired
from .listing import Served
from .model import Desired, RecordSet
from .plan import Route53Plan, plan_route53, to_boto_change
from .render import render_conf, render_hosts
from .settings import Dns411Settings
from .static import records_from_hosts, records_from_kv
from .verdicts import Judged

if TYPE_CHECKING:
    from .apply.lock import WriterLock
    from .verdict_mirror import VerdictMirror

__all__ = ["ApplyFailed", "Reconciler"]

log = get_logger("dns411")
Publish = Callable[[str, Event, str], Awaitable[None]]


class ApplyFailed(RuntimeError):
    """At least one sink failed; the message lists them (the subscriber retries)."""


class Reconciler:
    """Callable ``await reconciler(state)``; see the module doc.

    :param publish: ``async (subject, event, msg_id)``; ``None`` only logs.
    """

    def __init__(self, settings: Dns411Settings, *, node: str,
                 dnsmasq: DnsmasqSink | None = None, route53: Route53Sink | None = None,
                 publish: Publish | None = None) -> None:
        self.settings = settings
        self.node = node
        self.dnsmasq = dnsmasq
        self.route53 = route53
        #: logs and publishes each new problem once while it persists
        self.reporter = ProblemReporter("dns411", node, publish)
        self.publish = publish
        #: a :class:`~dns411.apply.lock.WriterLock`; Route 53 is written only while it holds
        self.lock: WriterLock | None = None
        #: ``(Served) -> None``, called after every reconcile (the service publishes it)
        self.on_served: Callable[[Served], None] | None = None
        self._r53_zones: dict[str, str] = {}  # managed zones of the last plan
        self._planned: dict[str, tuple[int, tuple[RecordSet, ...]]] = {}  # their listings
        self._held: dict[str, tuple[int, tuple[RecordSet, ...]]] = {}  # last known
        self._last_report: tuple[str, str, str] = ("", "", "")  # (method, hash, detail)
        self._r53_key = ""  # desired records last verified in Route 53, and when
        self._r53_at = 0.0
        self._r53_problems: list[Problem] = []
        self.last_plan: Route53Plan | None = None
        #: ``() -> context manager`` timing each sink apply (the service sets
        #: Health.time_apply)
        self.time_apply: Callable[[], AbstractContextManager[object]] = nullcontext
        self.last_desired: Desired | None = None
        #: switchboard's verdicts (a :class:`~dns411.verdict_mirror.VerdictMirror`, set by the
        #: service); ``None``: none, only the shared listener rule applies
        self.verdicts: VerdictMirror | None = None
        self._judged_used: Judged | None = None  # what the last desired state was built with

    def _static_layers(self, state: CatalogState) -> tuple[list, list[Problem]]:
        s = self.settings
        kv_records, problems = records_from_kv(state.kv, s.static_prefix, s.ttl)
        file_records: list[RecordSet] = []
        for path in s.static_files:
            try:
                text = Path(path).read_text(errors="replace")
            except OSError as err:
                problems.append(Problem("invalid-static", f"{path}: {err.strerror}"))
                continue
            recs, probs = records_from_hosts(text, str(path), s.ttl)
            problems.extend(probs)
            file_records.extend(recs)
        # one hosts file may repeat a name of another: merge values per (name, type)
        merged: dict[tuple[str, str], set[str]] = {}
        for rec in file_records:
            merged.setdefault(rec.key, set()).update(rec.values)
        files = [RecordSet(n, t, tuple(sorted(v)), s.ttl, "file")
                 for (n, t), v in sorted(merged.items())]
        return [kv_records, files], problems

    def desired(self, state: CatalogState) -> Desired:
        """The desired records for ``state`` (catalog + static sources)."""
        s = self.settings
        layers, problems = self._static_layers(state)
        verdicts = self.verdicts
        self._judged_used = verdicts.judged() if verdicts is not None else None
        return build_desired(
            state, ttl=s.ttl, haproxy_service=s.haproxy_service,
            haproxy_label=s.haproxy_label, static_layers=layers, static_problems=problems,
            rejected=verdicts.rejected() if verdicts is not None else None,
            judged=self._judged_used)

    def render(self, desired: Desired) -> tuple[bytes, bytes]:
        """``(hosts file, conf file)`` bytes."""
        return (render_hosts(desired.records),
                render_conf(desired.records, ttl=self.settings.ttl,
                            consul_dns=self.settings.consul_dns,
                            local_domains=self.settings.local_domains))

    async def discover_zones(self) -> None:
        """Read the hosted zones now if due (never read, or older than
        ``UNIFY_ROUTE53_ZONE_TTL``), apart from reconciles: the service runs it in the
        background at start and before each tick, so a reconcile's own API calls are its
        zone listings and change batches. It does not wait for a running reconcile, nor
        does a reconcile wait for it until it plans Route 53 (dnsmasq is never delayed by
        Route 53). A failure is logged; the next plan discovers again (inside that
        reconcile, with the retries of every call)."""
        if self.route53 is None:
            return
        try:
            await asyncio.to_thread(self.route53.zones)
        except Exception as err:
            log.warning("hosted zone discovery failed", error=f"{type(err).__name__}: {str(err)[:300]}")

    def plan_route53(self, desired: Desired) -> Route53Plan:
        """Read the managed zones (one listing each) and plan the changes (blocking I/O).
        Zones come from the sink's cache (discovered there first when never read)."""
        sink = self.route53
        if sink is None:
            raise RuntimeError("plan_route53 needs a Route 53 sink")
        zones = self._managed(sink.zones())
        plan = self._plan(desired, zones, sink)
        if plan.unzoned:
            refreshed = self._managed(sink.zones(refresh=True))
            if refreshed != zones:
                plan = self._plan(desired, refreshed, sink)
        return plan

    def _managed(self, zones: dict[str, str]) -> dict[str, str]:
        wanted = self.settings.zones
        if not wanted:
            return zones
        return {zid: name for zid, name in zones.items()
                if name in wanted or zid.lower() in wanted}

    def _plan(self, desired: Desired, zones: dict[str, str], sink: Route53Sink) -> Route53Plan:
        existing = {zid: sink.list_zone(zid, max_age=self.settings.route53_resync)
                    for zid in sorted(zones)}
        self._r53_zones = dict(zones)
        self._planned = {zid: kept for zid in zones if (kept := sink.kept(zid)) is not None}
        return plan_route53(desired.records, zones, existing, owner_id=self.settings.owner_id,
                            policy=self.settings.policy, domains=desired.domains)

    @property
    def publish(self) -> Publish | None:
        """``async (subject, event, msg_id)`` or ``None``: where reports and problems go."""
        return self._publish

    @publish.setter
    def publish(self, publish: Publish | None) -> None:
        self._publish = publish
        self.reporter.publish = publish

    def _served(self, desired: Desired, revision: int, standby: bool) -> Served:
        """What this reconcile leaves served (for the published state, no I/O)."""
        if self.route53 is None or standby:
            return Served(desired.records, revision, "off" if self.route53 is None else "standby")
        for zid in self._r53_zones:
            kept = self.route53.kept(zid) or self._planned.get(zid)
            if kept is not None:
                self._held[zid] = kept
        self._held = {zid: v for zid, v in self._held.items() if zid in self._r53_zones}
        return Served(desired.records, revision, "on", dict(self._r53_zones), dict(self._held))

    async def __call__(self, state: CatalogState) -> None:
        # One caller: the subscriber shell's loop (a lock takeover asks it for a reconcile),
        # so calls never overlap.
        await self._reconcile(state)

    def _desired_and_files(self, state: CatalogState) -> tuple[Desired, bytes, bytes]:
        desired = self.desired(state)
        return (desired, *self.render(desired))

    async def _reconcile(self, state: CatalogState) -> None:
        # CPU-bound at large catalogs and reads static files: keep it off the event loop
        started = time.perf_counter()
        desired, hosts, conf = await asyncio.to_thread(self._desired_and_files, state)
        if self.verdicts is not None:  # a newer verdict covering them asks for a reconcile
            self.verdicts.hold(desired.pending, self._judged_used)
        render_ms = round((time.perf_counter() - started) * 1000, 1)
        self.last_desired = desired
        problems = list(desired.problems)
        failures: list[str] = []
        dnsmasq_method = "off"
        if self.dnsmasq is not None:
            try:
                with self.time_apply():
                    applied = await asyncio.to_thread(self.dnsmasq.apply, hosts, conf)
                dnsmasq_method = applied.method
                if applied.did_write:
                    log.info("dnsmasq files applied", method=applied.method,
                        revision=state.revision,
                        steps_ms={"render": render_ms, **applied.steps_ms})
                if applied.warning:
                    problems.append(Problem("restart-needed", applied.warning))
            except DnsmasqConfigError as err:
                problems.append(Problem("config-check-failed", str(err)))
                failures.append("dnsmasq config check")
            except (OSError, RuntimeError) as err:
                problems.append(Problem("apply-failed", f"dnsmasq: {err}"))
                failures.append("dnsmasq")
        changes = -1
        standby = self.lock is not None and not self.lock.holding
        if standby and self.route53 is not None:
            self._r53_key = ""  # another dns411 writes: read everything once the lock is won
            self.route53.forget()
        if self.route53 is not None and not standby:
            r53_key = hashlib.sha256(msgspec.json.encode(desired.records)).hexdigest()
            fresh = (r53_key == self._r53_key
                     and time.monotonic() - self._r53_at < self.settings.route53_resync)
            if fresh:  # same desired records, recently verified: no API call at all
                problems.extend(self._r53_problems)
                changes = 0
            else:
                try:
                    plan = await asyncio.to_thread(self.plan_route53, desired)
                    self.last_plan = plan
                    with self.time_apply():
                        result = await asyncio.to_thread(self.route53.apply, plan.units)
                    changes = result.changes
                    r53_problems = list(plan.problems) + result.rejected
                    problems.extend(r53_problems)
                    if not result.rejected:
                        self._r53_key, self._r53_at = r53_key, time.monotonic()
                        self._r53_problems = r53_problems
                except Exception as err:  # transient after retries, credentials, or down
                    self._r53_key = ""
                    problems.append(Problem("apply-failed", f"route53: {type(err).__name__}: "
                                            f"{str(err)[:300]}"))
                    failures.append("route53")
        await self.reporter.report(problems)
        digest = hashlib.sha256(hosts + b"\0" + conf).hexdigest()
        method = ("reload" if dnsmasq_method in ("reload", "restart")
                  else "runtime" if changes > 0 else "unchanged")
        detail = f"dnsmasq={dnsmasq_method} route53_changes={max(changes, 0)}"
        if standby and self.route53 is not None:
            detail = f"dnsmasq={dnsmasq_method} route53=standby"
        if failures:
            detail += f" failed={','.join(failures)}"
        report = (method, digest, detail)
        # the same "nothing to do" as the last report (a quiet tick) is not news
        repeated = method == "unchanged" and report == self._last_report
        self._last_report = report
        if self.publish is not None and not repeated:
            await self.publish(subjects.applied_subject("dns411", self.node), Applied(
                source="dns411", node=self.node, method=method, config_hash=digest,
                detail=detail, observed_at=int(time.time() * 1000)),
                f"dns411:applied:{self.node}:{state.revision}:{digest}:{time.time_ns()}")
        if self.on_served is not None:
            self.on_served(self._served(desired, state.revision, standby))
        if failures:
            raise ApplyFailed(f"dns411 apply failed: {', '.join(failures)}")

    def dry_run(self, state: CatalogState) -> str:
        """The plan as text (file diffs and Route 53 changes); nothing is written."""
        desired = self.desired(state)
        hosts, conf = self.render(desired)
        out: list[str] = [f"# {len(desired.records)} record sets desired"]
        for p in desired.problems:
            out.append(f"# problem ({p.reason}): {p.message}")
        if self.dnsmasq is not None:
            for path, new in ((self.settings.hosts_path, hosts),
                              (self.settings.conf_path, conf)):
                try:
                    old = path.read_text()
                except FileNotFoundError:
                    old = ""
                out.extend(line.rstrip("\n") for line in difflib.unified_diff(
                    old.splitlines(True), new.decode().splitlines(True),
                    fromfile=str(path), tofile=f"{path} (desired)"))
        if self.route53 is not None:
            plan = self.plan_route53(desired)
            for p in plan.problems:
                out.append(f"# route53 skipped ({p.reason}): {p.message}")
            for unit in plan.units:
                for ch in unit.changes:
                    rrs = to_boto_change(ch)["ResourceRecordSet"]
                    values = ",".join(r["Value"] for r in rrs["ResourceRecords"])
                    out.append(f"route53 {unit.zone_id} {ch.action} {rrs['Name']} "
                               f"{rrs['Type']} {rrs['TTL']} {values}")
            if not plan.units:
                out.append("# route53: no changes")
        return "\n".join(out) + "\n"
