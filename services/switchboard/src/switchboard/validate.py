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

from unify_common.events import Instance
from unify_common.tags import TagError, UnifyTags, parse_tags

from .model import Problem

__all__ = ["Keyed", "consensus", "instance_problem", "plainly_usable"]


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
    try:
        socket.inet_pton(socket.AF_INET, address)
        return True
    except (OSError, ValueError):
        pass
    try:
        socket.inet_pton(socket.AF_INET6, address)
        return True
    except (OSError, ValueError):
        return False


def instance_problem(inst: Instance) -> Problem | None:
    """Why ``inst`` cannot be routed to (``invalid-tags`` or ``invalid-address``, see the
    module doc), or ``None`` when it is usable."""
    if inst.unify is None:
        return _problem("invalid-tags", inst.tag_error or "", inst)
    tags = inst.tags if type(inst.tags) is tuple else tuple(inst.tags)
    reparsed = _parsed(tags)
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


def plainly_usable(inst: Instance) -> bool:
    """The common case of :func:`instance_problem` returning ``None``, checked in one go:
    tags a tuple whose parse is the instance's ``unify``, an IPv4 address, a valid port.
    False means "look closer" (:func:`instance_problem` decides), never "unusable"."""
    tags = inst.tags
    if type(tags) is not tuple:
        return False
    parsed = _parsed(tags)
    if type(parsed) is str or parsed != inst.unify or not 1 <= inst.port <= 65535:
        return False
    try:
        socket.inet_pton(socket.AF_INET, inst.address)
    except (OSError, ValueError, TypeError):
        return False
    return True


#: A usable instance with its catalog key: ``(key, instance)``.
Keyed = tuple[str, Instance]


def consensus(members: list[Keyed]) -> tuple[UnifyTags, list[Keyed], list[Problem]]:
    """The tags one service follows (see the module doc for the rule).

    :param members: usable instances of one service with their keys, at least one.
    :returns: ``(tags, agreeing members, tag-disagreement problems)``.
    """
    # Usable instances carry exactly the parse of their raw tags, so equal raw tags mean
    # equal parsed tags (the common case, checked cheaply); anything else is grouped by
    # the parsed value.
    first = members[0][1]
    if all(inst.tags == first.tags for _, inst in members):
        return first.unify, members, []
    groups: dict[UnifyTags, list[Keyed]] = {}
    for member in members:
        groups.setdefault(member[1].unify, []).append(member)
    ranked = sorted(groups.items(), key=lambda item: (
        -len(item[1]), min((i.instance_id, i.node) for _, i in item[1])))
    winner, agreeing = ranked[0]
    problems = [
        _problem("tag-disagreement",
                 f"tags differ from the {len(agreeing)} of {len(members)} instances the "
                 "service follows; this instance is left out", inst)
        for _, dissent in ranked[1:] for _, inst in dissent
    ]
    return winner, agreeing, problems
