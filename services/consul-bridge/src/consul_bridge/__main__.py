"""``python -m consul_bridge`` / ``unify-consul-bridge``: run one bridge (settings from env)."""

from __future__ import annotations

import asyncio
import sys

from unify_common.logs import configure_logging

from .service import run
from .settings import BridgeSettings


def main() -> int:
    """Entry point; returns the process exit code (2 on a settings error)."""
    try:
        settings = BridgeSettings.from_env()
    except ValueError as err:
        print(f"consul-bridge: {err}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.common.log_format, level=settings.common.log_level)
    asyncio.run(run(settings, health_addr=settings.health_addr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
