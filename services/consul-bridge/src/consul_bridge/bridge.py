"""The bridge loop: Consul blocking queries in, events and catalog-bucket writes out.

Blocking queries, all on the local agent: one follows the node list (``/v1/catalog/nodes``);
one per node follows the names of the services on it (``/v1/catalog/node-services/:node``);
one per service follows its instances with their checks (``/v1/health/service/:service``);
one per KV prefix follows ``/v1/kv/:prefix?recurse``. A registration wakes only its node's
query and its service's query, and each answer holds only that node's or that service's
entries, so the cost of a change, a new service included, does not grow with the size of the
catalog. (``/v1/catalog/services`` would wake on every write and Consul builds it by walking
every instance: 16 ms per answer at 10,000 instances.)

A service's health query starts when a node first lists the service (or, at start, when the
catalog bucket holds instances of it) and ends after it answered empty while no node lists
the service any more. Instances are only ever removed from what a service's own health query
answers, through the removal guard.

For every difference an event is published first (with a deterministic ``Nats-Msg-Id``), then
the catalog bucket is written. A crash between the two re-publishes the same id on restart
(JetStream drops it inside its duplicate window) and then writes the bucket.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import time
from collections.abc import Callable

import msgspec
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from unify_common import subjects
from unify_common.catalog import read_catalog
from unify_common.consul_health import decode_health
from unify_common.events import (
    ErrorEvent,
    Instance,
    KvEntry,
    encode_instance,
    instance_from_health_entry,
)
from unify_common.logs import get_logger
from unify_common.natsio import publish_event
from unify_common.retry import retry_forever

from .blocking import blocking_get, next_index
from .diff import Change, diff_instances, diff_kv
from .guard import RemovalGuard
from .settings import BridgeSettings
from .wire import decode_node_names, decode_node_service_names, signature

__all__ = ["Bridge"]

log = get_logger("consul_bridge")


def _freeze_heap() -> None:
    """Move everything allocated so far (the loaded catalog, long-lived tasks) out of the
    cyclic garbage collector's view: otherwise each full collection walks the whole catalog
    and the cost of a change grows with its size."""
    gc.collect()
    gc.freeze()


def _now_ms() -> int:
    return int(time.time() * 1000)


class Bridge:
    """Publish every catalog and KV change; see the module doc.

    :param settings: bridge settings.
    :param client: a ``consul.aio.Consul``.
    :param js: JetStream context; the stream must exist.
    :param bucket: the catalog KV bucket.
    :param clock: monotonic seconds (for the removal guard).
    """

    def __init__(self, settings: BridgeSettings, client, js: JetStreamContext, bucket: KeyValue,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._consul = client
        self._js = js
        self._bucket = bucket
        self._clock = clock
        self._lock = asyncio.Lock()
        self._published: dict[str, dict[str, Instance]] = {}
        self._kv_published: dict[str, KvEntry] = {}
        self._observed: dict[str, tuple[dict[str, Instance], int]] = {}
        self._kv_observed: dict[str, tuple[dict[str, KvEntry], int]] = {}
        self._watchers: dict[str, asyncio.Task] = {}  # service -> its health query
        self._settled: set[str] = set()  # services whose health query last answered empty
        self._node_watchers: dict[str, asyncio.Task] = {}
        self._node_services: dict[str, frozenset[str]] = {}  # node -> its service names
        self._service_nodes: dict[str, int] = {}  # service -> number of nodes listing it
        self._nodes_pending: set[str] = set()  # nodes whose first answer is not in yet
        self._nodes_listed = False
        self._unreadable_nodes: set[str] = set()  # node names Consul cannot be asked about
        self._guard = RemovalGuard(confirm_s=settings.removal_confirm_s,
                                   max_ratio=settings.removal_ratio)
        self._kv_guard = RemovalGuard(confirm_s=settings.removal_confirm_s,
                                      max_ratio=settings.removal_ratio)
        self._wake_guard = asyncio.Event()
        #: number of events published (for status and the benchmark)
        self.published_events = 0
        self.ready = asyncio.Event()

    # -- state -------------------------------------------------------------------------------
    async def load(self) -> None:
        """Load what was published before (the catalog bucket) as the starting point."""
        state = await read_catalog(self._bucket)
        for key, inst in state.instances.items():
            self._published.setdefault(inst.service, {})[key] = inst
        self._kv_published = dict(state.kv)
        log.info("catalog loaded from bucket", instances=len(state.instances), kv=len(state.kv))

    def _known(self) -> int:
        return sum(len(v) for v in self._published.values())

    # -- loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until cancelled. :raises: nothing but cancellation; errors are retried."""
        await self.load()
        # A bridge that just started (or just became leader) may be talking to an agent that
        # just restarted: treat its first answers like those after an index reset.
        self._guard.index_reset(self._clock())
        self._kv_guard.index_reset(self._clock())
        tasks = [asyncio.create_task(self._watch_nodes(), name="watch-nodes"),
                 asyncio.create_task(self._guard_timer(), name="removal-guard")]
        tasks += [asyncio.create_task(self._watch_kv(p), name=f"watch-kv-{p}")
                  for p in self.settings.kv_prefixes]
        try:
            await asyncio.gather(*tasks)
        finally:
            watchers = [*self._node_watchers.values(), *self._watchers.values()]
            for task in [*tasks, *watchers]:
                task.cancel()
            await asyncio.gather(*tasks, *watchers, return_exceptions=True)

    async def _blocking(self, what: str, call, index: int):
        """One blocking call, retried through errors while the last known state stands."""
        return await retry_forever(lambda: call(index), what="Consul query (last known state "
                                   "stands)", log=log, base=0.2, cap=10.0,
                                   fields={"query": what})

    async def _changes(self, path: str):
        """Yield ``(index, body)`` of each answer of a blocking query on ``path`` that may
        carry a change (a new ``X-Consul-Index``), forever; index resets go to the removal
        guard (see :mod:`.blocking`)."""
        wait = f"{int(self.settings.wait_s)}s"
        index = 0
        while True:
            returned, body = await self._blocking(
                path, lambda i: blocking_get(self._consul, path, index=i, wait=wait), index)
            step = next_index(index, returned)
            if step.reset:
                # one line for the node list; per node and per service it is the same news
                (log.warning if path == "/v1/catalog/nodes" else log.debug)(
                    "Consul index went backwards; resetting", query=path, previous=index,
                    returned=returned)
                self._guard.index_reset(self._clock())
            index = step.index
            if step.changed:
                yield returned, body

    async def _watch_nodes(self) -> None:
        """Follow the node list (``/v1/catalog/nodes``): one :meth:`_watch_node` per node."""
        last_nodes = None
        async for returned, body in self._changes("/v1/catalog/nodes"):
            try:
                nodes = decode_node_names(body)
            except msgspec.MsgspecError as err:
                log.error("unreadable nodes answer ignored", error=str(err))
                continue
            if nodes == last_nodes:
                continue  # a node's address or meta changed, none came or went
            last_nodes = nodes
            unreadable = {n for n in nodes if not n.isprintable()}
            for node in sorted(unreadable - self._unreadable_nodes):
                await self._reject_name("node", node, returned)
            self._unreadable_nodes = unreadable
            nodes -= unreadable
            for node in sorted(nodes - self._node_watchers.keys()):
                self._nodes_pending.add(node)
                self._node_watchers[node] = asyncio.create_task(
                    self._watch_node(node), name=f"watch-node-{node}")
            for node in sorted(self._node_watchers.keys() - nodes):
                self._node_watchers.pop(node).cancel()
                self._nodes_pending.discard(node)
                await self._node_services_changed(node, frozenset(), returned)
            self._nodes_listed = True
            self._maybe_ready()

    async def _watch_node(self, node: str) -> None:
        """Follow the service names on one node (``/v1/catalog/node-services/:node``). A
        registration or deregistration on this node wakes only this query (Consul watches the
        node's own part of its services table), and its answer holds only this node's
        services, so finding a new service costs the same at any catalog size."""
        last_names = None
        async for returned, body in self._changes(f"/v1/catalog/node-services/{node}"):
            try:
                names = decode_node_service_names(body) - self.settings.ignore_services
            except msgspec.MsgspecError as err:
                log.error("unreadable node services answer ignored", node=node, error=str(err))
                continue
            if names != last_names:
                last_names = names
                await self._node_services_changed(node, names, returned)
            if node in self._nodes_pending:
                self._nodes_pending.discard(node)
                self._maybe_ready()

    async def _node_services_changed(self, node: str, names: frozenset[str],
                                     index: int) -> None:
        """Count on how many nodes each service is registered; a service seen on its first
        node gets its health query, one gone from its last node lets that query end (see
        :meth:`_watch_service`)."""
        before = self._node_services.pop(node, frozenset())
        if names:
            self._node_services[node] = names
        for name in sorted(names - before):
            self._service_nodes[name] = self._service_nodes.get(name, 0) + 1
            if self._service_nodes[name] == 1:
                if name.isprintable():
                    self._ensure_watcher(name)
                else:
                    await self._reject_name("service", name, index)
        for name in before - names:
            left = self._service_nodes.pop(name) - 1
            if left:
                self._service_nodes[name] = left
            elif name in self._settled:
                task = self._watchers.pop(name, None)  # its last answer was already empty
                if task is not None:
                    task.cancel()
                self._settled.discard(name)

    def _ensure_watcher(self, name: str) -> None:
        if name not in self._watchers:
            self._settled.discard(name)
            self._watchers[name] = asyncio.create_task(self._watch_service(name),
                                                       name=f"watch-{name}")

    def _maybe_ready(self) -> None:
        """Once the node list and every node's first answer are in: follow also the services
        published before that no node lists any more (they went while the bridge was away;
        their empty health answer deregisters them), and report ready."""
        if self.ready.is_set() or not self._nodes_listed or self._nodes_pending:
            return
        for name in sorted(self._published.keys() - self._service_nodes.keys()):
            if name.isprintable():
                self._ensure_watcher(name)
        self.ready.set()
        asyncio.get_running_loop().call_later(5.0, _freeze_heap)

    async def _reject_name(self, kind: str, name: str, index: int) -> None:
        """A node or service whose name has control characters (a newline...): Consul answers
        HTTP 400 to any query naming it, so it is skipped, with one error event while it
        exists. (A service on such a node is still seen when another node also has it: its
        health query lists every node.)"""
        shown = repr(name[:200])
        skipped = ("its instances are skipped" if kind == "service" else
                   "services registered only on it are skipped")
        message = (f"{kind} name {shown} has control characters; Consul refuses queries "
                   f"for it (HTTP 400), so {skipped}")
        log.bind(**{kind: shown}).error(f"{kind} skipped", reason=message)
        digest = hashlib.sha256(name.encode(errors="replace")).hexdigest()[:16]
        event = ErrorEvent(source="consul-bridge", reason=f"invalid-{kind}-name",
                           message=message, observed_at=_now_ms(),
                           service=name[:200] if kind == "service" else "",
                           node=name[:200] if kind != "service" else "")
        await self._send(subjects.error_subject("consul-bridge"), event,
                         f"error:{kind}-name:{digest}:{index}")

    async def _watch_service(self, name: str) -> None:
        last_body, last_signature = None, None
        async for returned, body in self._changes(f"/v1/health/service/{name}"):
            if body == last_body:
                continue  # woken by a write that did not change this service
            last_body = body
            try:
                entries = decode_health(body)
            except msgspec.MsgspecError as err:
                log.error("unreadable health answer ignored", service=name, error=str(err))
                continue
            sig = signature(entries)
            if sig == last_signature:
                continue  # only node bookkeeping changed (a write to a shared node)
            last_signature = sig
            current: dict[str, Instance] = {}
            for entry in entries:
                inst = instance_from_health_entry(entry)
                size = len(encode_instance(inst))
                if size > self.settings.max_instance_bytes:
                    await self._reject_oversized(inst, size, returned)
                    continue  # as if absent: never published, never stored
                current[inst.key] = inst
            await self._apply_service(name, current, returned)
            if current:
                self._settled.discard(name)
                continue
            if name in self._service_nodes:
                self._settled.add(name)  # a node still lists it: its registration is coming
                continue
            if self._watchers.get(name) is asyncio.current_task():
                del self._watchers[name]  # gone from every node and from this answer: done
            return

    async def _apply_service(self, service: str, current: dict[str, Instance],
                             index: int) -> None:
        async with self._lock:
            self._observed[service] = (current, index)
            previous = self._published.get(service, {})
            removals = previous.keys() - current.keys()
            allowed = self._guard.filter(set(removals), scope=set(previous),
                                         known=self._known(), now=self._clock())
            effective = dict(current)
            for key in removals - allowed:
                effective[key] = previous[key]  # held back: last known state stands
            if removals - allowed:
                log.warning("removal held until confirmed", service=service,
                            held=len(removals - allowed), confirm_s=self._guard.confirm_s)
                self._wake_guard.set()
            changes = diff_instances(previous, effective, index=index, now_ms=_now_ms())
            for change in changes:
                await self._publish(change)
                bucket = self._published.setdefault(service, {})
                if change.put is None:
                    bucket.pop(change.key, None)
                else:
                    bucket[change.key] = effective[change.key]
                    await self._report_tag_error(effective[change.key], change, index)
            if not self._published.get(service):
                self._published.pop(service, None)
            if not current:
                self._observed.pop(service, None)

    async def _reject_oversized(self, inst: Instance, size: int, index: int) -> None:
        """An instance too large to be an event (hostile or broken tags/meta) is skipped
        with a logged reason and one error event per Consul index."""
        message = (f"instance is {size} bytes encoded, more than the "
                   f"{self.settings.max_instance_bytes} allowed (tags and meta too large)")
        log.error("instance skipped", service=inst.service[:200],
                  instance_id=inst.instance_id[:200], reason=message)
        event = ErrorEvent(source="consul-bridge", reason="instance-too-large",
                           message=message, service=inst.service[:200],
                           instance_id=inst.instance_id[:200], node=inst.node[:200],
                           observed_at=_now_ms())
        await self._send(subjects.error_subject("consul-bridge"), event,
                         f"error:{inst.key}:{index}:too-large")

    async def _report_tag_error(self, inst: Instance, change: Change, index: int) -> None:
        if inst.tag_error is None or change.event.type == "instance.health":
            return
        event = ErrorEvent(source="consul-bridge", reason="invalid-tags",
                           message=inst.tag_error, service=inst.service,
                           instance_id=inst.instance_id, node=inst.node, observed_at=_now_ms())
        log.warning("instance has invalid Unify tags; subscribers will skip it",
                    service=inst.service, instance_id=inst.instance_id, reason=inst.tag_error)
        await self._send(subjects.error_subject("consul-bridge"), event,
                         f"error:{change.key}:{index}:{change.msg_id.rsplit(':', 1)[-1]}")

    async def _guard_timer(self) -> None:
        """Re-apply the scopes whose removals are held once they may be released."""
        while True:
            checks = [t for t in (self._guard.next_check(), self._kv_guard.next_check())
                      if t is not None]
            timeout = None if not checks else max(0.0, min(checks) - self._clock()) + 0.01
            self._wake_guard.clear()
            try:
                await asyncio.wait_for(self._wake_guard.wait(), timeout)
                continue
            except TimeoutError:
                pass
            for service in sorted(self._published):
                current, index = self._observed.get(service, ({}, 0))
                if self._published[service].keys() - current.keys():
                    await self._apply_service(service, current, index)
            for prefix, (entries, kv_index) in sorted(self._kv_observed.items()):
                await self._apply_kv(prefix, entries, kv_index)

    async def _watch_kv(self, prefix: str) -> None:
        wait = f"{int(self.settings.wait_s)}s"
        index = 0
        while True:
            returned, entries = await self._blocking(
                f"kv/{prefix}",
                lambda i: self._consul.kv.get(prefix, recurse=True, index=i, wait=wait), index)
            step = next_index(index, int(returned or 0))
            if step.reset:
                self._kv_guard.index_reset(self._clock())
            index = step.index
            if not step.changed:
                continue
            current = {}
            for e in entries or ():
                if e["Key"].endswith("/") and not e.get("Value"):
                    continue  # a "folder"
                raw = e.get("Value") or b""
                if len(raw) > self.settings.max_instance_bytes:
                    log.error("KV entry skipped: value too large", key=e["Key"][:200],
                              bytes=len(raw))
                    continue
                current[e["Key"]] = KvEntry.from_bytes(
                    e["Key"], raw if isinstance(raw, bytes) else str(raw).encode(),
                    modify_index=int(e.get("ModifyIndex") or 0), flags=int(e.get("Flags") or 0))
            await self._apply_kv(prefix, current, int(returned or 0))

    async def _apply_kv(self, prefix: str, current: dict[str, KvEntry], index: int) -> None:
        async with self._lock:
            self._kv_observed[prefix] = (current, index)
            previous = {k: v for k, v in self._kv_published.items() if k.startswith(prefix)}
            removals = previous.keys() - current.keys()
            allowed = self._kv_guard.filter(set(removals), scope=set(previous),
                                            known=len(self._kv_published), now=self._clock())
            effective = dict(current)
            for key in removals - allowed:
                effective[key] = previous[key]
            if removals - allowed:
                self._wake_guard.set()
            for change in diff_kv(previous, effective, index=index, now_ms=_now_ms()):
                await self._publish(change)
                entry = change.event.entry  # type: ignore[union-attr]
                if change.put is not None and entry.value_base64 is not None:
                    log.info("KV value is not UTF-8: the event carries it as value_base64",
                             key=entry.key[:200], bytes=len(entry.raw))
                if change.put is None:
                    self._kv_published.pop(entry.key, None)
                else:
                    self._kv_published[entry.key] = entry

    # -- output ------------------------------------------------------------------------------
    async def _send(self, subject: str, event, msg_id: str) -> None:
        await retry_forever(lambda: publish_event(self._js, subject, event, msg_id=msg_id),
                            what="publish", log=log, fields={"subject": subject},
                            permanent=(MaxPayloadError,))
        self.published_events += 1

    async def _publish(self, change: Change) -> None:
        try:
            await self._send(change.subject, change.event, change.msg_id)
        except MaxPayloadError:
            # Cannot happen for instances (they are size-checked first); for anything else
            # too large, skip this one change rather than stop the bridge.
            log.error("event larger than the NATS max payload skipped", subject=change.subject,
                      key=change.key)
            return
        def write():  # a fresh coroutine for every attempt
            if change.put is None:
                return self._bucket.delete(change.key)
            return self._bucket.put(change.key, change.put)

        await retry_forever(write, what="catalog bucket write", log=log,
                            fields={"key": change.key})
