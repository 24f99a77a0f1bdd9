"""switchboard's per-vhost verdicts as dns411 sees them: which names to withhold (pure).

switchboard writes, per node, a :class:`~unify_common.listeners.VerdictDocument` into the
verdict bucket (``UNIFY_VERDICT_BUCKET``; see switchboard's README): for every host name
``<vhost>.<dns>`` it was asked to route, accepted or rejected with the reason. dns411 gives
no CNAME to a name that *any live* switchboard rejects (:func:`rejected_names`), so DNS never
points at a name HAProxy answers 404 for; once every live switchboard accepts it again (or
stops mentioning it), the CNAME comes back.

A *new* name waits for a verdict (:class:`Judged`, :func:`pending`): while live documents
exist but none mentions the name and every one was built from a catalog revision older than
the one dns411 reconciles, the name gets no CNAME yet (and no problem: switchboard has simply
not applied that revision). Without this, dns411 (which does not wait for HAProxy) would
publish the CNAME of a name switchboard is about to reject, and take it back a moment later.
A name switchboard never mentions is published once a document built from the current (or a
later) revision arrives; switchboard rewrites its document at least every third of its TTL
with the latest revision it applied, which bounds that wait.

With no documents at all (no switchboard deployed, or none written yet) nothing is withheld
and only the shared rule of :mod:`unify_common.listeners` applies. Which documents are live
is the shell's business (:mod:`.verdict_mirror`).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from unify_common.listeners import VerdictDocument

__all__ = ["Judged", "Rejection", "judged", "pending", "rejected_names"]


class Rejection(msgspec.Struct, frozen=True):
    """Why a name gets no CNAME: switchboard ``node`` rejected it for ``reason``
    (``message`` is switchboard's, ``service`` the one that asked for the name)."""

    node: str
    reason: str
    message: str
    service: str = ""


def rejected_names(documents: Iterable[VerdictDocument]) -> dict[str, Rejection]:
    """Host name -> the rejection dns411 follows, for every name some document rejects.

    :param documents: the live documents, one per switchboard node.
    :returns: for each rejected name, the rejection of the first node (by node name) that
        rejects it; names every document accepts or leaves out are absent.
    """
    out: dict[str, Rejection] = {}
    for doc in sorted(documents, key=lambda d: d.node):
        for name, verdict in doc.vhosts.items():
            if not verdict.accepted and name not in out:
                out[name] = Rejection(doc.node, verdict.reason, verdict.message,
                                      verdict.service)
    return out


class Judged(msgspec.Struct, frozen=True):
    """What the live documents cover: every name some document mentions (accepted or not),
    and the newest catalog ``revision`` a document was built from."""

    names: frozenset[str]
    revision: int


def judged(documents: Iterable[VerdictDocument]) -> Judged | None:
    """The names and newest revision of the live documents; ``None`` when there are none
    (no switchboard: nothing waits for a verdict)."""
    docs = list(documents)
    if not docs:
        return None
    return Judged(frozenset(name for doc in docs for name in doc.vhosts),
                  max(doc.revision for doc in docs))


def pending(name: str, covered: Judged | None, catalog_revision: int) -> bool:
    """Whether ``name`` waits for switchboard's verdict: documents exist, none mentions
    ``name``, and all were built from a revision older than ``catalog_revision`` (the
    catalog bucket sequence dns411 reconciles)."""
    return (covered is not None and name not in covered.names
            and covered.revision < catalog_revision)
