"""switchboard's per-vhost verdicts as dns411 sees them: which names to withhold (pure).

switchboard writes, per node, a :class:`~unify_common.listeners.VerdictDocument` into the
verdict bucket (``UNIFY_VERDICT_BUCKET``; see switchboard's README): for every host name
``<vhost>.<dns>`` it was asked to route, accepted or rejected with the reason. dns411 gives
no CNAME to a name that *any live* switchboard rejects (:func:`rejected_names`), so DNS never
points at a name HAProxy answers 404 for; once every live switchboard accepts it again (or
stops mentioning it), the CNAME comes back. With no documents at all (no switchboard
deployed, or none written yet) nothing is withheld and only the shared rule of
:mod:`unify_common.listeners` applies. Which documents are live is the shell's business
(:mod:`.verdict_mirror`).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from unify_common.listeners import VerdictDocument

__all__ = ["Rejection", "rejected_names"]


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
