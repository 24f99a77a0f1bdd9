"""``unify registry``: the private registry cluster (see ``services/registry-admin``).

* ``unify registry ls [REPO] [--json] [--page-size N]`` — repositories, tags, digests, sizes
  (config + layers, bytes) and the last push (from the ``image.pushed`` events; ``-`` when
  NATS is unreachable or the push predates the stream). Repositories and tags are listed
  following the ``Link`` pagination of ``/v2/_catalog`` and ``/v2/<name>/tags/list``.
* ``unify registry gc [--dry-run] [--delete-untagged]`` — safe garbage collection (read-only
  rolling restart, dry run, refusal when a protected digest would go, sweep, read-write,
  verification); every step is printed and published. Runs where the registry storage and
  registry-admin's state directory are (e.g. ``docker exec`` into registry-admin).

Settings: registry-admin's ``UNIFY_REGISTRY_*`` variables (``UNIFY_REGISTRY_URL``,
``UNIFY_REGISTRY_CA_FILE``, ...) and the usual NATS ones. Exit status 0 on success, 1 on a
failure or refusal, 2 on usage or settings errors.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path

from unify_common.events import ImagePushed, decode_event

from .errors import EXIT_FAILURE, EXIT_USAGE
from .errors import line as error_line
from .errors import reason as short_reason

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unify registry",
                                     description="The private registry cluster.")
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("ls", help="repositories, tags, digests, sizes, last push")
    ls.add_argument("repository", nargs="?", help="only this repository")
    ls.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    ls.add_argument("--page-size", type=int, default=100, help=argparse.SUPPRESS)
    gc = sub.add_parser("gc", help="garbage-collect the shared storage safely")
    gc.add_argument("--dry-run", action="store_true",
                    help="only report what would be deleted (registries stay read-write)")
    gc.add_argument("--delete-untagged", action="store_true",
                    help="also delete manifests no tag points to (distribution's -m)")
    return parser


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


async def _last_pushes(settings, timeout: float = 5.0) -> dict[tuple[str, str], int] | None:
    """(repository, tag) -> newest ``pushed_at`` (ms) from the stream; ``None`` when NATS
    cannot be reached. Reads the pushed events once, bounded in time."""
    import time

    from nats.errors import TimeoutError as NatsTimeoutError
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from unify_common.natsio import connect_nats
    from unify_common.subjects import registry_image_subject

    try:
        nc = await connect_nats(settings, name="unify-cli-registry", fail_fast=True)
    except Exception:
        return None
    out: dict[tuple[str, str], int] = {}
    try:
        js = nc.jetstream()
        subject = registry_image_subject("pushed")
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0,
                                filter_subject=subject, mem_storage=True,
                                deliver_policy=DeliverPolicy.ALL)
        psub = await js.pull_subscribe(subject, stream=settings.stream, config=config)
        pending = (await psub.consumer_info()).num_pending
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            try:
                msgs = await psub.fetch(batch=512, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):
                break
            for msg in msgs:
                pending = msg.metadata.num_pending
                try:
                    event = decode_event(msg.data)
                except Exception:
                    continue
                if isinstance(event, ImagePushed) and event.tag:
                    key = (event.repository, event.tag)
                    out[key] = max(out.get(key, 0), event.pushed_at or event.observed_at)
        await psub.unsubscribe()
    except Exception:
        return None
    finally:
        await nc.close()
    return out


async def _ls(settings, repository: str | None, page_size: int) -> list[dict]:
    from registry_admin.registry_api import RegistryClient

    rows: list[dict] = []
    pushes = await _last_pushes(settings.common)
    async with RegistryClient(settings.registry_url, settings.verify_ca) as reg:
        repos = [repository] if repository else await reg.repositories(page_size)
        for repo in repos:
            for tag in sorted(await reg.tags(repo, page_size)):
                manifest = await reg.manifest(repo, tag)
                if manifest is None:
                    continue  # deleted between the listing and now
                last = (pushes or {}).get((repo, tag))
                rows.append({
                    "repository": repo, "tag": tag, "digest": manifest.digest,
                    "size": manifest.size, "media_type": manifest.media_type,
                    "last_push": (dt.datetime.fromtimestamp(last / 1000, dt.UTC)
                                  .isoformat(timespec="seconds").replace("+00:00", "Z")
                                  if last else None),
                })
    return rows


def _table(rows: list[dict]) -> str:
    header = ("REPOSITORY", "TAG", "DIGEST", "SIZE", "LAST PUSH")
    lines = [header] + [(r["repository"], r["tag"], r["digest"][:19], _size(r["size"]),
                         r["last_push"] or "-") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines)


async def _gc(settings, *, dry_run: bool, delete_untagged: bool) -> int:
    from registry_admin import gc, pki, plan, store
    from registry_admin.ops import Operator, restarter_from_settings
    from unify_common.catalog import read_catalog
    from unify_common.natsio import connect_nats, ensure_catalog_bucket, unreachable_message

    op = Operator(settings, restarter=restarter_from_settings(settings))

    def show(operation: str, step: str, status: str, detail: str, instance: str) -> None:
        where = f" {instance}" if instance else ""
        print(f"{step}{where}: {status}" + (f" ({detail})" if detail else ""), flush=True)

    op.on_step = show
    nc = None
    try:
        nc = await connect_nats(settings.common, name="unify-cli-registry-gc", fail_fast=True)
    except Exception as err:
        if not dry_run:
            print(f"unify registry gc: {unreachable_message(settings.common, err)}; the "
                  "registry instances come from the catalog", file=sys.stderr)
            return 1
        print("unify registry gc: NATS unreachable; steps are not published", file=sys.stderr)
    try:
        nodes: list = []
        if nc is not None:
            op.js = nc.jetstream()
            bucket = await ensure_catalog_bucket(op.js, settings.common)
            nodes, _ = plan.registry_nodes(await read_catalog(bucket), settings.service)
        server = store.read_server(settings.tls_dir)
        names = set(pki.sans_of(server.cert).dns) if server else set()
        refs: set[tuple[str, str]] = set()
        try:
            for repo, tag, digest in await asyncio.to_thread(gc.swarm_protected, names):
                refs.add((repo, digest or tag))
        except Exception as err:  # docker unreachable: only a dry run may go on
            if not dry_run:
                print(error_line("unify registry gc", f"cannot list running Swarm tasks "
                                                f"({short_reason(err)}); refusing"), file=sys.stderr)
                return 1
            print(error_line("unify registry gc",
                             f"cannot list running Swarm tasks ({short_reason(err)})"),
                  file=sys.stderr)
        if settings.protect_file is not None:
            refs |= _protect_file(settings.protect_file)
        outcome = await gc.run_gc(op, nodes, dry_run=dry_run, delete_untagged=delete_untagged,
                                  protected_refs=refs)
    finally:
        if nc is not None:
            await nc.close()
    report = outcome.report
    if report is not None:
        for digest in sorted(report.eligible_manifests):
            print(f"manifest {'eligible' if dry_run else 'deleted'}: {digest}")
        for digest in sorted(report.eligible_blobs):
            print(f"blob {'eligible' if dry_run else 'deleted'}: {digest}")
    if outcome.status != "ok":
        for reason in outcome.reasons:
            print(error_line(f"unify registry gc: {outcome.status}", reason), file=sys.stderr)
        return 1
    print(f"gc {'dry run ' if dry_run else ''}done: {report.summary if report else ''}")
    return 0


def _protect_file(path: Path) -> set[tuple[str, str]]:
    """``repository@digest`` or ``repository:tag`` lines (``#`` comments) of a protect file."""
    from registry_admin.gc import parse_image_ref

    refs = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        parsed = parse_image_ref(line) if line else None
        if parsed:
            refs.add((parsed[1], parsed[3] or parsed[2] or "latest"))
    return refs


def _registry_reason(err: Exception) -> str:
    """``"<request>: <short reason>"`` of a :class:`RegistryError` raised over a client
    error (kept in ``__context__``), else its own text."""
    cause = err.__cause__ or err.__context__
    if cause is None:
        return str(err)
    request = str(err).partition(": ")[0]
    return f"{request}: {short_reason(cause)}"


def main(argv: list[str] | None = None) -> int:
    """``unify registry ...``; returns the exit status."""
    from registry_admin.settings import RegistryAdminSettings

    args = _parser().parse_args(argv)
    try:
        settings = RegistryAdminSettings.from_env()
    except ValueError as err:
        print(error_line("unify registry", err), file=sys.stderr)
        return EXIT_USAGE
    if args.action == "ls":
        from registry_admin.registry_api import RegistryError
        if not 1 <= args.page_size <= 1000:
            print("unify registry ls: --page-size must be 1-1000", file=sys.stderr)
            return EXIT_USAGE
        try:
            rows = asyncio.run(_ls(settings, args.repository, args.page_size))
        except RegistryError as err:
            print(error_line(f"unify registry ls: {settings.registry_url}",
                             _registry_reason(err)), file=sys.stderr)
            return EXIT_FAILURE
        print(json.dumps(rows, indent=2) if args.json else _table(rows))
        return 0
    try:
        return asyncio.run(_gc(settings, dry_run=args.dry_run,
                               delete_untagged=args.delete_untagged))
    except (OSError, ValueError) as err:
        print(error_line("unify registry gc", short_reason(err)), file=sys.stderr)
        return EXIT_FAILURE
