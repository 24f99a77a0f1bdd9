"""Safe garbage collection of the shared registry storage.

distribution's ``registry garbage-collect`` must not run while any instance accepts writes
(a blob uploaded during the mark phase is swept although a manifest is about to reference
it; see distribution's "Garbage collection" page). :func:`run_gc` therefore:

1. collects the *protected* manifests (digests of running Swarm tasks, plus what a hook adds,
   e.g. wireline's last releases) and the blobs they reference;
2. (not for a dry run) re-renders the registry configuration with
   ``storage.maintenance.readonly.enabled: true`` and restarts every instance, one at a time,
   checking that each refuses an upload (405) before the next;
3. runs ``garbage-collect --dry-run`` and **refuses** when a protected manifest or blob is
   eligible for deletion;
4. runs the real sweep;
5. goes back to read-write (again one instance at a time) — also when any step failed;
6. verifies every protected manifest and its blobs still answer through the registry API.

Every step is published as a :class:`~unify_common.events.RegistryStep` (operation ``gc``).
The output format parsed is what distribution 2.8's ``garbagecollect.go`` prints:
``<repo>: marking manifest <digest>``, ``<repo>: marking blob <digest>``,
``manifest eligible for deletion: <digest>``, ``blob eligible for deletion: <digest>`` and
the summary line ``N blobs marked, M blobs and K manifests eligible for deletion``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from unify_common.logs import get_logger

from . import pki, plan, store
from .ops import Operator
from .registry_api import RegistryClient, RegistryError

__all__ = ["GcOutcome", "GcReport", "parse_gc_output", "parse_image_ref", "protected_conflicts",
           "run_gc", "swarm_protected"]

log = get_logger("registry_admin.gc")
_DIGEST = r"sha(?:256|384|512):[0-9a-f]{64,128}"
_ELIGIBLE = re.compile(rf"^(blob|manifest) eligible for deletion: ({_DIGEST})\s*$")
_MARK = re.compile(rf"^(\S+): marking (blob|manifest) ({_DIGEST})\s*$")
_SUMMARY = re.compile(r"^\d+ blobs marked, \d+ blobs and \d+ manifests eligible for deletion")
#: (repository, manifest digest)
Ref = tuple[str, str]
Hook = Callable[[], Awaitable[set[Ref]]]


@dataclass
class GcReport:
    """What ``garbage-collect`` printed: marked and eligible digests, the summary line."""

    marked_manifests: set[Ref] = field(default_factory=set)
    marked_blobs: set[str] = field(default_factory=set)
    eligible_manifests: set[str] = field(default_factory=set)
    eligible_blobs: set[str] = field(default_factory=set)
    summary: str = ""


def parse_gc_output(text: str) -> GcReport:
    """Parse ``garbage-collect`` output (see module doc); unknown lines are ignored."""
    report = GcReport()
    for line in text.splitlines():
        line = line.strip()
        if m := _ELIGIBLE.match(line):
            (report.eligible_blobs if m.group(1) == "blob"
             else report.eligible_manifests).add(m.group(2))
        elif m := _MARK.match(line):
            if m.group(2) == "blob":
                report.marked_blobs.add(m.group(3))
            else:
                report.marked_manifests.add((m.group(1), m.group(3)))
        elif _SUMMARY.match(line):
            report.summary = line
    return report


def protected_conflicts(report: GcReport, protected: dict[Ref, set[str] | None]) -> list[str]:
    """Why the sweep would hurt a protected manifest: it is eligible for deletion, one of its
    blobs is, or it is missing already (``None``: it could not be read). Sorted reasons."""
    out = []
    for (repo, digest), blobs in sorted(protected.items()):
        if blobs is None:
            out.append(f"{repo}@{digest} is protected but not in the registry")
            continue
        if digest in report.eligible_manifests or digest in report.eligible_blobs:
            out.append(f"{repo}@{digest} is protected but eligible for deletion (untagged)")
        for blob in sorted(blobs & report.eligible_blobs):
            out.append(f"blob {blob} of protected {repo}@{digest} is eligible for deletion")
    return out


_REF = re.compile(r"^(?:(?P<host>[^/]+\.[^/]+|[^/]+:\d+|localhost)/)?(?P<repo>[a-z0-9][^:@]*)"
                  rf"(?::(?P<tag>[\w][\w.-]{{0,127}}))?(?:@(?P<digest>{_DIGEST}))?$")


def parse_image_ref(ref: str) -> tuple[str, str, str, str] | None:
    """``host[:port]/repo[:tag][@digest]`` -> (host without port, repo, tag, digest);
    ``None`` when it is not such a reference. The host is ``""`` for Docker Hub names."""
    m = _REF.match(ref.strip())
    if not m:
        return None
    host = (m.group("host") or "").rsplit(":", 1)[0] if m.group("host") else ""
    if host.startswith("["):
        host = (m.group("host") or "").rsplit("]", 1)[0] + "]"
    return host.lower(), m.group("repo"), m.group("tag") or "", m.group("digest") or ""


def swarm_protected(names: set[str], *, timeout: float = 30.0,
                    environment: dict[str, str] | None = None) -> set[tuple[str, str, str]]:
    """(repo, tag, digest) of the image of every Swarm task whose desired state is
    ``running`` and whose registry host is one of ``names`` (the registry cluster's names:
    the certificate's SANs). Uses the Docker API (``DOCKER_HOST`` of ``environment``,
    default the process environment).

    :raises docker.errors.DockerException: the engine is unreachable.
    """
    import docker

    client = docker.from_env(timeout=int(timeout), environment=environment)
    try:
        tasks = client.api.tasks(filters={"desired-state": "running"})
    finally:
        client.close()
    out = set()
    for task in tasks:
        image = (((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") or "")
        parsed = parse_image_ref(image)
        if parsed and parsed[0] in names:
            out.add(parsed[1:])
    return out


@dataclass
class GcOutcome:
    """``status`` is ``ok``, ``refused`` or ``failed``; ``reasons`` say why; ``report`` is
    the dry run's (or the sweep's, after one)."""

    run_id: str
    status: str
    reasons: list[str]
    report: GcReport | None = None
    protected: dict[Ref, set[str] | None] = field(default_factory=dict)


async def _blobs_of(reg: RegistryClient, repo: str, digest: str, depth: int = 0
                    ) -> set[str] | None:
    manifest = await reg.manifest(repo, digest)
    if manifest is None:
        return None
    body = manifest.body
    blobs = {p["digest"] for p in [body.get("config") or {}] + list(body.get("layers") or [])
             if isinstance(p, dict) and isinstance(p.get("digest"), str)}
    for child in body.get("manifests") or []:
        if depth < 1 and isinstance(child, dict) and isinstance(child.get("digest"), str):
            sub = await _blobs_of(reg, repo, child["digest"], depth + 1)
            if sub is None:
                return None
            blobs |= sub
    return blobs


async def _registry_command(op: Operator, *args: str) -> tuple[int, str]:
    s = op.settings
    proc = await asyncio.create_subprocess_exec(
        s.registry_bin, "garbage-collect", *args, str(s.config_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), s.gc_timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"garbage-collect did not finish within {s.gc_timeout:g}s"
    return await proc.wait(), out.decode(errors="replace")  # exited: wait() has its status


async def _refuses_writes(node: plan.Node, ca_file: str) -> bool:
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5),
                                     connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        url = f"https://{node.endpoint}/v2/unify-gc-probe/blobs/uploads/"
        async with http.post(url) as resp:
            if resp.status == 202:  # not read-only: cancel the upload it just started
                location = resp.headers.get("Location", "")
                if location.startswith("/"):
                    location = f"https://{node.endpoint}{location}"
                async with http.delete(location):
                    pass
            return resp.status == 405


async def _set_mode(op: Operator, nodes: list[plan.Node], run_id: str, *, read_only: bool
                    ) -> str | None:
    """Render the config and roll every instance; ``None`` or the reason it failed."""
    step = "read-only" if read_only else "read-write"
    await op.step("gc", run_id, step, "started")
    try:  # only the flag changes: the rest stays as registry-admin rendered it
        store.set_read_only(op.settings.config_file, read_only)
    except (OSError, ValueError) as err:
        await op.step("gc", run_id, step, "failed", str(err))
        return f"cannot switch the registry configuration: {err}"
    server = store.read_server(op.settings.tls_dir_path)
    if server is None:
        await op.step("gc", run_id, step, "failed", "no server certificate")
        return "no server certificate: registry-admin has not issued one yet"
    if op.restarter is None:
        await op.step("gc", run_id, step, "failed", "UNIFY_REGISTRY_RESTART=none")
        return "cannot switch the registries: UNIFY_REGISTRY_RESTART is none"
    if not await op.roll(nodes, pki.cert_fingerprint(server.cert_pem), operation="gc",
                         run_id=run_id):
        await op.step("gc", run_id, step, "failed", "an instance did not come back")
        return f"switching to {step} failed: an instance did not come back"
    if read_only:
        for node in nodes:
            try:
                refused = await _refuses_writes(node, str(op.settings.verify_ca))
            except (TimeoutError, aiohttp.ClientError) as err:
                refused, why = False, repr(err)
            else:
                why = "it accepted an upload"
            if not refused:
                await op.step("gc", run_id, step, "failed", why, node.name)
                return f"{node.name} is not read-only ({why})"
    await op.step("gc", run_id, step, "ok", f"{len(nodes)} instances")
    return None


async def run_gc(op: Operator, nodes: list[plan.Node], *, dry_run: bool,
                 delete_untagged: bool, protected_refs: set[Ref],
                 hooks: tuple[Hook, ...] = ()) -> GcOutcome:
    """Run the garbage collection described in the module doc.

    :param nodes: the registry instances (from the catalog), restarted one at a time.
    :param protected_refs: (repository, digest or tag) that must stay pullable; tags are
        resolved to digests first.
    :param hooks: more protected references, e.g. wireline's last N releases per app.
    :returns: the outcome; the registries are read-write again whatever happened.
    """
    run_id = uuid.uuid4().hex[:12]
    s = op.settings
    if not dry_run and not nodes:
        await op.step("gc", run_id, "protect", "refused", "no registry instance in the catalog")
        return GcOutcome(run_id, "refused", ["no registry instance in the catalog: the "
                                             "instances cannot be switched to read-only"])
    refs = set(protected_refs)
    for hook in hooks:
        refs |= await hook()
    protected: dict[Ref, set[str] | None] = {}
    async with RegistryClient(s.registry_url, s.verify_ca, timeout=10.0) as reg:
        try:
            for repo, ref in sorted(refs):
                digest = ref if ref.startswith("sha") else (await reg.resolve(repo, ref) or "")
                protected[(repo, digest or ref)] = (await _blobs_of(reg, repo, digest)
                                                    if digest else None)
        except RegistryError as err:
            await op.step("gc", run_id, "protect", "failed", str(err))
            return GcOutcome(run_id, "failed", [f"cannot read protected manifests: {err}"])
    await op.step("gc", run_id, "protect", "ok", f"{len(protected)} protected manifests")
    flags = ["--delete-untagged"] if delete_untagged else []
    outcome = GcOutcome(run_id, "ok", [], protected=protected)
    switched = False
    try:
        if not dry_run:
            switched = True
            why = await _set_mode(op, nodes, run_id, read_only=True)
            if why:
                outcome.status, outcome.reasons = "failed", [why]
                return outcome
        code, text = await _registry_command(op, "--dry-run", *flags)
        if code != 0:
            await op.step("gc", run_id, "dry-run", "failed", text[-300:].strip())
            outcome.status, outcome.reasons = "failed", [f"dry run failed: {text[-300:]}"]
            return outcome
        outcome.report = parse_gc_output(text)
        await op.step("gc", run_id, "dry-run", "ok", outcome.report.summary)
        conflicts = protected_conflicts(outcome.report, protected)
        if conflicts:
            await op.step("gc", run_id, "check", "refused", "; ".join(conflicts)[:1000])
            outcome.status, outcome.reasons = "refused", conflicts
            return outcome
        await op.step("gc", run_id, "check", "ok", "no protected digest would go")
        if dry_run:
            return outcome
        await op.step("gc", run_id, "sweep", "started")
        code, text = await _registry_command(op, *flags)
        if code != 0:
            await op.step("gc", run_id, "sweep", "failed", text[-300:].strip())
            outcome.status, outcome.reasons = "failed", [f"sweep failed: {text[-300:]}"]
            return outcome
        outcome.report = parse_gc_output(text)
        await op.step("gc", run_id, "sweep", "ok", outcome.report.summary)
    finally:
        if switched:
            why = await _set_mode(op, nodes, run_id, read_only=False)
            if why:
                outcome.status = "failed"
                outcome.reasons.append(why)
    if outcome.status == "ok" and not dry_run:
        missing = []
        async with RegistryClient(s.registry_url, s.verify_ca, timeout=10.0) as reg:
            for (repo, digest), blobs in sorted(protected.items()):
                try:
                    if await _blobs_of(reg, repo, digest) != blobs or not await _blobs_pull(
                            reg, repo, blobs or set()):
                        missing.append(f"{repo}@{digest}")
                except RegistryError as err:
                    missing.append(f"{repo}@{digest} ({err})")
        if missing:
            await op.step("gc", run_id, "verify", "failed", ", ".join(missing)[:1000])
            outcome.status = "failed"
            outcome.reasons.append("protected digests do not pull: " + ", ".join(missing))
        else:
            await op.step("gc", run_id, "verify", "ok",
                          f"{len(protected)} protected manifests pull")
    return outcome


async def _blobs_pull(reg: RegistryClient, repo: str, blobs: set[str]) -> bool:
    for blob in sorted(blobs):
        if not await reg.blob_exists(repo, blob):
            return False
    return True
