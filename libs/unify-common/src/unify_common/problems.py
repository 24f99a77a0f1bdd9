"""Rejected input, as one type every service reports the same way.

A :class:`Problem` says why one input item (an instance, a KV key, a file line, a record, a
certificate...) was skipped. A reconciler gathers the problems of one pass and hands them to
its :class:`ProblemReporter`, which logs and publishes each *new* one as an
:class:`~unify_common.events.ErrorEvent` on ``unify.error.<source>`` and stays quiet about the
ones it already reported while they persist (a service that reconciles every few seconds must
not repeat the same error forever). A problem that goes away and comes back is reported again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable

import msgspec

from . import subjects
from .events import ErrorEvent
from .logs import get_logger

__all__ = ["Problem", "ProblemReporter", "Publish"]

log = get_logger("unify.problems")

#: ``publish(subject, event, msg_id)``: how a service puts an event on JetStream
Publish = Callable[[str, ErrorEvent, str], Awaitable[object]]


class Problem(msgspec.Struct, frozen=True, order=True):
    """Why one input item was skipped.

    ``reason`` is a short machine word (``invalid-tags``, ``route-conflict``,
    ``name-conflict``, ``certificate-missing``...); ``message`` is for humans and never holds
    secrets. ``service``/``instance_id``/``node`` are set when one instance is concerned.
    Problems compare, hash and sort field by field.
    """

    reason: str
    message: str
    service: str = ""
    instance_id: str = ""
    node: str = ""

    @property
    def fingerprint(self) -> str:
        """16 hex digits identifying this problem (SHA-256 of its fields)."""
        raw = "\0".join((self.reason, self.message, self.service, self.instance_id, self.node))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def event(self, source: str, *, node: str = "", observed_at: int | None = None
              ) -> ErrorEvent:
        """This problem as an :class:`ErrorEvent` from ``source``; ``node`` is used when the
        problem names none; ``observed_at`` in ms since the epoch (now when ``None``)."""
        return ErrorEvent(
            source=source, reason=self.reason, message=self.message, service=self.service,
            instance_id=self.instance_id, node=self.node or node,
            observed_at=int(time.time() * 1000) if observed_at is None else observed_at)


class ProblemReporter:
    """Logs and publishes each new problem once while it persists.

    ``source`` is the component (``switchboard``, ``dns411``...), ``node`` the node it runs
    on (used for problems that name none, and in message ids); ``publish`` is ``None`` when
    there is no NATS (problems are then only logged). A publish failure is logged and the
    problem stays unreported, so the next pass tries again.
    """

    def __init__(self, source: str, node: str, publish: Publish | None) -> None:
        self.source = source
        self.node = node
        self.publish = publish
        self._reported: set[Problem] = set()

    @property
    def reported(self) -> frozenset[Problem]:
        """The problems reported and still present at the last :meth:`report`."""
        return frozenset(self._reported)

    async def report(self, problems: Iterable[Problem]) -> list[Problem]:
        """Report the problems of one pass; returns the ones new since the last pass
        (sorted), each logged at warning level and published."""
        current = set(problems)
        new = sorted(current - self._reported)
        failed: set[Problem] = set()
        for problem in new:
            log.warning("input rejected", source=self.source, reason=problem.reason,
                        message=problem.message, service=problem.service,
                        instance_id=problem.instance_id)
            if self.publish is None:
                continue
            msg_id = f"{self.source}:{self.node}:problem:{problem.fingerprint}:{time.time_ns()}"
            try:
                await self.publish(subjects.error_subject(self.source),
                                   problem.event(self.source, node=self.node), msg_id)
            except Exception as err:  # NATS down: keep it unreported, try next pass
                log.warning("cannot publish a problem", source=self.source, reason=problem.reason,
                            error=str(err))
                failed.add(problem)
        self._reported = current - failed
        return new
