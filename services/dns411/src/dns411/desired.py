"""Catalog state -> desired DNS records (pure).

Rules (one instance at a time, instances in catalog-key order):

* Only instances with ``health == "passing"`` and parsed Unify tags take part. An instance
  whose tags failed to parse (``tag_error``) is skipped with an ``invalid-tags`` problem.
* ``dns=<domain>`` without ``vhost``: ``<service>.<domain>`` gets the instance's address
  (A for IPv4, AAAA for IPv6); several instances give several values.
* ``dns=<domain>`` with ``vhost=<v>``: ``<v>.<domain>`` is a CNAME to
  ``<haproxy label>.<domain>``, unless switchboard could never route the instance, judged
  from the instance alone by the rule switchboard routes by
  (:func:`unify_common.listeners.unroutable_vhost`; ``vhost-unroutable``, see
  :func:`unroutable_vhost`), or a live switchboard rejects the name (``vhost-rejected``,
  one problem per name naming switchboard's reason; see :mod:`.verdicts`): rejections that
  depend on other services, the node or switchboard's own state (port and route conflicts,
  a port held on the node, a missing certificate) come from switchboard's published
  verdicts. Without verdicts only the shared rule applies.
* Every instance of the HAProxy service (``haproxy_service``) carrying ``dns=<domain>`` adds
  its address to ``<haproxy label>.<domain>``.

A vhost CNAME whose target has no record (no HAProxy instance for that domain) is kept, with a
``cname-target-missing`` problem.

Conflicts are settled by stated rules: a name holding both addresses and a CNAME keeps the
addresses (``name-conflict``); static records (see :mod:`.static`) never override the
catalog, and Consul KV wins over files (``static-conflict``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from unify_common.events import Instance
from unify_common.listeners import unroutable_vhost as _unroutable_tags
from unify_common.problems import Problem
from unify_common.state import CatalogState

from .model import ADDRESS_TYPES, Desired, RecordSet
from .names import is_hostname, name_error, parse_address
from .verdicts import Judged, Rejection, pending

__all__ = ["build_desired", "merge_sources", "unroutable_vhost"]


def unroutable_vhost(inst: Instance) -> str | None:
    """Why switchboard can route no request of vhost instance ``inst`` whatever the rest of
    the catalog holds, or ``None``:

    * the instance's port is outside 1-65535 (switchboard skips such an instance);
    * every listener is refused by the ``ssl`` tag (the shared rule,
      :func:`unify_common.listeners.unroutable_vhost`).

    :param inst: an instance with parsed Unify tags and a ``vhost``.
    :returns: a message for a ``vhost-unroutable`` problem.
    """
    tags = inst.unify
    assert tags is not None, "called for instances with parsed tags only"
    if not 1 <= inst.port <= 65535:
        return f"port {inst.port} is outside 1-65535; no CNAME for vhost {tags.vhost}"
    return _unroutable_tags(tags)


def _instance_problem(inst: Instance, reason: str, message: str) -> Problem:
    return Problem(reason, message, service=inst.service, instance_id=inst.instance_id,
                   node=inst.node)


def _catalog_pairs(state: CatalogState, haproxy_service: str, haproxy_label: str,
                   problems: list[Problem], rejected: Mapping[str, Rejection],
                   judged: Judged | None = None, waiting: set[str] | None = None
                   ) -> list[tuple[str, str, str]]:
    pairs: list[tuple[str, str, str]] = []
    withheld: dict[str, str] = {}  # name -> the first service asking for it
    for key in sorted(state.instances):
        inst = state.instances[key]
        if inst.tag_error is not None:
            problems.append(_instance_problem(inst, "invalid-tags", inst.tag_error))
            continue
        if inst.health != "passing" or inst.unify is None or not inst.unify.dns:
            continue
        address = parse_address(inst.address)
        if address is None:
            problems.append(_instance_problem(
                inst, "invalid-address", f"address {inst.address[:60]!r} is not an IP address"))
            continue
        rtype, value = address
        label = inst.service.lower()
        vhost = inst.unify.vhost
        if vhost is None and not is_hostname(label):
            problems.append(_instance_problem(
                inst, "invalid-name", f"service name {inst.service[:60]!r} is not a DNS label"))
            continue
        unroutable = unroutable_vhost(inst) if vhost is not None else None
        if unroutable is not None:
            problems.append(_instance_problem(inst, "vhost-unroutable", unroutable))
        for domain in inst.unify.dns:
            wanted: list[tuple[str, str, str]] = []
            if vhost is None:
                wanted.append((f"{label}.{domain}", rtype, value))
            elif unroutable is None:
                name = f"{vhost}.{domain}"
                if name in rejected:
                    withheld.setdefault(name, inst.service)
                elif pending(name, judged, state.revision):
                    if waiting is not None:
                        waiting.add(name)
                else:
                    wanted.append((name, "CNAME", f"{haproxy_label}.{domain}"))
            if inst.service == haproxy_service:
                wanted.append((f"{haproxy_label}.{domain}", rtype, value))
            for name, t, v in wanted:
                error = name_error(name)  # the same rule, and words, as switchboard's
                if error is not None:
                    problems.append(_instance_problem(inst, "invalid-name", error))
                else:
                    pairs.append((name, t, v))
    for name, service in sorted(withheld.items()):
        why = rejected[name]
        problems.append(Problem(
            "vhost-rejected", f"{name} gets no CNAME: switchboard on {why.node} rejects it "
            f"({why.reason}: {why.message})", service=service))
    return pairs


def _group(pairs: Iterable[tuple[str, str, str]], ttl: int, origin: str) -> list[RecordSet]:
    grouped: dict[tuple[str, str], set[str]] = {}
    for name, rtype, value in pairs:
        grouped.setdefault((name, rtype), set()).add(value)
    return [RecordSet(name=n, type=t, values=tuple(sorted(v)), ttl=ttl, origin=origin)
            for (n, t), v in sorted(grouped.items())]


def _drop_cname_conflicts(records: list[RecordSet], problems: list[Problem]) -> list[RecordSet]:
    """A name with address records cannot also be a CNAME (RFC 1034 3.6.2): keep addresses.
    A CNAME with several targets keeps the first in sorted order."""
    address_names = {r.name for r in records if r.type in ADDRESS_TYPES}
    kept: list[RecordSet] = []
    for rec in records:
        if rec.type == "CNAME":
            if rec.name in address_names:
                problems.append(Problem("name-conflict", f"{rec.name} has address records "
                                        f"({rec.origin}); its CNAME is dropped"))
                continue
            if len(rec.values) > 1:
                problems.append(Problem("name-conflict", f"{rec.name} has CNAME targets "
                                        f"{', '.join(rec.values)}; keeping {rec.values[0]}"))
                rec = RecordSet(rec.name, rec.type, rec.values[:1], rec.ttl, rec.origin)
        kept.append(rec)
    return kept


def merge_sources(layers: Sequence[Sequence[RecordSet]], problems: list[Problem]
                  ) -> list[RecordSet]:
    """Merge record sets from sources of falling precedence (first layer wins).

    A name claimed by an earlier layer (any type) is skipped in every later layer with a
    ``static-conflict`` problem. :returns: the merged records sorted by ``(name, type)``.
    """
    merged: list[RecordSet] = []
    claimed: dict[str, str] = {}
    for layer in layers:
        names_here: dict[str, str] = {}
        for rec in layer:
            owner = claimed.get(rec.name)
            if owner is not None:
                problems.append(Problem("static-conflict", f"{rec.name} ({rec.type}, from "
                                        f"{rec.origin}) is already defined by {owner}; "
                                        "ignored"))
                continue
            merged.append(rec)
            names_here[rec.name] = rec.origin
        claimed.update(names_here)
    return sorted(merged)


def build_desired(state: CatalogState, *, ttl: int, haproxy_service: str = "haproxy",
                  haproxy_label: str = "haproxy",
                  static_layers: Sequence[Sequence[RecordSet]] = (),
                  static_problems: Sequence[Problem] = (),
                  rejected: Mapping[str, Rejection] | None = None,
                  judged: Judged | None = None) -> Desired:
    """The desired records for ``state`` (see the module doc for the rules).

    :param ttl: seconds, given to every catalog record.
    :param static_layers: static record sets, highest precedence first (KV, then files).
    :param static_problems: problems met parsing them (passed through).
    :param rejected: host name -> the switchboard rejection that withholds its CNAME
        (:meth:`.verdict_mirror.VerdictMirror.rejected`); ``None``: no verdicts.
    :param judged: what the live verdict documents cover
        (:meth:`.verdict_mirror.VerdictMirror.judged`): a vhost name none of them mentions
        yet, while all are older than ``state.revision``, waits (no CNAME, no problem; its
        name goes to ``Desired.pending``). ``None``: nothing waits.
    :returns: records sorted by ``(name, type)``; problems in the order met.
    """
    problems: list[Problem] = list(static_problems)
    waiting: set[str] = set()
    pairs = _catalog_pairs(state, haproxy_service, haproxy_label, problems, rejected or {},
                           judged, waiting)
    catalog = _drop_cname_conflicts(_group(pairs, ttl, "catalog"), problems)
    layers = [catalog] + [_drop_cname_conflicts(sorted(layer), problems)
                          for layer in static_layers]
    records = merge_sources(layers, problems)
    _report_missing_targets(records, state, haproxy_service, problems)
    domains = {d for inst in state.instances.values() if inst.unify is not None
               for d in inst.unify.dns}
    return Desired(records=tuple(records), problems=tuple(problems),
                   domains=tuple(sorted(domains)), pending=tuple(sorted(waiting)))


def _report_missing_targets(records: Sequence[RecordSet], state: CatalogState,
                            haproxy_service: str, problems: list[Problem]) -> None:
    """A vhost CNAME whose target has no record at all (no passing instance of the HAProxy
    service carries ``dns=<domain>``, and no static record names it) resolves to nothing:
    one ``cname-target-missing`` problem per CNAME. The CNAME itself stays, so a moment
    without a healthy HAProxy does not delete and re-create every vhost record (in Route 53
    too); it answers again as soon as the target has addresses."""
    names = {r.name for r in records}
    missing = [r for r in records
               if r.type == "CNAME" and r.origin == "catalog" and r.values[0] not in names]
    if not missing:
        return
    owners: dict[str, set[str]] = {}  # vhost name -> the services asking for it
    for inst in state.instances.values():
        if inst.unify is not None and inst.unify.vhost is not None:
            for domain in inst.unify.dns:
                owners.setdefault(f"{inst.unify.vhost}.{domain}", set()).add(inst.service)
    for rec in missing:
        domain = rec.values[0].partition(".")[2]
        services = sorted(owners.get(rec.name, ()))
        problems.append(Problem(
            "cname-target-missing", f"{rec.name} (service {', '.join(services)}) is a CNAME "
            f"to {rec.values[0]}, which has no record: no passing instance of service "
            f"{haproxy_service!r} carries dns={domain} (nor does a static record name it), "
            f"so {rec.name} resolves to nothing until one does",
            service=services[0] if services else ""))
