"""The async twin of :func:`unify_testkit.poll.wait_until`, for tests running in an event loop.

Same signature and failure; the probe may be a plain function or return an awaitable (a
coroutine function, ``lambda: asyncio.to_thread(...)``), which is awaited before judging. The
loop sleeps with :func:`asyncio.sleep`, so the code under test keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .poll import NOT_YET, NotReached, _Attempts, returns

__all__ = ["NOT_YET", "NotReached", "returns", "wait_until"]

T = TypeVar("T")


async def wait_until(probe: Callable[[], T | Awaitable[T]],
                     until: Callable[[T], object] | None = None, *, timeout: float = 30.0,
                     what: str = "", interval: float = 0.05,
                     retry_on: tuple[type[BaseException], ...] = NOT_YET) -> T:
    """Await ``probe()`` every ``interval`` seconds until ``until(value)`` is true; return
    that value.

    Parameters, value and errors as in :func:`unify_testkit.poll.wait_until`; here the
    probe's value is awaited first when it is awaitable.

    :raises NotReached: (an ``AssertionError``) at the deadline, with the last value seen
        or the last error raised.
    """
    attempts = _Attempts(probe, until, timeout, what, interval, retry_on)
    while True:
        try:
            value: Any = probe()
            if inspect.isawaitable(value):
                value = await value
        except retry_on as err:
            attempts.failed(err)
        else:
            if attempts.judge(value):
                return value
        pause = attempts.pause()
        if pause is None:
            raise attempts.give_up()
        await asyncio.sleep(pause)
