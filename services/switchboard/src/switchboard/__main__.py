"""``python -m switchboard`` / ``unify-switchboard``: run switchboard until SIGINT/SIGTERM.

Settings come from the environment (see :mod:`switchboard.settings` and
:mod:`unify_common.settings`). Exit status 2 on a settings error, 1 when NATS is unreachable
or consul-bridge has not declared the stream and the catalog bucket within 120 s.
"""

from __future__ import annotations

import asyncio
import sys

import nats.errors

from unify_common.logs import configure_logging, get_logger
from unify_common.natsio import CatalogMissing
from unify_common.runloop import run_until_stopped
from unify_common.settings import env_only_parser

from .service import SwitchboardService
from .settings import SwitchboardSettings

log = get_logger("switchboard")


async def _run(settings: SwitchboardSettings) -> None:
    service = SwitchboardService(settings)
    await run_until_stopped(
        lambda: service.start(health_addr=settings.health_addr), service.stop,
        on_started=lambda: log.info("switchboard running", node=settings.common.node,
            config=str(settings.config_path), manage=settings.manage, health=service.health.bound))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    # --help prints the module doc and exits 0 here, before anything starts
    env_only_parser("unify-switchboard", __doc__).parse_args(
        sys.argv[1:] if argv is None else argv)
    try:
        settings = SwitchboardSettings.from_env()
    except ValueError as err:
        print(f"switchboard: {err}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.common.log_format, level=settings.common.log_level)
    try:
        asyncio.run(_run(settings))
    except (OSError, nats.errors.Error, CatalogMissing) as err:
        log.error("cannot start", error=str(err) or repr(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
