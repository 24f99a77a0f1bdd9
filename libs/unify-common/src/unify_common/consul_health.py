"""Typed view of Consul's health answer for a service, decoded with msgspec.

Shapes follow Consul's "Health - HTTP API" page (``GET /v1/health/service/:service``: a list
of ``ServiceEntry`` objects, ``{Node, Service, Checks}``, with Consul's PascalCase field
names). Only the fields Unify uses are declared; the rest of the answer is skipped by the
decoder. Decoding this way is several times cheaper than generic JSON, which matters to
consul-bridge because a write to a node wakes the query of every service on that node; and
:func:`unify_common.events.instance_from_health_entry` builds an ``Instance`` straight from a
:class:`HealthEntry`, with no dictionary in between.
"""

from __future__ import annotations

import msgspec

__all__ = ["HealthCheck", "HealthEntry", "HealthNode", "HealthService", "ServiceWeights",
           "decode_health"]


class HealthNode(msgspec.Struct, rename="pascal"):
    """``ServiceEntry.Node``: the node's name and its address."""

    node: str = ""
    address: str = ""


class ServiceWeights(msgspec.Struct, rename="pascal"):
    """``Service.Weights``: relative weights while passing and while warning (Consul
    defaults both to 1)."""

    passing: int = 1
    warning: int = 1


class HealthService(msgspec.Struct, rename="pascal"):
    """``ServiceEntry.Service``: the instance as registered (``ID``, ``Service`` name,
    ``Address`` (empty: the node's), ``Port``, ``Tags``, ``Meta``, ``Weights``) and its Raft
    indexes."""

    id: str = msgspec.field(name="ID", default="")
    service: str = ""
    address: str = ""
    port: int = 0
    tags: list[str] | None = None
    meta: dict[str, str] | None = None
    weights: ServiceWeights | None = None
    create_index: int = 0
    modify_index: int = 0


class HealthCheck(msgspec.Struct, rename="pascal"):
    """One element of ``ServiceEntry.Checks``: a check of the instance, or of its node
    (``ServiceID`` empty). A check without a status counts as ``critical``."""

    check_id: str = msgspec.field(name="CheckID", default="")
    name: str = ""
    status: str = "critical"
    service_id: str = msgspec.field(name="ServiceID", default="")


class HealthEntry(msgspec.Struct, rename="pascal"):
    """One ``ServiceEntry`` of ``/v1/health/service/:service``. A dictionary in the API's
    shape converts with ``msgspec.convert(d, HealthEntry)``."""

    node: HealthNode
    service: HealthService
    checks: list[HealthCheck] | None = None


_decoder = msgspec.json.Decoder(list[HealthEntry] | None)


def decode_health(body: str | bytes) -> list[HealthEntry]:
    """Decode a ``/v1/health/service/:service`` answer (``null`` gives ``[]``).

    :raises msgspec.DecodeError: not JSON. :raises msgspec.ValidationError: JSON of another
        shape (an entry without ``Node`` or ``Service``, a string port...).
    """
    return _decoder.decode(body) or []
