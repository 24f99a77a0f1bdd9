"""The one run loop of every long-running Unify service: start, serve until SIGTERM or
SIGINT, stop.

A signal that arrives while the service is still starting (waiting for NATS, for the catalog
consul-bridge declares, for a lock) cancels the start and stops what was started, so
``docker stop`` ends a container cleanly at any moment, not only once it runs. A service
whose work is one long coroutine (consul-bridge's leader loop, registrator's work loop)
passes it as ``serve``: it is cancelled on the signal, and if it ends by itself (a bug, an
unrecoverable error) the service stops too, with that error, instead of idling on.

A cancelled start or serve that does not end within ``cancel_timeout`` seconds (a library
that swallows the cancellation, as nats-py's connect can while it retries an unreachable
server) does not keep the process alive: it logs that the stop was forced, runs ``stop``
(bounded by the same limit) and exits with status 1. A second SIGTERM or SIGINT, at any moment after the first, exits at once
too (status 128 + the signal's number, as a shell reports a killed process).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from .logs import get_logger

__all__ = ["FORCED_EXIT_STATUS", "run_until_stopped"]

#: exit status when a cancelled start or serve did not end within the time limit
FORCED_EXIT_STATUS = 1

log = get_logger("unify_common.runloop")


def _exit_now(status: int) -> None:
    """Flush the log handlers and end the process without running any more of the loop (a
    task that ignores cancellation would otherwise hold ``asyncio.run``'s own clean-up)."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(status)


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, stop_event: asyncio.Event) -> None:
    """First SIGTERM/SIGINT: set ``stop_event``; any later one: exit at once."""
    def on_signal(sig: signal.Signals) -> None:
        if not stop_event.is_set():
            log.info("stop requested", signal=sig.name)
            stop_event.set()
            return
        log.error("second stop signal: exiting at once", signal=sig.name)
        _exit_now(128 + sig.value)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def _cancel_within(task: asyncio.Future[object], what: str, limit: float) -> bool:
    """Cancel ``task`` and wait up to ``limit`` seconds for it to end.

    :returns: ``True`` when it ended; ``False`` (and an error log line) when it did not.
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=limit)
    if not done:
        log.error(f"stop forced: {what} did not end within {limit:g} s of its cancellation; "
                  "stopping and exiting", task=what, limit_s=limit)
        return False
    if not task.cancelled():
        task.exception()  # retrieved: a late error of a cancelled task is not reported
    return True


async def _stop_and_exit(stop: Callable[[], Awaitable[object]], limit: float) -> None:
    """After a forced stop: give ``stop()`` up to ``limit`` seconds (so children such as
    wireline's sshd are still ended), then exit with :data:`FORCED_EXIT_STATUS`, whatever
    ``stop()`` did."""
    stopping = asyncio.ensure_future(stop())
    done, _ = await asyncio.wait({stopping}, timeout=limit)
    if not done:
        log.error(f"stop did not end within {limit:g} s either", limit_s=limit)
    elif not stopping.cancelled() and stopping.exception() is not None:
        log.error("stop failed", error=repr(stopping.exception()))
    _exit_now(FORCED_EXIT_STATUS)


async def run_until_stopped(start: Callable[[], Awaitable[object]],
                            stop: Callable[[], Awaitable[object]], *,
                            stop_event: asyncio.Event | None = None,
                            on_started: Callable[[], object] | None = None,
                            serve: Callable[[], Awaitable[object]] | None = None,
                            cancel_timeout: float = 5.0) -> bool:
    """``await start()``, then wait for ``stop_event`` (default: set by SIGTERM or SIGINT),
    then ``await stop()``. ``stop()`` runs in every case, also when ``start()`` raised or
    was cancelled by the signal.

    :param serve: the service's work, awaited once started (after ``on_started``): the stop
        request cancels it, and ``stop()`` runs after it has ended; when it ends first, by
        itself, the service stops then.
    :param cancel_timeout: seconds a cancelled ``start()`` or ``serve()`` has to end; past
        them ``stop()`` still runs (for at most as long again) and then the process exits
        (status :data:`FORCED_EXIT_STATUS`, with an error log line saying it was forced).
        The default stays under ``docker stop``'s 10 s grace period.
    :returns: ``True`` when the service had started, ``False`` when the signal came first.
    :raises Exception: whatever ``start()`` or ``serve()`` raised (after ``stop()`` ran).
    """
    if stop_event is None:
        stop_event = asyncio.Event()
        _install_signal_handlers(asyncio.get_running_loop(), stop_event)
    starting = asyncio.ensure_future(start())
    stopping = asyncio.ensure_future(stop_event.wait())
    serving: asyncio.Future[object] | None = None
    ended = True  # False: a cancelled task ignored its cancellation
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            ended = await _cancel_within(starting, "start", cancel_timeout)
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
            ended = await _cancel_within(serving, "serve", cancel_timeout)
        if not ended:
            await _stop_and_exit(stop, cancel_timeout)
        await stop()
