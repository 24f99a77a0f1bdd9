"""Command line of dns411.

* ``unify-dns411`` (or ``python -m dns411``): run the service (settings from the
  environment, see :mod:`.settings` and :mod:`unify_common.settings`).
* ``unify-dns411 --dry-run``: read the catalog once, print the plan (dnsmasq file diffs,
  Route 53 changes), write nothing.
* ``unify-dns411 list [--zone Z] [--source desired|dnsmasq|route53] [--json]``: print
  records with drift marks (see :mod:`.listing`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from unify_common.logs import configure_logging
from unify_common.settings import CommonSettings

from .settings import Dns411Settings

__all__ = ["list_main", "main"]


def _list_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unify dns list",
                                     description="List DNS records with drift marks.")
    parser.add_argument("--zone", default=None, help="only names in this zone")
    parser.add_argument("--source", default="desired", choices=("desired", "dnsmasq", "route53"),
                        help="desired (default): the records dns411 wants, DRIFT '-'; "
                        "dnsmasq / route53: compare with what that side serves, marking "
                        "missing, extra and foreign records")
    parser.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    return parser


def list_main(argv: list[str] | None = None) -> int:
    """``list`` subcommand: print a table (or ``--json``). Returns the exit status."""
    from .listing import format_table, list_records

    args = _list_parser().parse_args(argv)
    try:
        rows = list_records(zone=args.zone, source=args.source)
    except ConnectionError as err:
        print(f"unify dns list: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # unreachable AWS, bad settings: one clear line
        print(f"unify dns list: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(format_table(rows))
    return 0


async def _dry_run(settings: Dns411Settings, common: CommonSettings) -> str:
    from .listing import read_state
    from .service import build_reconciler

    state = await read_state(common)
    reconciler = build_reconciler(settings, common)
    return await asyncio.to_thread(reconciler.dry_run, state)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``unify-dns411``. Returns the exit status (2 for bad settings)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["list"]:
        return list_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="unify-dns411",
        description="Keep dnsmasq and Route 53 in step with the Unify catalog "
                    "(settings from the environment). 'unify-dns411 list --help' lists records.")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    try:
        common = CommonSettings.from_env()
        configure_logging(fmt=common.log_format, level=common.log_level)
        settings = Dns411Settings.from_env()
    except ValueError as err:
        print(f"dns411: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        try:
            sys.stdout.write(asyncio.run(_dry_run(settings, common)))
        except Exception as err:  # unreachable NATS/AWS: one clear line
            print(f"dns411 --dry-run: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
        return 0
    if settings.mode == "replica":
        from .replica import run_replica

        asyncio.run(run_replica(settings, common))
        return 0
    from .service import run

    asyncio.run(run(settings, common))
    return 0
