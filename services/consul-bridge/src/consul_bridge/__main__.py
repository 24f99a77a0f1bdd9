"""``python -m consul_bridge`` / ``unify-consul-bridge``: run one bridge (settings from env)
until SIGTERM/SIGINT, which ends it cleanly (status 0) at any moment, also while it is still
starting. Exit status 2 on a settings error, 1 when the stream or the catalog bucket cannot
be declared."""

from __future__ import annotations

import asyncio
import sys

import nats.errors

from unify_common.logs import configure_logging, get_logger
from unify_common.settings import env_only_parser

from .service import run
from .settings import BridgeSettings

log = get_logger("consul_bridge")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on a settings error)."""
    # --help prints the module doc and exits 0 here, before anything starts
    env_only_parser("unify-consul-bridge", __doc__).parse_args(
        sys.argv[1:] if argv is None else argv)
    try:
        settings = BridgeSettings.from_env()
    except ValueError as err:
        print(f"consul-bridge: {err}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.common.log_format, level=settings.common.log_level)
    try:
        asyncio.run(run(settings, health_addr=settings.health_addr))
    except (OSError, nats.errors.Error) as err:
        log.error("cannot start", error=str(err) or repr(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
