"""Command line of dns411.

* ``unify-dns411`` (or ``python -m dns411``): run the service (settings from the
  environment, see :mod:`.settings` and :mod:`unify_common.settings`).
* ``unify-dns411 --dry-run``: read the catalog once, print the plan (dnsmasq file diffs,
  Route 53 changes), write nothing.
* ``unify-dns411 list [--zone Z] [--source desired|dnsmasq|route53] [--node N] [--json]``:
  ``unify dns list`` (records with drift marks, from the state dns411 nodes publish on NATS;
  see :mod:`unify_common.dnslisting`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from unify_common.catalog import CatalogState, read_catalog
from unify_common.dnslisting import list_command
from unify_common.logs import configure_logging
from unify_common.natsio import connect_nats, unreachable_message, wait_for_catalog
from unify_common.settings import CommonSettings

from .settings import Dns411Settings
from .verdict_mirror import VerdictMirror

__all__ = ["list_main", "main", "read_state"]


def list_main(argv: list[str] | None = None) -> int:
    """``list`` subcommand: the same listing as ``unify dns list``, from the state the dns411
    nodes publish on NATS (:func:`unify_common.dnslisting.list_command`). Returns the exit
    status."""
    return list_command(argv, prog="unify-dns411 list")


async def read_state(common: CommonSettings, *, timeout: float = 10.0,
                     verdict_bucket: str | None = None
                     ) -> tuple[CatalogState, VerdictMirror | None]:
    """Read the catalog once (for ``--dry-run``), and switchboard's verdicts from
    ``verdict_bucket`` when given (up to 2 s, as the service's first reconcile waits), so the
    plan withholds what the running service withholds. Each NATS server is tried once.

    :raises ConnectionError: no NATS server answered (within ``timeout`` seconds).
    """
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # one clear error, not a retry log
    try:
        nc = await asyncio.wait_for(
            connect_nats(common, name="dns411-dry-run", fail_fast=True), timeout)
    except Exception as err:
        raise ConnectionError(unreachable_message(common, err)) from None
    try:
        state = await read_catalog(await wait_for_catalog(
            nc.jetstream(), common, timeout=timeout, log=logging.getLogger("dns411")))
        if verdict_bucket is None:
            return state, None
        verdicts = VerdictMirror(nc.jetstream(), verdict_bucket)
        verdicts.start()
        try:
            await verdicts.wait_loaded(2.0)
        finally:
            await verdicts.stop()
        return state, verdicts
    finally:
        await nc.close()


async def _dry_run(settings: Dns411Settings, common: CommonSettings) -> str:
    from .service import build_reconciler

    state, verdicts = await read_state(common, verdict_bucket=settings.verdict_bucket)
    reconciler = build_reconciler(settings, common)
    reconciler.verdicts = verdicts
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
