"""The one run loop of every long-running Unify service: start, serve until SIGTERM or
SIGINT, stop.

A signal that arrives while the service is still starting (waiting for NATS, for the catalog
consul-bridge declares, for a lock) cancels the start and stops what was started, so
``docker stop`` ends a container cleanly at any moment, not only once it runs.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Awaitable, Callable

__all__ = ["run_until_stopped"]


async def run_until_stopped(start: Callable[[], Awaitable[object]],
                            stop: Callable[[], Awaitable[object]], *,
                            stop_event: asyncio.Event | None = None,
                            on_started: Callable[[], object] | None = None) -> bool:
    """``await start()``, then wait for ``stop_event`` (default: set by SIGTERM or SIGINT),
    then ``await stop()``. ``stop()`` runs in every case, also when ``start()`` raised or
    was cancelled by the signal.

    :returns: ``True`` when the service had started, ``False`` when the signal came first.
    :raises Exception: whatever ``start()`` raised (after ``stop()`` ran).
    """
    if stop_event is None:
        stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_event.set)
    starting = asyncio.ensure_future(start())
    stopping = asyncio.ensure_future(stop_event.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return False
        starting.result()  # raises what start() raised
        if on_started is not None:
            on_started()
        await stopping
        return True
    finally:
        stopping.cancel()
        await stop()
