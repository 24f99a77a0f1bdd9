"""Retrying transient failures with capped exponential backoff and jitter."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .logs import Logger, get_logger

__all__ = ["backoff_delay", "retry_forever", "retry_until"]

T = TypeVar("T")


def backoff_delay(failures: int, *, base: float, cap: float,
                  rng: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1 or more): ``base * 2**n``
    capped at ``cap``, times a random factor in [0.5, 1) so many clients do not retry in step.

    >>> backoff_delay(3, base=0.1, cap=5.0, rng=lambda a, b: 1.0)
    0.8
    """
    delay: float = min(cap, base * 2 ** min(failures, 20)) * rng(0.5, 1.0)
    return delay


async def retry_forever(call: Callable[[], Awaitable[T]], *, what: str,
                        log: Logger | logging.Logger, base: float = 0.1, cap: float = 5.0,
                        fields: dict[str, object] | None = None,
                        permanent: tuple[type[BaseException], ...] = ()) -> T:
    """Await ``call()`` until it succeeds; log each failure (``what`` failed; retrying) with
    the error and the delay, then wait :func:`backoff_delay`. Cancellation goes through.

    :param permanent: exception types that no retry can cure; they are raised at once.
    :returns: what ``call()`` returned the first time it did not raise.
    """
    log = get_logger(log).bind(**fields or {})
    failures = 0
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except permanent:
            raise
        except Exception as err:
            failures += 1
            delay = backoff_delay(failures, base=base, cap=cap)
            log.warning(f"{what} failed; retrying", error=str(err) or type(err).__name__,
                        retry_in_s=round(delay, 2), attempt=failures)
            await asyncio.sleep(delay)


async def retry_until(call: Callable[[], Awaitable[T]], *, what: str,
                      log: Logger | logging.Logger,
                      timeout: float, retry_on: tuple[type[BaseException], ...],
                      base: float = 0.1, cap: float = 5.0,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                      rng: Callable[[float, float], float] = random.uniform) -> T:
    """Await ``call()`` until it returns, for at most ``timeout`` seconds of ``clock``.

    Only ``retry_on`` exceptions are retried (each logged as ``what``, with the reason, the
    delay and the attempt, then :func:`backoff_delay`, shortened so the last try falls on
    the deadline); anything else goes through at once.

    :returns: what ``call()`` returned the first time it did not raise.
    :raises: the last ``retry_on`` exception once ``timeout`` seconds have passed.
    """
    log = get_logger(log)
    deadline = clock() + timeout
    failures = 0
    while True:
        try:
            return await call()
        except retry_on as err:
            failures += 1
            left = deadline - clock()
            if left <= 0:
                raise
            delay = min(left, backoff_delay(failures, base=base, cap=cap, rng=rng))
            log.warning(what, reason=str(err) or type(err).__name__, retry_in_s=round(delay, 2),
                        attempt=failures, gives_up_in_s=round(left, 1))
            await sleep(delay)
