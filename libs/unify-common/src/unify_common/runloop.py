"""The one run loop of every long-running Unify service: start, serve until SIGTERM or
SIGINT, stop.

A signal that arrives while the service is still starting (waiting for NATS, for the catalog
consul-bridge declares, for a lock) cancels the start and stops what was started, so
``docker stop`` ends a container cleanly at any moment, not only once it runs. A service
whose work is one long coroutine (consul-bridge's leader loop, registrator's work loop)
passes it as ``serve``: it is cancelled on the signal, and if it ends by itself (a bug, an
unrecoverable error) the service stops too, with that error, instead of idling on.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

__all__ = ["run_until_stopped"]


async def run_until_stopped(start: Callable[[], Awaitable[object]],
                            stop: Callable[[], Awaitable[object]], *,
                            stop_event: asyncio.Event | None = None,
                            on_started: Callable[[], object] | None = None,
                            serve: Callable[[], Awaitable[object]] | None = None) -> bool:
    """``await start()``, then wait for ``stop_event`` (default: set by SIGTERM or SIGINT),
    then ``await stop()``. ``stop()`` runs in every case, also when ``start()`` raised or
    was cancelled by the signal.

    :param serve: the service's work, awaited once started (after ``on_started``): the stop
        request cancels it, and ``stop()`` runs after it has ended; when it ends first, by
        itself, the service stops then.
    :returns: ``True`` when the service had started, ``False`` when the signal came first.
    :raises Exception: whatever ``start()`` or ``serve()`` raised (after ``stop()`` ran).
    """
    if stop_event is None:
        stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_event.set)
    starting = asyncio.ensure_future(start())
    stopping = asyncio.ensure_future(stop_event.wait())
    serving: asyncio.Future[object] | None = None
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return False
        starting.result()  # raises what start() raised
        if on_started is not None:
            on_started()
        if serve is None:
            await stopping
            return True
        serving = asyncio.ensure_future(serve())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()  # raises what serve() raised
        return True
    finally:
        stopping.cancel()
        if serving is not None and not serving.done():
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        await stop()
