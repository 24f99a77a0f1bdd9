"""``python -m registry_admin``: run registry-admin until SIGINT/SIGTERM.

Settings come from the environment (see :mod:`registry_admin.settings` and
:mod:`unify_common.settings`); health on ``UNIFY_HEALTH_ADDR`` (default 127.0.0.1:9105).
Exit status 2 on a settings error, 1 when NATS is unreachable or the CA files are damaged.
"""

from __future__ import annotations

import asyncio
import sys

import nats.errors

from unify_common.logs import configure_logging, get_logger
from unify_common.runloop import run_until_stopped
from unify_common.settings import env_only_parser

from .service import RegistryAdmin
from .settings import RegistryAdminSettings

log = get_logger("registry_admin")


async def _run(settings: RegistryAdminSettings, addr: tuple[str, int]) -> None:
    service = RegistryAdmin(settings)
    await run_until_stopped(
        lambda: service.start(health_addr=addr), service.stop,
        on_started=lambda: log.info("registry-admin running", node=settings.common.node,
            mode=settings.mode, service=settings.service, notify_port=service.notify_port))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    # --help prints the module doc and exits 0 here, before anything starts
    env_only_parser("unify-registry-admin", __doc__).parse_args(
        sys.argv[1:] if argv is None else argv)
    try:
        settings = RegistryAdminSettings.from_env()
    except ValueError as err:
        print(f"registry-admin: {err}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.common.log_format, level=settings.common.log_level)
    try:
        asyncio.run(_run(settings, settings.health_addr))
    except (OSError, ValueError, nats.errors.Error) as err:
        log.error("cannot start", error=repr(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
