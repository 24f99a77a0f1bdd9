"""Command line of registrator.

``unify-registrator`` (or ``python -m registrator``): run the service; settings from the
environment (:mod:`.settings`, :mod:`unify_common.settings`). ``--once``: one full resync,
then exit (0 when it succeeded).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from unify_common.logs import configure_logging
from unify_common.settings import CommonSettings

from .settings import RegistratorSettings

__all__ = ["main"]

async def _once(settings: RegistratorSettings, common: CommonSettings) -> bool:
    from .service import Registrator

    return await Registrator(settings, common).once()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``unify-registrator``. Returns the exit status (2 for bad settings)."""
    parser = argparse.ArgumentParser(
        prog="unify-registrator",
        description="Keep the local Consul agent's services equal to this node's running "
                    "containers (registrator's SERVICE_* rules; settings from the environment).")
    parser.add_argument("--once", action="store_true",
                        help="one full resync without NATS or health, then exit")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        common = CommonSettings.from_env()
        configure_logging(fmt=common.log_format, level=common.log_level)
        settings = RegistratorSettings.from_env()
    except ValueError as err:
        print(f"registrator: {err}", file=sys.stderr)
        return 2
    if args.once:
        return 0 if asyncio.run(_once(settings, common)) else 1
    from .service import run

    asyncio.run(run(settings, common, settings.health_addr))
    return 0
