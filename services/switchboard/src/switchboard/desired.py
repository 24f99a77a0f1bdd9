"""Catalog instances -> the desired HAProxy state (pure: same inputs, same result).

Routing rules (each one a stated, deterministic choice):

* Services are handled oldest first: lowest ``create_index`` of their instances, then name.
  A frontend port, a ``(port, host, prefix)`` HTTP route and a ``(port, host)`` TLS
  pass-through route belong to the first service that claims them; later claimants are
  rejected (``port-conflict`` / ``route-conflict``) and keep their other routes.
* A port keeps the kind (``http``, ``https``, ``tcp``) it had in the previous state
  (``previous_ports``) while any service still claims it for that kind and is served on it:
  when the service that won the port goes, an older claimant of another kind, rejected until
  then, does not take the port from the vhosts still served on it. Like slots, this makes
  the result depend on the previous state as well as on the catalog; a first build has none.
* A service none of whose instances asks for a frontend (no ``vhost``, ``http``, ``https``
  or ``tcp`` tag) is not routed and its instances are not compared: the HAProxy service
  itself carries ``dns=`` tags only (the domains it answers, for dns411), and instances
  adding a domain one at a time are no ``tag-disagreement``.
* ``http`` and ``https`` listeners need a ``vhost`` (``missing-vhost`` otherwise); the service
  answers on ``<vhost>.<dns>`` for every ``dns`` domain whose joined name passes the one
  host-name rule of ``unify_common.hostnames`` (``invalid-name`` otherwise, the words dns411
  uses too). ``tcp`` listeners take the whole port.
* TLS (``ssl`` tag): ``offloading`` ends TLS at HAProxy; ``bridge`` ends it and re-encrypts to
  the servers; ``backend`` keeps clients on plain HTTP and encrypts to the servers (not valid on
  an ``https`` listener); ``pass-through`` routes the TLS stream by SNI untouched (``https``
  listeners only). Without the tag the servers are taken to speak TLS when every instance
  listens on port 443: an ``https`` listener then defaults to ``bridge``, else to
  ``offloading``.
* A terminating ``https`` route needs a certificate covering its host (exact name or a
  one-label ``*.`` wildcard); without one the route is skipped (``missing-certificate``).
* Health checks: HTTP backends check ``GET /`` unless the tag says otherwise; TCP backends
  (``tcp`` listeners, pass-through) use a connect check; ``check=disabled`` turns them off.
* A port another program holds on the node (found by the shell) is left out
  (``port-unavailable``), so one such tag cannot block every other change.
* Servers: Consul ``passing`` -> ``ready``; ``warning`` -> ``drain``; ``critical`` -> ``maint``.
* Which listener a vhost can be served on (``missing-vhost``, ``ssl-mode-conflict``), the
  TLS plan of the ``ssl`` tag and when a certificate is needed are the shared rule of
  :mod:`unify_common.listeners`, which dns411 applies too.
* Verdicts (:attr:`~switchboard.model.Desired.verdicts`, published for dns411): every host
  name a routed service asks for is accepted when a frontend routes it, else rejected with
  the first reason met (see :func:`_verdicts`).
* Every rejection of a service's claim (``port-conflict``, ``route-conflict``,
  ``missing-vhost``, ``invalid-name``, ``ssl-mode-conflict``, ``missing-certificate``,
  ``port-unavailable``, ``name-collision``) is one problem per instance the service follows,
  with that instance's ``instance_id`` and ``node``: the registrations an operator has to fix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple, TypedDict

from unify_common.events import Instance

if TYPE_CHECKING:  # the private modules ship no stubs; they make the same objects as hashlib's
    from hashlib import sha256 as _sha256
else:  # CPython's own SHA-256: for inputs this short, cheaper than OpenSSL's (no EVP context)
    try:
        from _sha256 import sha256 as _sha256  # Python <= 3.11
    except ImportError:  # pragma: no cover - depends on the Python version
        try:
            from _sha2 import sha256 as _sha256  # Python >= 3.12
        except ImportError:
            from hashlib import sha256 as _sha256
from unify_common.hostnames import name_error
from unify_common.listeners import (
    VhostVerdict,
    certificate_covers,
    listener_refusal,
    needs_certificate,
    tls_plan,
)
from unify_common.problems import Problem
from unify_common.tags import UnifyTags

from .gcpause import gc_paused
from .model import Backend, Certificate, Desired, Frontend, HttpRoute, Server, SniRoute
from .slots import assign_slots, fresh_capacity
from .validate import consensus, instance_problem, usable_tags

__all__ = ["DEFAULT_PROFILE", "DesiredBuilder", "backend_name", "build_desired", "certificate_for",
           "clear_caches", "frontend_ports", "order_routes", "spare_backends"]

_STATE = {"passing": "ready", "warning": "drain", "critical": "maint"}

#: A usable instance with its catalog key and its server: ``(key, instance, server)``; one
#: tuple per instance, which is also what a build remembers of it (see :class:`_Memo`).
Member = tuple[str, Instance, Server]

#: What a build concluded of one instance: its :data:`Member` tuple when usable, else
#: ``(None, instance, problem)``.
Verdict = Member | tuple[None, Instance, Problem]


class Followed(NamedTuple):
    """One routed service as the claims see it: the tags its agreeing ``members`` follow,
    its TLS plan (:func:`_ssl_plan`: whether the servers speak TLS, the https mode), and
    its claim order (lowest ``create_index``, then name)."""

    create_index: int
    service: str
    tags: UnifyTags
    members: list[Member]
    server_tls: bool
    https_mode: str
_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


@lru_cache(maxsize=1 << 14)
def backend_name(mode: str, service: str) -> str:
    """``be_<mode>_<service cleaned to [a-z0-9_.-], 32 chars max>_<8 hex of SHA-256>``."""
    clean = _UNSAFE.sub("_", service.lower())[:32]
    digest = hashlib.sha256(service.encode()).hexdigest()[:8]
    return f"be_{mode}_{clean}_{digest}"


def certificate_for(host: str, certificates: Sequence[Certificate]) -> Certificate | None:
    """The first certificate (in the given order) covering ``host``
    (:func:`unify_common.listeners.certificate_covers`: exactly, or by a wildcard ``*.rest``
    where ``host`` is ``<one label>.rest``); ``None`` when none does."""
    for cert in certificates:
        if certificate_covers(host, cert.names):
            return cert
    return None


def order_routes(routes: Iterable[HttpRoute]) -> tuple[HttpRoute, ...]:
    """Routes in ``use_backend`` order: by host; within a host the longest prefix first and the
    no-prefix route (the rest of the host) last."""
    return tuple(sorted(set(routes), key=lambda r: (
        r.host, r.prefix is None, -len(r.prefix or ""), r.prefix or "")))


@dataclass
class _Claims:
    port_kind: dict[int, tuple[str, str]] = field(default_factory=dict)
    http: dict[tuple[int, str, str | None], str] = field(default_factory=dict)
    host_mode: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)
    routes: dict[int, list[HttpRoute]] = field(default_factory=dict)
    sni: dict[int, list[SniRoute]] = field(default_factory=dict)
    tcp: dict[int, str] = field(default_factory=dict)
    used_backends: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    unavailable: frozenset[int] = frozenset()
    #: port -> (the kind it keeps, the service that will own it): held in the previous
    #: state and still claimed for that kind
    held: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    #: the instances of the service being claimed for (each rejection names every one)
    members: list[Member] = field(default_factory=list)
    #: host -> its first host-specific rejection ``(reason, message, service)``
    refused_hosts: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    #: service -> its first rejection ``(reason, message)`` (for hosts with none of their own)
    refused_services: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: services that own a TCP frontend (HAProxy answers on its port whatever the name)
    tcp_services: set[str] = field(default_factory=set)

    def reject(self, reason: str, message: str, service: str, host: str | None = None
               ) -> None:
        self.problems.extend(_rejected(reason, message, service, self.members))
        self.refused_services.setdefault(service, (reason, message))
        if host is not None:
            self.refused_hosts.setdefault(host, (reason, message, service))

    def port(self, port: int, kind: str, service: str) -> bool:
        if port in self.unavailable:
            self.reject("port-unavailable", f"port {port} is held by another program on "
                        "this node; its routes wait until it is free", service)
            return False
        held = self.held.get(port)
        if held is not None and held[0] != kind:
            self.reject("port-conflict", f"port {port} is already used for {held[0]} by "
                        f"service {held[1]!r}", service)
            return False
        owner = self.port_kind.setdefault(port, (kind, service))
        if owner[1] == service and owner[0] == kind:
            return True
        if owner[0] == kind and kind != "tcp":
            return True
        self.reject("port-conflict", f"port {port} is already used for {owner[0]} by "
                    f"service {owner[1]!r}", service)
        return False

    def host(self, port: int, host: str, how: str, service: str) -> bool:
        owner = self.host_mode.setdefault((port, host), (how, service))
        if owner[0] == how and (how == "terminate" or owner[1] == service):
            return True
        self.reject("route-conflict", f"{host} on port {port} is already routed "
                    f"({owner[0]}) by service {owner[1]!r}", service, host)
        return False

    def http_route(self, port: int, host: str, prefix: str | None, backend: str,
                   service: str) -> None:
        owner = self.http.setdefault((port, host, prefix), service)
        if owner != service:
            self.reject("route-conflict", f"{host}{prefix or ''} on port {port} is already "
                        f"routed to service {owner!r}", service, host)
            return
        self.routes.setdefault(port, []).append(HttpRoute(host, prefix, backend))
        self.used_backends.add(backend)


def _rejected(reason: str, message: str, service: str, members: list[Member]) -> list[Problem]:
    """One problem per rejected instance (``instance_id`` and ``node`` set), so an operator
    sees which registrations to fix; the message is the same for each, so one instance more
    or less reports only that instance."""
    return [Problem(reason=reason, message=message, service=service,
                    instance_id=inst.instance_id, node=inst.node) for _, inst, _ in members]


def _ssl_plan(tags: UnifyTags, members: list[Member]) -> tuple[bool, str]:
    """(servers speak TLS, https mode): :func:`unify_common.listeners.tls_plan` of the
    service's ``ssl`` tag and its members' ports."""
    return tls_plan(tags.ssl, (i.port for _, i, _ in members))


@lru_cache(maxsize=1 << 14)
def _hosts(vhost: str | None, dns: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the names ``<vhost>.<dns>`` a service answers on, the ``invalid-name`` messages of
    the joined names the one host-name rule refuses: ``unify_common.hostnames``, the rule
    dns411 applies too, so HAProxy never routes a name DNS cannot hold)."""
    if not vhost:
        return (), ()
    joined = [f"{vhost}.{domain}" for domain in dns]
    errors = [(host, name_error(host)) for host in joined]
    return (tuple(h for h, e in errors if e is None),
            tuple(e for _, e in errors if e is not None))


def _first_claimants(followed: list[Followed]) -> dict[tuple[int, str], str]:
    """``(port, kind)`` -> the first service (in claim order) that claims the port for that
    kind, counting only listeners that reach the port check of :func:`_claim_service` (an
    ``http``/``https`` listener needs hosts and an ``ssl`` mode that allows it)."""
    first: dict[tuple[int, str], str] = {}
    for item in followed:
        tags, service = item.tags, item.service
        has_hosts = bool(_hosts(tags.vhost, tags.dns)[0])
        for listener in tags.listeners:
            if listener_refusal(listener, tags.ssl, has_hosts) is None:
                first.setdefault((listener.port, listener.protocol), service)
    return first


def _serves(claims: _Claims, port: int) -> bool:
    """Whether ``port`` ends up with a frontend: a TCP owner, or HTTP/SNI routes."""
    return port in claims.tcp or bool(claims.routes.get(port) or claims.sni.get(port))


def _claim_ports(followed: list[Followed], certificates: Sequence[Certificate],
                 unavailable_ports: frozenset[int],
                 previous_ports: Mapping[int, str] | None) -> _Claims:
    """Every service's claims, in order. A port keeps its previous kind while a service
    claims it for that kind, unless those claims leave it serving nothing (every such
    route skipped, e.g. for a missing certificate): then the port is open to all claimants,
    as in a first build, so the same catalog gives the same result on the next build."""
    first = _first_claimants(followed) if previous_ports else {}
    held = {port: (kind, first[port, kind]) for port, kind in (previous_ports or {}).items()
            if (port, kind) in first}
    while True:
        claims = _Claims(unavailable=unavailable_ports, held=held)
        for item in followed:
            claims.members = item.members
            _claim_service(item.service, item.tags, item.https_mode, claims, certificates)
        idle = {port for port in held if not _serves(claims, port)}
        if not idle:
            return claims
        held = {port: owner for port, owner in held.items() if port not in idle}


def _claim_service(service: str, tags: UnifyTags, https_mode: str, claims: _Claims,
                   certificates: Sequence[Certificate]) -> None:
    hosts, name_errors = _hosts(tags.vhost, tags.dns)
    for error in name_errors:
        claims.reject("invalid-name", error, service)
    prefix = None if tags.url_prefix in (None, "/") else tags.url_prefix
    http_backend, tcp_backend = backend_name("http", service), backend_name("tcp", service)
    for listener in tags.listeners:
        port, proto = listener.port, listener.protocol
        if proto == "tcp":
            if claims.port(port, "tcp", service):
                claims.tcp[port] = tcp_backend
                claims.used_backends.add(tcp_backend)
                claims.tcp_services.add(service)
            continue
        refusal = listener_refusal(listener, tags.ssl, bool(hosts))
        if refusal is not None:
            # a vhost whose every name is refused has said so already (invalid-name)
            if refusal.reason != "missing-vhost" or not name_errors:
                claims.reject(refusal.reason, refusal.message, service)
            continue
        if not claims.port(port, "https" if proto == "https" else "http", service):
            continue
        certified = needs_certificate(listener, https_mode)
        for host in hosts:
            if proto == "https" and not certified:  # pass-through
                if claims.host(port, host, "pass-through", service):
                    claims.sni.setdefault(port, []).append(SniRoute(host, tcp_backend))
                    claims.used_backends.add(tcp_backend)
                continue
            if certified:
                if certificate_for(host, certificates) is None:
                    claims.reject("missing-certificate",
                                  f"no certificate covers {host}; https route skipped",
                                  service, host)
                    continue
                if not claims.host(port, host, "terminate", service):
                    continue
            claims.http_route(port, host, prefix, http_backend, service)


def _backend(name: str, mode: str, service: str, tags: UnifyTags, members: list[Member],
             server_ssl: bool, previous: Mapping[str, Sequence[str | None]],
             min_slots: int) -> Backend:
    servers = {key: server for key, _, server in members}
    layout = previous.get(name)
    slots: tuple[Server | None, ...]
    if layout is None:  # a fresh layout, assign_slots' rule without its general case
        count = len(servers)
        slots = tuple([servers[key] for key in sorted(servers)]) + (None,) * (
            fresh_capacity(count, min_slots) - count)
    else:  # a free slot's None maps to None
        slots = tuple([None if key is None else servers[key]
                       for key in assign_slots(list(servers), layout, min_slots)])
    if tags.check is not None and not tags.check.enabled:
        check = None
    elif mode == "tcp":
        check = ("tcp", "")
    elif tags.check is not None:
        check = (tags.check.method, tags.check.path)
    else:
        check = ("GET", "/")
    return Backend(name=name, service=service, mode=mode,
                   balance=tags.balance or "roundrobin", check=check,
                   server_ssl=server_ssl and mode == "http", slots=tuple(slots))


def _drop_name_collisions(followed: list[Followed], problems: list[Problem],
                          collided: dict[str, tuple[str, str]]) -> list[Followed]:
    """Two services whose backend names collide (same cleaned name and same 32-bit digest):
    the older keeps it, the other is rejected (``name-collision``) instead of breaking the
    whole configuration with a duplicate backend."""
    owners: dict[str, str] = {}
    kept = []
    for item in followed:
        service = item.service
        name = backend_name("http", service)
        owner = owners.setdefault(name, service)
        if owner != service:
            message = f"backend name {name} is already used by service {owner!r}"
            problems.extend(_rejected("name-collision", message, service, item.members))
            collided[service] = ("name-collision", message)
            continue
        kept.append(item)
    return kept


def build_desired(instances: Iterable[Instance] | Mapping[str, Instance], *, certificates: Sequence[Certificate] = (),
                  previous_slots: Mapping[str, Sequence[str | None]] | None = None,
                  min_slots: int = 4, unavailable_ports: frozenset[int] = frozenset(),
                  spare_backends: int = 0,
                  previous_ports: Mapping[int, str] | None = None) -> Desired:
    """Build the desired state from the whole catalog.

    :param instances: every catalog instance (any service, any health); or a mapping of
        catalog key -> instance (the catalog bucket's own keys, which consul-bridge writes
        as :func:`unify_common.events.catalog_key`), which spares hashing every key.
    :param certificates: usable TLS bundles, sorted by path (see :mod:`switchboard.apply.certstore`).
    :param previous_slots: backend name -> last slot layout (see :mod:`switchboard.slots`).
    :param min_slots: smallest slot count of a fresh backend layout.
    :param unavailable_ports: frontend ports another program holds on this node; their
        claims are rejected (``port-unavailable``) so the rest can still be applied.
    :param spare_backends: how many spare backends to add (see :func:`spare_backends`).
    :param previous_ports: frontend port -> its kind (``http``, ``https``, ``tcp``) in the
        previous state (see :func:`frontend_ports`); a port keeps its kind while claimed
        for it (see the module doc).
    :returns: the :class:`Desired` state; ``problems`` lists every rejected input, sorted.

    Remembers what it derived for the next call, in one builder shared by every caller of
    this function (tests, benchmarks); a service holds a :class:`DesiredBuilder` of its own.
    """
    return _shared.build(instances, certificates=certificates, previous_slots=previous_slots,
                         min_slots=min_slots, unavailable_ports=unavailable_ports,
                         spare_backends=spare_backends, previous_ports=previous_ports)


def frontend_ports(desired: Desired) -> dict[int, str]:
    """Frontend port -> its kind (``http``, ``https``, ``tcp``) in ``desired``: the
    ``previous_ports`` of the next build."""
    return {fe.port: fe.kind for fe in desired.frontends}


#: The backend settings of a service without ``balance``, ``check`` or ``ssl`` tags on plain
#: HTTP: what a spare backend is rendered with, so it can stand in for such a service.
class Profile(TypedDict):
    """The backend settings a spare backend shares with the services it can stand in for:
    the :class:`~switchboard.model.Backend` fields of the same names."""

    mode: str
    balance: str
    check: tuple[str, str]
    server_ssl: bool


DEFAULT_PROFILE: Profile = {"mode": "http", "balance": "roundrobin", "check": ("GET", "/"),
                   "server_ssl": False}


def spare_backends(count: int, slots: int) -> tuple[Backend, ...]:
    """``count`` spare backends ``be_spare_<i>`` (i from 1) of the default profile
    (:data:`DEFAULT_PROFILE`), each with ``slots`` free slots and no route to it.

    A spare lets a new default-profile vhost serve before the reload that adds its own
    backend: the runtime API fills its slots and points the vhost's host at it in the
    frontend's host map (:func:`switchboard.plan.spare_commands`). The rendered
    configuration always holds them empty, so rendering stays a function of the catalog.
    """
    return tuple(Backend(name=f"be_spare_{index}", service="", slots=(None,) * slots,
                         **DEFAULT_PROFILE) for index in range(1, count + 1))


class _Memo:
    """What the previous build derived per instance, per service and per backend, reused when
    the inputs are the same objects.

    ``verdicts``: ``id(instance) ->`` its :data:`Member` tuple when usable, else
    ``(None, instance, problem)``. An ``Instance`` is immutable and the catalog mirror keeps
    the same objects between snapshots, so an instance seen by the previous build need not
    be checked (nor its key hashed, nor its server built) again; holding the instance keeps
    its id from being reused meanwhile. The members list of a service holds those tuples,
    so an equal list (compared item by item, identity first) means the same instances in the
    same order, and everything derived from them alone is equal too. Each build keeps only
    what it used.
    """

    def __init__(self) -> None:
        self.verdicts: dict[int, Verdict] = {}
        self.services: dict[str, tuple[list[Member], tuple[Followed, list[Problem]]]] = {}
        self.backends: dict[str, tuple[list[Member], object, int, Backend]] = {}


class DesiredBuilder:
    """Builds desired states (:meth:`build`, the arguments of :func:`build_desired`),
    remembering across its builds what the previous one derived (see :class:`_Memo`), so a
    build after a small change of the catalog costs a fraction of the first. Results never
    depend on what it remembers. The reconciler owns one; each builder remembers only its
    own last build."""

    def __init__(self) -> None:
        self._memo = _Memo()

    def clear(self) -> None:
        """Forget everything remembered (the next build starts from nothing)."""
        self._memo = _Memo()

    def build(self, instances: Iterable[Instance] | Mapping[str, Instance], *,
              certificates: Sequence[Certificate] = (),
              previous_slots: Mapping[str, Sequence[str | None]] | None = None,
              min_slots: int = 4, unavailable_ports: frozenset[int] = frozenset(),
              spare_backends: int = 0,
              previous_ports: Mapping[int, str] | None = None) -> Desired:
        """See :func:`build_desired`."""
        with gc_paused():
            return _build(self._memo, instances, certificates, previous_slots, min_slots,
                          unavailable_ports, spare_backends, previous_ports)


#: the builder of :func:`build_desired` (callers without one of their own: tests, benchmarks)
_shared = DesiredBuilder()


def clear_caches() -> None:
    """Forget everything :func:`build_desired` remembered across builds (per-instance
    checks, keys and servers, per-service and per-backend results). Results never depend on
    it; benchmarks and tests use it to measure or check a build from nothing."""
    _shared.clear()


class _Group:
    """One service's usable instances (:data:`Member` tuples), as the pass over the catalog
    meets them, and what the common case of :func:`~switchboard.validate.consensus` needs
    (do all carry the raw tags of the first, their lowest ``create_index``), gathered on
    the way instead of in passes of their own. ``tags`` and ``unify`` are the first
    member's: checked, so ``unify`` is the parse of ``tags``."""

    __slots__ = ("members", "tags", "unify", "same", "create_index")

    def __init__(self, member: Member, inst: Instance) -> None:
        self.members = [member]
        self.tags = inst.tags
        self.unify = usable_tags(inst)
        self.same = True
        self.create_index = inst.create_index


def _gather(instances: Iterable[Instance] | Mapping[str, Instance],
            previous: Mapping[int, Verdict], verdicts: dict[int, Verdict]
            ) -> tuple[dict[str, _Group], list[Problem]]:
    """One pass over the catalog: each instance checked (the one rule of
    :func:`~switchboard.validate.instance_problem`), a usable one
    keyed (:func:`~unify_common.events.catalog_key`) with its server and grouped by service;
    untagged ones (``unify`` and ``tag_error`` both ``None``) dropped silently. Services and
    members are in the order of ``instances``; problems in no particular order. From a
    mapping, its keys are taken as the catalog keys (no hashing).

    Raw tags equal to those of the service's first usable member have that member's
    (checked) parse, which is then handed to the check instead of looked up again. An instance the
    previous build saw (the same object) is not checked again. One tuple is allocated per
    instance: fewer young objects for the cyclic collector to walk after the build."""
    groups: dict[str, _Group] = {}
    problems: list[Problem] = []
    pairs = (instances.items() if isinstance(instances, Mapping)
             else ((None, inst) for inst in instances))
    for given, inst in pairs:
        if inst.unify is None and inst.tag_error is None:
            continue
        ident = id(inst)
        verdict = previous.get(ident)
        group = groups.get(inst.service)
        # the group's checked parse when this instance carries the same raw tags
        known = group.unify if group is not None and inst.tags == group.tags else None
        if verdict is None or verdict[1] is not inst:
            problem = instance_problem(inst, known)
            if problem is None:
                # its catalog key (unify_common.events.catalog_key, computed the same way:
                # "i." + 40 hex digits of SHA-256 over node NUL instance id) and its server
                key = given or "i." + _sha256(
                    f"{inst.node}\0{inst.instance_id}".encode()).hexdigest()[:40]
                weight = inst.weight
                if weight != 1:
                    weight = min(256, max(1, weight))
                verdict = (key, inst, Server(key, inst.address, inst.port,
                                             _STATE.get(inst.health, "maint"), weight))
            else:
                verdict = (None, inst, problem)
        verdicts[ident] = verdict
        if verdict[0] is None:
            problems.append(verdict[2])
        elif group is None:
            groups[inst.service] = _Group(verdict, inst)
        else:
            group.members.append(verdict)
            if known is None:
                group.same = False
            if inst.create_index < group.create_index:
                group.create_index = inst.create_index
    return groups, problems


def _asks_for_frontends(group: _Group) -> bool:
    """Whether any instance of the service asks for a frontend (an ``http``/``https``/``tcp``
    listener; a ``vhost`` implies ``http``). A service none of whose instances does, such
    as the HAProxy service itself tagged ``dns=`` only, is nothing switchboard routes."""
    if group.same:
        return bool(group.unify.listeners)
    return any(usable_tags(inst).listeners for _, inst, _ in group.members)


def _follow(service: str, group: _Group,
            previous: Mapping[str, tuple[list[Member], tuple[Followed, list[Problem]]]],
            current: dict[str, tuple[list[Member], tuple[Followed, list[Problem]]]]
            ) -> tuple[Followed, list[Problem]]:
    """What the claims follow of a service, and its ``tag-disagreement`` problems."""
    members = group.members
    seen = previous.get(service)
    if seen is not None and seen[0] == members:
        current[service] = seen
        return seen[1]
    dissent: list[Problem]
    if group.same:  # consensus' common case: equal raw tags, so equal parsed tags
        tags, agreeing, dissent = group.unify, members, []
        create_index = group.create_index
    else:
        pairs = [(key, inst) for key, inst, _ in members]
        tags, agreeing_pairs, dissent = consensus(pairs)
        by_pair = {id(pair): member for pair, member in zip(pairs, members)}
        agreeing = [by_pair[id(pair)] for pair in agreeing_pairs]
        create_index = min(i.create_index for _, i, _ in agreeing)
    server_tls, https_mode = _ssl_plan(tags, agreeing)
    result = (Followed(create_index, service, tags, agreeing, server_tls, https_mode), dissent)
    current[service] = (members, result)
    return result


def _build(_memo: _Memo, instances: Iterable[Instance] | Mapping[str, Instance],
           certificates: Sequence[Certificate],
           previous_slots: Mapping[str, Sequence[str | None]] | None, min_slots: int,
           unavailable_ports: frozenset[int], spares: int,
           previous_ports: Mapping[int, str] | None) -> Desired:
    checked: dict[int, Verdict] = {}
    groups, problems = _gather(instances, _memo.verdicts, checked)
    _memo.verdicts = checked
    memo_services: dict[str, tuple[list[Member], tuple[Followed, list[Problem]]]] = {}
    followed: list[Followed] = []
    dissenting: list[tuple[str, UnifyTags, str]] = []  # (service, tags, message)
    for service, group in groups.items():
        if not _asks_for_frontends(group):
            continue
        item, dissent = _follow(service, group, _memo.services, memo_services)
        if dissent:
            problems.extend(dissent)
            left_out = {(p.instance_id, p.node): p.message for p in dissent}
            dissenting.extend((service, usable_tags(inst), left_out[inst.instance_id, inst.node])
                              for _, inst, _ in group.members
                              if (inst.instance_id, inst.node) in left_out)
        followed.append(item)
    _memo.services = memo_services
    followed.sort(key=lambda item: (item.create_index, item.service))
    collided: dict[str, tuple[str, str]] = {}
    routed = _drop_name_collisions(followed, problems, collided)

    claims = _claim_ports(routed, certificates, unavailable_ports, previous_ports)
    problems.extend(claims.problems)
    verdicts = _verdicts(followed, claims, collided, dissenting)
    followed = routed

    previous = previous_slots or {}
    backends = []
    memo_backends: dict[str, tuple[list[Member], object, int, Backend]] = {}
    for _, service, tags, members, server_tls, _ in followed:
        for mode in ("http", "tcp"):
            name = backend_name(mode, service)
            if name not in claims.used_backends:
                continue
            # a backend is a function of its service's members (tags, TLS plan and name
            # follow from them), its previous layout and min_slots
            layout = previous.get(name)
            seen = _memo.backends.get(name)
            if (seen is not None and seen[0] is members and seen[1] == layout
                    and seen[2] == min_slots):
                backend = seen[3]
            else:
                backend = _backend(name, mode, service, tags, members, server_tls, previous,
                                   min_slots)
            memo_backends[name] = (members, layout, min_slots, backend)
            backends.append(backend)
    _memo.backends = memo_backends

    frontends = []
    for port, (kind, _) in sorted(claims.port_kind.items()):
        routes = order_routes(claims.routes.get(port, ()))
        sni = tuple(sorted(claims.sni.get(port, ())))
        if kind == "tcp":
            if port in claims.tcp:
                frontends.append(Frontend(name=f"fe_tcp_{port}", kind="tcp", port=port,
                                          default_backend=claims.tcp[port]))
            continue
        if not routes and not sni:
            continue
        certs: tuple[Certificate, ...] = ()
        if kind == "https":
            # every terminating route has one (a route without is skipped by the claims)
            certs = tuple(sorted({cert for r in routes
                                  if (cert := certificate_for(r.host, certificates))}))
        frontends.append(Frontend(name=f"fe_{kind}_{port}", kind=kind, port=port,
                                  routes=routes, sni_routes=sni, certificates=certs))
    backends.extend(spare_backends(spares, min_slots))
    return Desired(frontends=tuple(frontends), backends=tuple(sorted(backends,
                   key=lambda b: b.name)), problems=tuple(sorted(set(problems))),
                   verdicts=verdicts)


_ACCEPTED = VhostVerdict(accepted=True)


def _verdicts(followed: list[Followed], claims: _Claims,
              collided: Mapping[str, tuple[str, str]],
              dissenting: Sequence[tuple[str, UnifyTags, str]] = ()
              ) -> dict[str, VhostVerdict]:
    """Host name -> verdict, for every ``<vhost>.<dns>`` a routed service asks for (in claim
    order, name collisions included): accepted when a frontend routes it (an HTTP or SNI
    route, or a TCP frontend of the service, which answers whatever the name); else the
    first rejection of that host (route conflict, missing certificate), else the first
    rejection of the service asking for it, else of the first such service. A joined name
    the host-name rule refuses is rejected as ``invalid-name``. Then the names only
    instances left out of their service ask for (``dissenting``: service, tags, message of
    their ``tag-disagreement``) and no frontend routes: ``tag-disagreement``."""
    served = {route.host for routes in claims.routes.values() for route in routes}
    served.update(route.host for routes in claims.sni.values() for route in routes)
    verdicts: dict[str, VhostVerdict] = {}
    for item in followed:
        tags, service = item.tags, item.service
        if not tags.vhost:
            continue
        hosts, errors = _hosts(tags.vhost, tags.dns)
        if errors:
            for domain in tags.dns:
                name = f"{tags.vhost}.{domain}"
                error = name_error(name)
                if error is not None and name not in verdicts:
                    verdicts[name] = VhostVerdict(False, "invalid-name", error, service)
        for host in hosts:
            if host in served or service in claims.tcp_services:
                verdicts[host] = _ACCEPTED
                continue
            if host in verdicts:
                continue
            found = claims.refused_hosts.get(host)
            if found is not None:
                verdicts[host] = VhostVerdict(False, *found)
                continue
            reason, message = (collided.get(service) or claims.refused_services.get(service)
                               or ("not-routed", f"no frontend routes {host}"))
            verdicts[host] = VhostVerdict(False, reason, message, service)
    for service, tags, message in dissenting:
        for host in _hosts(tags.vhost, tags.dns)[0]:
            if host not in verdicts and host not in served:
                verdicts[host] = VhostVerdict(False, "tag-disagreement", message, service)
    return verdicts
