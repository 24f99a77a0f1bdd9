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

from functools import lru_cache
from socket import AF_INET, AF_INET6, inet_pton

from unify_common.events import Instance
from unify_common.problems import Problem
from unify_common.tags import TagError, UnifyTags, parse_tags

__all__ = ["Keyed", "consensus", "instance_problem", "usable_tags"]


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


def instance_problem(inst: Instance, parsed: UnifyTags | None = None) -> Problem | None:
    """Why ``inst`` cannot be routed to (``invalid-tags`` or ``invalid-address``, see the
    module doc), or ``None`` when it is usable: the one validity rule, checked in this order
    (the first failing check is the reason): parsed tags present, raw tags valid, parsed tags
    equal to their parse, address an IPv4 or IPv6 literal, port 1-65535.

    :param parsed: the parse of ``inst.tags`` when the caller knows it (the checked
        ``unify`` of a usable instance with equal raw tags, e.g. the first of the same
        service), else ``None``: it is then looked up. The verdict is the same either way.
    """
    unify = inst.unify
    if unify is None:
        return _problem("invalid-tags", inst.tag_error or "", inst)
    if parsed is None:
        tags = inst.tags
        found = _parsed(tags if type(tags) is tuple else tuple(tags))
        if isinstance(found, str):
            return _problem("invalid-tags", found, inst)
        parsed = found
    if parsed != unify:
        return _problem("invalid-tags", "parsed tags do not match the instance's tags", inst)
    address = inst.address
    try:
        inet_pton(AF_INET, address)
    except (OSError, ValueError, TypeError):
        try:
            inet_pton(AF_INET6, address)
        except (OSError, ValueError, TypeError):
            shown = address if len(address) <= 64 else address[:61] + "..."
            return _problem("invalid-address", f"address {shown!r} is not an IP address", inst)
    if not 1 <= inst.port <= 65535:
        return _problem("invalid-address", f"port {inst.port} is outside 1-65535", inst)
    return None


def usable_tags(inst: Instance) -> UnifyTags:
    """The parsed tags of an instance :func:`instance_problem` found usable (never ``None``
    there: an instance without them is refused first).

    :raises AssertionError: when called with an instance that has no parsed tags.
    """
    unify = inst.unify
    assert unify is not None, "only usable instances, which carry their parsed tags"
    return unify


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
        return usable_tags(first), members, []
    groups: dict[UnifyTags, list[Keyed]] = {}
    for member in members:
        groups.setdefault(usable_tags(member[1]), []).append(member)
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
