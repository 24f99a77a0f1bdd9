"""Liveness, readiness and Prometheus metrics of one Unify service, over HTTP (aiohttp).

Every service runs one :class:`Health` and serves it on ``UNIFY_HEALTH_ADDR`` (``host:port``;
see :func:`health_addr`):

* ``GET /livez``: ``200 ok`` while the process's event loop runs (the answer comes from that
  loop, so a blocked loop answers nothing and the probe times out).
* ``GET /readyz``: ``200`` when every registered check passes, at least one success was
  recorded (unless ``require_success=False``) and the last success is not older than the last
  failure; ``503`` otherwise. ``?verbose`` lists each check as ``[+]name ok`` or
  ``[-]name failed: reason`` (the layout Kubernetes' API server uses for the same endpoints).
* ``GET /metrics``: the Prometheus text exposition of :attr:`Health.registry`.

Metric names share one prefix, ``unify_<service>_`` (dashes become underscores), and use base
units (seconds, Unix-epoch seconds):

==============================================  ================================================
``..._events_consumed_total{subject}``          events read from NATS
``..._events_published_total{subject}``         events written to NATS
``..._reconcile_duration_seconds``              histogram of whole reconciles
``..._apply_duration_seconds``                  histogram of applies (files, processes, APIs)
``..._last_success_timestamp_seconds``          time of the last success (0 before the first)
``..._last_failure_timestamp_seconds``          time of the last failure (0 before the first)
``..._errors_total{kind}``                      failures and rejected input, by kind
``..._applied_config_info{config_hash}``        the configuration in force
``..._build_info{version,revision}``            what is running
==============================================  ================================================

``python -m unify_common.health`` is the container ``HEALTHCHECK`` probe: it asks
``/readyz`` on ``UNIFY_HEALTH_ADDR`` (``0.0.0.0`` is asked on ``127.0.0.1``) and exits 0 on
200, 1 otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Check", "Health", "health_addr"]

#: a readiness check: ``None`` when it passes, else the reason it fails (one line)
Check = Callable[[], "str | None"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def health_addr(*, default_port: int, env: Mapping[str, str] | None = None) -> tuple[str, int]:
    """``(host, port)`` from ``UNIFY_HEALTH_ADDR`` (``host:port`` or ``:port``; default host
    ``127.0.0.1``, default port ``default_port``). Port 0 means "pick a free one".

    :raises ValueError: the value is not ``host:port`` with a port in 0..65535.
    """
    env = os.environ if env is None else env
    raw = (env.get("UNIFY_HEALTH_ADDR", "") or "").strip()
    if not raw:
        return "127.0.0.1", default_port
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"UNIFY_HEALTH_ADDR must be host:port, got {raw!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


class Health:
    """The health endpoints and metrics of one service.

    :param service: the component name (``consul-bridge``, ``switchboard``, ...); the metric
        prefix is ``unify_<service>_`` with dashes turned into underscores.
    :param version: the running version (``build_info``); ``revision`` the source revision,
        default ``UNIFY_REVISION`` from the environment (the images set it) or ``unknown``.
    :param require_success: readiness waits for a first :meth:`record_success`.
    :param clock: wall-clock seconds (``time.time``); tests pass their own.
    """

    def __init__(self, service: str, *, version: str = "0.0.0", revision: str | None = None,
                 require_success: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.prefix = "unify_" + re.sub(r"[^a-zA-Z0-9_]", "_", service)
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._require_success = require_success
        self._checks: dict[str, Check] = {}
        self.last_success = 0.0
        self.last_failure = 0.0
        self.last_failure_kind = ""
        p, r = self.prefix, self.registry
        self.events_consumed = Counter(f"{p}_events_consumed", "Events read from NATS.",
                                       ["subject"], registry=r)
        self.events_published = Counter(f"{p}_events_published", "Events written to NATS.",
                                        ["subject"], registry=r)
        self.reconcile_seconds = Histogram(f"{p}_reconcile_duration_seconds",
                                           "Duration of whole reconciles.", buckets=_BUCKETS,
                                           registry=r)
        self.apply_seconds = Histogram(f"{p}_apply_duration_seconds",
                                       "Duration of applies (files, processes, APIs).",
                                       buckets=_BUCKETS, registry=r)
        self._last_success_g = Gauge(f"{p}_last_success_timestamp_seconds",
                                     "Unix time of the last success (0: none yet).", registry=r)
        self._last_failure_g = Gauge(f"{p}_last_failure_timestamp_seconds",
                                     "Unix time of the last failure (0: none yet).", registry=r)
        self.errors = Counter(f"{p}_errors", "Failures and rejected input, by kind.", ["kind"],
                              registry=r)
        self._config = Info(f"{p}_applied_config", "The configuration in force.", registry=r)
        build = Info(f"{p}_build", "What is running.", registry=r)
        build.info({"version": version,
                    "revision": revision or os.environ.get("UNIFY_REVISION", "") or "unknown"})
        self._runner: web.AppRunner | None = None
        #: the ``(host, port)`` actually bound, once started
        self.bound: tuple[str, int] | None = None

    # -- recording -------------------------------------------------------------------------
    def add_check(self, name: str, check: Check) -> None:
        """Register a readiness check (replaces one of the same name)."""
        self._checks[name] = check

    def record_success(self) -> None:
        """The last reconcile, publish or apply succeeded."""
        self.last_success = self._clock()
        self._last_success_g.set(self.last_success)

    def record_failure(self, kind: str) -> None:
        """A failure or a rejected input of ``kind`` (a short slug, e.g. ``reload-failed``)."""
        self.last_failure = self._clock()
        self.last_failure_kind = kind
        self._last_failure_g.set(self.last_failure)
        self.errors.labels(kind=kind).inc()

    def count_error(self, kind: str) -> None:
        """Count a rejected input of ``kind`` without touching readiness (bad input is the
        sender's problem, not the service's)."""
        self.errors.labels(kind=kind).inc()

    def set_applied_config(self, config_hash: str) -> None:
        """Record the configuration in force (``applied_config_info{config_hash}``)."""
        self._config.info({"config_hash": config_hash})

    @contextlib.contextmanager
    def time_reconcile(self) -> Iterator[None]:
        """Time the enclosed reconcile into the reconcile histogram."""
        with self.reconcile_seconds.time():
            yield

    @contextlib.contextmanager
    def time_apply(self) -> Iterator[None]:
        """Time the enclosed apply into the apply histogram."""
        with self.apply_seconds.time():
            yield

    # -- verdicts --------------------------------------------------------------------------
    def readiness(self) -> list[tuple[str, str | None]]:
        """``[(check name, None or reason)]`` in a fixed order: the registered checks, then
        ``last-success``. A check that raises fails with the exception's text."""
        out: list[tuple[str, str | None]] = []
        for name, check in self._checks.items():
            try:
                out.append((name, check()))
            except Exception as err:  # a broken check is a failed check, never a 500
                out.append((name, f"{type(err).__name__}: {err}"))
        if self._require_success and self.last_success == 0.0:
            verdict: str | None = "no success yet"
        elif self.last_failure > self.last_success:
            verdict = f"last attempt failed ({self.last_failure_kind})"
        else:
            verdict = None
        out.append(("last-success", verdict))
        return out

    def ready(self) -> bool:
        """``True`` when every entry of :meth:`readiness` passes."""
        return all(reason is None for _, reason in self.readiness())

    # -- HTTP ------------------------------------------------------------------------------
    async def _livez(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = self.readiness()
        ok = all(reason is None for _, reason in checks)
        if "verbose" in request.query:
            lines = [f"[+]{name} ok" if reason is None else f"[-]{name} failed: {reason}"
                     for name, reason in checks]
            lines.append(f"readyz check {'passed' if ok else 'failed'}")
            body = "\n".join(lines) + "\n"
        else:
            body = "ok\n" if ok else "not ready\n"
        return web.Response(text=body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Serve the endpoints on ``host:port`` (port 0: a free one); returns what was bound.

        :raises OSError: the address cannot be bound.
        """
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1] if sockets else port
        self.bound = (host, bound_port)
        return self.bound

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def probe(env: Mapping[str, str] | None = None, *, timeout: float = 3.0) -> int:
    """Ask ``/readyz`` on ``UNIFY_HEALTH_ADDR``; 0 when it answers 200, else 1 (the reason on
    stderr). The container ``HEALTHCHECK`` runs this."""
    env = os.environ if env is None else env
    try:
        host, port = health_addr(default_port=int(env.get("UNIFY_HEALTH_DEFAULT_PORT", "0")
                                                  or 0), env=env)
    except ValueError as err:
        print(f"probe: {err}", file=sys.stderr)
        return 1
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/readyz?verbose"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 0 if resp.status == 200 else 1
    except urllib.error.HTTPError as err:
        print(err.read().decode(errors="replace"), file=sys.stderr, end="")
        return 1
    except OSError as err:
        print(f"probe: {url}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(probe())
