"""Capped exponential backoff with full jitter for transient AWS errors.

Route 53 answers ``Throttling`` (rate limit, 5 requests per second per account) and
``PriorRequestNotComplete`` (a change to the zone is still being applied) with HTTP 400;
both are worth retrying after a wait ("Route 53 API Reference, Common Errors"). Server
errors (HTTP 5xx) and lost connections are retried too.
"""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError

from unify_common.logs import get_logger

__all__ = ["RETRYABLE_CODES", "is_transient", "with_backoff"]

log = get_logger("dns411.route53")
T = TypeVar("T")
RETRYABLE_CODES = frozenset({"Throttling", "ThrottlingException", "PriorRequestNotComplete",
                             "RequestLimitExceeded", "ServiceUnavailable", "InternalError"})


def is_transient(err: BaseException) -> bool:
    """True for throttling, prior-request-pending, 5xx and connection failures."""
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in RETRYABLE_CODES or status >= 500
    return isinstance(err, BotoConnectionError)


def with_backoff(call: Callable[[], T], *, what: str, max_attempts: int, base: float = 0.2,
                 cap: float = 20.0, sleep: Callable[[float], None] = time.sleep,
                 rand: Callable[[float, float], float] = random.uniform) -> T:
    """Run ``call()``; on a transient error wait ``uniform(0, min(cap, base * 2**n))``
    seconds (n = attempts so far) and retry, at most ``max_attempts`` tries in all.

    :raises: the last error when every try failed, or any non-transient error at once.
    """
    attempt = 0
    while True:
        try:
            return call()
        except Exception as err:
            attempt += 1
            if not is_transient(err) or attempt >= max_attempts:
                raise
            delay = rand(0.0, min(cap, base * 2 ** attempt))
            code = (err.response.get("Error", {}).get("Code", "")
                    if isinstance(err, ClientError) else type(err).__name__)
            log.warning("Route 53 call failed; retrying", extra={"fields": {
                "call": what, "error": code, "attempt": attempt, "retry_in_s": round(delay, 3)}})
            sleep(delay)
