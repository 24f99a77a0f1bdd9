"""Which instances switchboard may route to, and which Unify tags a service agrees on (pure).

Every tag, name and address is hostile input. An instance is usable only when:

* its ``unify`` tags are exactly what :func:`unify_common.tags.parse_tags` makes of its raw
  ``tags`` (so a catalog entry whose parsed tags were forged or never validated is refused);
* its ``address`` is an IPv4 or IPv6 literal and its ``port`` is 1-65535.

Instances of one service may disagree on their tags (a rolling deploy, a typo). The service
then follows the *majority*: the parsed :class:`~unify_common.tags.UnifyTags` value held by the
most instances; a tie goes to the value whose lowest ``(instance_id, node)`` sorts first.
Dissenting instances are left out of the service and reported (``tag-disagreement``).
"""

from __future__ import annotations

import socket
from functools import lru_cache
from typing import Iterable

from unify_common.events import Instance
from unify_common.tags import TagError, UnifyTags, parse_tags

from .model import Problem

__all__ = ["consensus", "usable_instances"]


def _problem(reason: str, message: str, inst: Instance) -> Problem:
    return Problem(reason=reason, message=message, service=inst.service,
                   instance_id=inst.instance_id, node=inst.node)


@lru_cache(maxsize=8192)
def _parsed(tags: tuple[str, ...]) -> UnifyTags | str | None:
    """parse_tags, cached (instances of one service share their tags); errors as text."""
    try:
        return parse_tags(tags)
    except TagError as err:
        return str(err)


def _is_ip(address: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, address)
            return True
        except (OSError, ValueError):
            continue
    return False


def _instance_problem(inst: Instance) -> Problem | None:
    reparsed = _parsed(tuple(inst.tags))
    if isinstance(reparsed, str):
        return _problem("invalid-tags", reparsed, inst)
    if reparsed != inst.unify:
        return _problem("invalid-tags", "parsed tags do not match the instance's tags", inst)
    if not _is_ip(inst.address):
        shown = inst.address if len(inst.address) <= 64 else inst.address[:61] + "..."
        return _problem("invalid-address",
                        f"address {shown!r} is not an IP address", inst)
    if not 1 <= inst.port <= 65535:
        return _problem("invalid-address", f"port {inst.port} is outside 1-65535", inst)
    return None


def usable_instances(instances: Iterable[Instance]) -> tuple[list[Instance], list[Problem]]:
    """Split instances into those carrying valid Unify tags and an IP address, and problems.

    :param instances: any catalog instances (any health); untagged ones (``unify`` and
        ``tag_error`` both ``None``) are dropped silently.
    :returns: ``(usable, problems)``, usable sorted by ``(service, instance_id, node)``.
    """
    usable: list[Instance] = []
    problems: list[Problem] = []
    for inst in sorted(instances, key=lambda i: (i.service, i.instance_id, i.node)):
        if inst.unify is None:
            if inst.tag_error is not None:
                problems.append(_problem("invalid-tags", inst.tag_error, inst))
            continue
        problem = _instance_problem(inst)
        if problem is None:
            usable.append(inst)
        else:
            problems.append(problem)
    return usable, problems


def consensus(instances: list[Instance]) -> tuple[UnifyTags, list[Instance], list[Problem]]:
    """The tags one service follows (see the module doc for the rule).

    :param instances: usable instances of one service, at least one.
    :returns: ``(tags, agreeing instances, tag-disagreement problems)``.
    """
    groups: dict[UnifyTags, list[Instance]] = {}
    for inst in instances:
        groups.setdefault(inst.unify, []).append(inst)
    ranked = sorted(groups.items(), key=lambda item: (
        -len(item[1]), min((i.instance_id, i.node) for i in item[1])))
    winner, agreeing = ranked[0]
    problems = [
        _problem("tag-disagreement",
                 f"tags differ from the {len(agreeing)} of {len(instances)} instances the "
                 "service follows; this instance is left out", inst)
        for _, dissent in ranked[1:] for inst in dissent
    ]
    return winner, agreeing, problems
