"""The shell: Docker in, the local Consul agent out, error events to NATS.

* Docker: the Engine's event stream (``GET /events``, container ``start``/``die``/``stop``/
  ``destroy``/``rename`` and Swarm ``service`` changes) read by a thread; each container event
  reconciles that container's services, a rename or a service change triggers a full resync.
  A full resync (every running container, see :func:`read_running`) runs at start, every
  ``UNIFY_REGISTRATOR_RESYNC`` seconds, after the event stream reconnects, and
  ``UNIFY_REGISTRATOR_RETRY`` seconds after a failed one. While Docker cannot be listed
  nothing is deregistered (the last good state stays).
* Consul: ``GET /v1/agent/services`` (only our services count, see :mod:`.plan`),
  ``PUT /v1/agent/service/register?replace-existing-checks=true`` and
  ``PUT /v1/agent/service/deregister/<id>`` through py-consul.
* NATS (optional): a rejected container (bad ``SERVICE_*`` input, or a registration Consul
  answers 400 to) is logged once and published once as an ``ErrorEvent`` on
  ``unify.error.registrator``; while NATS or the stream (consul-bridge declares it) is
  missing, events wait in a bounded queue (retried every ``UNIFY_REGISTRATOR_RETRY``
  seconds) and registering goes on.
* Health (``Health("registrator")``, port 9104): checks ``docker`` and ``consul`` reachable;
  a success is recorded after each full resync.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import consul.aio
import docker
import docker.errors
from consul.exceptions import BadRequest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from unify_common.consulio import make_consul
from unify_common.events import ErrorEvent
from unify_common.health import Health
from unify_common.logs import get_logger
from unify_common.natsio import connect_nats, publish_event
from unify_common.retry import backoff_delay
from unify_common.runloop import run_until_stopped
from unify_common.settings import CommonSettings
from unify_common.subjects import error_subject

from . import __version__
from .plan import Plan, make_plan, ours, scope_prefix
from .rules import Rejected, Rules, Wanted, container_name, swarm_service_id, wanted_for_container
from .settings import RegistratorSettings

__all__ = ["ContainerState", "Registrator", "node_address", "read_container", "read_running",
           "run"]

log = get_logger("registrator")

SOURCE = "registrator"
_CONTAINER_ACTIONS = frozenset({"start", "die", "stop", "destroy"})
_FULL_CONTAINER_ACTIONS = frozenset({"rename"})
_SERVICE_ACTIONS = frozenset({"create", "update", "remove"})
_PENDING_MAX = 100
_FULL = ("full",)


@dataclass(frozen=True)
class ContainerState:
    """What Docker says about one container: ``inspect`` is ``None`` when it is gone;
    ``service_labels`` are its Swarm service's ``Spec.Labels`` (``{}`` when not a task)."""

    id: str
    name: str
    inspect: Mapping[str, Any] | None
    service_labels: Mapping[str, str]


# -- Docker reads (blocking: called through asyncio.to_thread) ------------------------------

def _service_labels(client: docker.DockerClient, service_id: str,
                    cache: dict[str, Mapping[str, str]]) -> Mapping[str, str]:
    if service_id not in cache:
        try:
            spec = client.api.inspect_service(service_id).get("Spec") or {}
            cache[service_id] = spec.get("Labels") or {}
        except docker.errors.NotFound:
            cache[service_id] = {}
    return cache[service_id]


def read_container(client: docker.DockerClient, ref: str, name: str = "", *,
                   cache: dict[str, Mapping[str, str]] | None = None) -> ContainerState:
    """Inspect container ``ref`` (id or name) and, for a Swarm task, its service's labels.

    :raises docker.errors.DockerException: Docker failed (other than "no such container").
    """
    try:
        inspect = client.api.inspect_container(ref)
    except docker.errors.NotFound:
        return ContainerState(id=ref, name=name, inspect=None, service_labels={})
    service_id = swarm_service_id(inspect)
    labels = _service_labels(client, service_id, {} if cache is None else cache) \
        if service_id else {}
    return ContainerState(id=str(inspect.get("Id") or ref), name=container_name(inspect),
                          inspect=inspect, service_labels=labels)


def read_running(client: docker.DockerClient) -> tuple[list[ContainerState], list[str]]:
    """Every running container's state, and the names of those that could not be inspected
    (their registrations are kept this time).

    :raises docker.errors.DockerException: the container list could not be read.
    """
    cache: dict[str, Mapping[str, str]] = {}
    states: list[ContainerState] = []
    unread: list[str] = []
    for summary in client.api.containers():
        names = summary.get("Names") or [""]
        name = str(names[0]).lstrip("/")
        try:
            state = read_container(client, summary["Id"], name, cache=cache)
        except docker.errors.DockerException as err:
            log.warning("cannot inspect container; its services stay as they are",
                        container=name, error=str(err))
            unread.append(name)
            continue
        if state.inspect is not None:
            states.append(state)
    return states, unread


def node_address(client: docker.DockerClient) -> str:
    """The Swarm node address when the engine is in a Swarm, else the host name's address.

    :raises docker.errors.DockerException: ``docker info`` failed.
    """
    swarm = client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") == "active" and swarm.get("NodeAddr"):
        return str(swarm["NodeAddr"])
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


# -- the service ------------------------------------------------------------------------------

class Registrator:
    """One registrator: call :meth:`run` (returns after :meth:`stop`).

    :param health_addr: where to serve health (``None``: not served, for tests that run
        several); ``port`` 0 picks a free one (see ``health.bound``).
    :param docker_factory: makes a Docker client (default ``docker.from_env``, which reads
        ``DOCKER_HOST``); called once for queries and once per event-stream connection.
    """

    def __init__(self, settings: RegistratorSettings, common: CommonSettings, *,
                 health_addr: tuple[str, int] | None = None,
                 docker_factory=None, clock=time.monotonic) -> None:
        self.settings = settings
        self.common = common
        self.node = common.node
        self.rules = Rules(node=common.node, ip=settings.ip, internal=settings.internal,
                           force_tags=settings.force_tags)
        self.health = Health(SOURCE, version=__version__)
        self.health.add_check("docker", lambda: self._docker_problem)
        self.health.add_check("consul", lambda: self._consul_problem)
        self._health_addr = health_addr
        self._docker_factory = docker_factory or (lambda: docker.from_env(timeout=30))
        self._clock = clock
        self._docker_problem: str | None = "not read yet"
        self._consul_problem: str | None = "not read yet"
        self._queue: asyncio.Queue[tuple] = asyncio.Queue()
        self._stopping = threading.Event()
        self._stopped = asyncio.Event()
        self._stream = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: docker.DockerClient | None = None
        self._consul: consul.aio.Consul | None = None
        self._address = ""
        self._reported: dict[str, str] = {}
        self._pending: collections.deque[tuple[str, ErrorEvent]] = \
            collections.deque(maxlen=_PENDING_MAX)
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._nats_task: asyncio.Task | None = None
        self._publish_failing = False
        #: number of full resyncs that succeeded (tests wait on it)
        self.resyncs = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until :meth:`stop` (the process stops on SIGTERM/SIGINT instead: the
        module's :func:`run`). Both go through :func:`unify_common.runloop.run_until_stopped`
        with :meth:`start`, :meth:`serve` and :meth:`close`."""
        self._loop = asyncio.get_running_loop()
        if self._stopping.is_set():
            return
        await run_until_stopped(self.start, self.close, serve=self.serve,
                                stop_event=self._stopped)

    async def start(self) -> None:
        """Start health, the Consul client, the NATS connection (in the background: events
        wait for it) and the Docker event thread. Returns at once; :meth:`serve` works.

        :raises OSError: the health address cannot be bound.
        """
        self._loop = asyncio.get_running_loop()
        if self._health_addr is not None:
            await self.health.start(*self._health_addr)
        self._consul = make_consul(self.common)
        if self.settings.nats:
            self._nats_task = asyncio.create_task(self._nats_loop())
        self._thread = threading.Thread(target=self._watch_events, name="docker-events",
                                        daemon=True)
        self._thread.start()
        log.info("registrator started", node=self.node, internal=self.settings.internal,
                 ip=self.settings.ip, resync_s=self.settings.resync)

    async def serve(self) -> None:
        """The work loop: a full resync at once and every ``resync`` seconds, each queued
        Docker event in between; returns after :meth:`stop`."""
        await self._work()

    async def once(self) -> bool:
        """One full resync without the event stream, NATS or health (``--once``)."""
        self._loop = asyncio.get_running_loop()
        self._consul = make_consul(self.common)
        try:
            return await self.resync()
        finally:
            await self._consul.http.close()
            if self._client is not None:
                self._client.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe after run started)."""
        self._stopping.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # already closed with its connection
                pass

    async def close(self) -> None:
        """Stop, then release what :meth:`start` opened (also after a start cut short)."""
        self.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
        if self._nats_task is not None:
            self._nats_task.cancel()
            try:
                await self._nats_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:
                pass
        if self._consul is not None:
            await self._consul.http.close()
        if self._client is not None:
            self._client.close()
        await self.health.stop()

    def _agent(self) -> Any:
        """The Consul client's agent endpoint (py-consul's ``Consul.Agent``).

        :raises RuntimeError: called before :meth:`start` or :meth:`once` made the client.
        """
        if self._consul is None:
            raise RuntimeError("the Consul client is made by start() or once()")
        return self._consul.agent

    # -- the work loop ----------------------------------------------------------------------

    async def _work(self) -> None:
        self._queue.put_nowait(_FULL)
        next_full = float("inf")
        while not self._stopped.is_set():
            timeout = max(0.0, next_full - self._clock()) if next_full != float("inf") else None
            items = await self._next_items(timeout)
            if self._stopped.is_set():
                return
            full = not items or _FULL in items
            if full:
                ok = await self.resync()
                wait = (self.settings.resync or float("inf")) if ok else self.settings.retry
                next_full = self._clock() + wait
                continue
            for _, container_id, name in dict.fromkeys(items):
                if not await self.reconcile_container(container_id, name):
                    next_full = min(next_full, self._clock() + self.settings.retry)

    async def _next_items(self, timeout: float | None) -> list[tuple]:
        """Wait for queued work (or ``timeout`` seconds: returns ``[]``) then drain it."""
        getter = asyncio.ensure_future(self._queue.get())
        stopper = asyncio.ensure_future(self._stopped.wait())
        await asyncio.wait({getter, stopper}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not getter.done():
            getter.cancel()
            return []
        items = [getter.result()]
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    # -- Docker events (a thread) -------------------------------------------------------------

    def _watch_events(self) -> None:
        failures = 0  # consecutive connection failures, for the reconnect backoff
        while not self._stopping.is_set():
            client = None
            try:
                client = self._docker_factory()
                stream = client.events(decode=True, filters={"type": ["container", "service"]})
                self._stream = stream  # stop() closes it to end the loop below
                if self._stopping.is_set():
                    break
                self._call(self._docker_connected)
                failures = 0
                for event in stream:
                    self._call(self._on_event, event)
                reason = "Docker event stream ended"
            except Exception as err:  # dockerd away or restarting
                reason = f"Docker event stream failed: {err}"
            finally:
                if client is not None:
                    client.close()
            if self._stopping.is_set():
                break
            self._call(self._docker_lost, reason)
            failures += 1
            self._stopping.wait(backoff_delay(failures, base=0.5, cap=10.0))  # stop wakes it

    def _call(self, fn, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closing
                pass

    def _docker_connected(self) -> None:
        log.info("watching Docker events")
        self._queue.put_nowait(_FULL)  # events may have been missed while not watching

    def _docker_lost(self, reason: str) -> None:
        self._docker_failed("lost the Docker event stream; reconnecting", reason)

    def _docker_ok(self) -> None:
        if self._docker_problem not in (None, "not read yet"):
            log.info("Docker reachable again")
        self._docker_problem = None

    def _consul_ok(self) -> None:
        if self._consul_problem not in (None, "not read yet"):
            log.info("Consul agent reachable again")
        self._consul_problem = None

    def _docker_failed(self, what: str, reason: str, **fields: str) -> None:
        """Record a Docker failure; log it at warning level once per outage."""
        first = self._docker_problem is None or self._docker_problem == "not read yet"
        self._docker_problem = reason
        self.health.record_failure("docker")
        logger = log.bind(**fields)
        (logger.warning if first else logger.debug)(what, error=reason)

    def _on_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("Type")
        action = str(event.get("Action") or "")
        if kind == "container" and action in _CONTAINER_ACTIONS:
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            self._queue.put_nowait(("container", str(event.get("id") or ""),
                                    str(attributes.get("name") or "")))
        elif (kind == "container" and action in _FULL_CONTAINER_ACTIONS) or (
                kind == "service" and action in _SERVICE_ACTIONS):
            self._queue.put_nowait(_FULL)

    # -- reconciling ----------------------------------------------------------------------------

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._docker_factory()
        return self._client

    async def _node_address(self) -> str:
        if self.settings.ip:
            return self.settings.ip
        if not self._address:
            self._address = await asyncio.to_thread(lambda: node_address(self._docker()))
        return self._address

    async def resync(self) -> bool:
        """Reconcile every container. Returns whether it succeeded."""
        with self.health.time_reconcile():
            try:
                address = await self._node_address()
                states, unread = await asyncio.to_thread(lambda: read_running(self._docker()))
            except Exception as err:
                self._docker_failed("cannot read Docker; registrations stay as they are",
                                    f"cannot read Docker: {err}")
                return False
            self._docker_ok()
            wanted = [self._wanted(state, address) for state in states]
            present = {state.id for state in states}
            for container_id in list(self._reported):
                if container_id not in present:
                    del self._reported[container_id]
            try:
                current = ours(await self._agent().services(), self.node)
            except Exception as err:
                return self._consul_failed(err)
            regs = [reg for item in wanted for reg in item.registrations]
            plan = make_plan(current, regs, keep=[scope_prefix(self.node, name)
                                                 for name in unread])
            owners = {reg.id: state for state, item in zip(states, wanted)
                      for reg in item.registrations}
            if not await self._apply(plan, owners):
                return False
        self._consul_ok()
        self.health.record_success()
        self.resyncs += 1
        log.debug("resync done", containers=len(states), services=len(regs),
                  registered=len(plan.register), deregistered=len(plan.deregister))
        await self._flush_pending()
        return True

    async def reconcile_container(self, container_id: str, name: str) -> bool:
        """Reconcile the services of one container (after one of its events)."""
        try:
            address = await self._node_address()
            state = await asyncio.to_thread(
                lambda: read_container(self._docker(), container_id, name))
        except Exception as err:
            self._docker_failed("cannot inspect container; retrying with a resync",
                                f"cannot read Docker: {err}", container=name)
            return False
        self._docker_ok()
        if not state.name:
            return True  # gone before we learnt its name: the next resync tidies up
        wanted = self._wanted(state, address)
        try:
            current = ours(await self._agent().services(), self.node)
        except Exception as err:
            return self._consul_failed(err)
        plan = make_plan(current, wanted.registrations,
                         scope=scope_prefix(self.node, state.name))
        if not await self._apply(plan, {reg.id: state for reg in wanted.registrations}):
            return False
        self._consul_ok()
        await self._flush_pending()
        return True

    def _wanted(self, state: ContainerState, address: str) -> Wanted:
        if state.inspect is None:
            self._reported.pop(state.id, None)
            return Wanted(container=state.name)
        wanted = wanted_for_container(state.inspect, rules=self.rules, node_address=address,
                                      service_labels=state.service_labels)
        if wanted.rejected is not None:
            self._reject(state, wanted.rejected)
        else:
            self._reported.pop(state.id, None)
        return wanted

    def _consul_failed(self, err: Exception) -> bool:
        first = self._consul_problem is None or self._consul_problem == "not read yet"
        self._consul_problem = f"cannot reach Consul: {str(err) or type(err).__name__}"
        self.health.record_failure("consul")
        (log.warning if first else log.debug)(
            "cannot reach the Consul agent; retrying",
            error=str(err) or type(err).__name__)
        return False

    async def _apply(self, plan: Plan, owners: Mapping[str, ContainerState]) -> bool:
        if plan.empty:
            return True
        agent = self._agent().service
        with self.health.time_apply():
            try:
                for reg in plan.register:
                    checks = [check.as_consul() for check in reg.checks]
                    try:
                        await agent.register(
                            reg.name, service_id=reg.id, address=reg.address, port=reg.port,
                            tags=list(reg.tags), meta=dict(reg.meta),
                            check=checks[0] if checks else None, extra_checks=checks[1:],
                            replace_existing_checks=True)
                    except BadRequest as err:
                        state = owners.get(reg.id)
                        if state is not None:
                            self._reject(state, Rejected(
                                "consul-refused",
                                f"Consul refused service {reg.id}: {str(err)[:300]}"))
                        continue
                    log.info("registered", id=reg.id, service=reg.name, address=reg.address,
                             port=reg.port)
                for service_id in plan.deregister:
                    await agent.deregister(service_id)
                    log.info("deregistered", id=service_id)
            except Exception as err:
                return self._consul_failed(err)
        return True

    # -- error events ---------------------------------------------------------------------------

    def _reject(self, state: ContainerState, rejected: Rejected) -> None:
        """Log and publish (once per container and message) why a container was skipped."""
        if self._reported.get(state.id) == rejected.message:
            return
        self._reported[state.id] = rejected.message
        self.health.errors.labels(kind=rejected.reason).inc()
        log.warning("container skipped", container=state.name, reason=rejected.reason,
                    detail=rejected.message)
        event = ErrorEvent(source=SOURCE, reason=rejected.reason,
                           message=f"container {state.name}: {rejected.message}",
                           instance_id=scope_prefix(self.node, state.name).rstrip(":"),
                           node=self.node, observed_at=int(time.time() * 1000))
        digest = hashlib.sha256(f"{state.id}\0{rejected.message}".encode()).hexdigest()[:16]
        self._pending.append((f"{SOURCE}:{self.node}:{digest}", event))

    async def _flush_pending(self) -> None:
        if self._js is None or self._nc is None or not self._nc.is_connected:
            return
        subject = error_subject(SOURCE)
        while self._pending:
            msg_id, event = self._pending[0]
            try:
                await publish_event(self._js, subject, event, msg_id=msg_id)
            except Exception as err:
                (log.debug if self._publish_failing else log.warning)(
                    "cannot publish an error event yet (is the stream declared?); it waits",
                    error=str(err) or type(err).__name__, waiting=len(self._pending))
                self._publish_failing = True
                return
            self._publish_failing = False
            self._pending.popleft()
            self.health.events_published.labels(subject=subject).inc()

    async def _nats_loop(self) -> None:
        """Connect to NATS in the background (retrying forever); never blocks registering."""
        failures = 0
        warned = False
        while True:
            try:
                nc = await connect_nats(self.common, name=f"unify-registrator-{self.node}",
                                        fail_fast=True)
            except Exception as err:
                if not warned:
                    log.warning("NATS unreachable; registering goes on, error events wait",
                                error=str(err) or type(err).__name__)
                    warned = True
                failures += 1
                await asyncio.sleep(backoff_delay(failures, base=1.0, cap=30.0))
                continue
            break
        await nc.close()  # the fail-fast connection never reconnects: open the lasting one
        self._nc = await connect_nats(self.common, name=f"unify-registrator-{self.node}")
        self._js = self._nc.jetstream()
        log.info("connected to NATS")
        while True:  # the stream is consul-bridge's: events wait until it exists
            await self._flush_pending()
            await asyncio.sleep(self.settings.retry)


async def run(settings: RegistratorSettings, common: CommonSettings,
              health_addr: tuple[str, int]) -> None:
    """Run one registrator until SIGTERM/SIGINT
    (:func:`unify_common.runloop.run_until_stopped`)."""
    registrator = Registrator(settings, common, health_addr=health_addr)
    await run_until_stopped(registrator.start, registrator.close, serve=registrator.serve)
