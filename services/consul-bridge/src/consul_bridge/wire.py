"""Typed views of the Consul answers the bridge reads, decoded with msgspec.

Shapes follow Consul's "Health - HTTP API" page (``GET /v1/health/service/:service``: a list
of ``{Node, Service, Checks}``). Only the fields Unify uses are declared; the rest of the
answer is skipped by the decoder. Decoding this way is several times cheaper than generic
JSON, which matters because a write to a node wakes the query of every service on that node.
"""

from __future__ import annotations

import msgspec

__all__ = ["HealthEntry", "decode_health", "decode_node_names", "decode_node_service_names",
           "signature"]


class _Node(msgspec.Struct, rename="pascal"):
    node: str = ""
    address: str = ""


class _Weights(msgspec.Struct, rename="pascal"):
    passing: int = 1
    warning: int = 1


class _Service(msgspec.Struct, rename="pascal"):
    id: str = msgspec.field(name="ID", default="")
    service: str = ""
    address: str = ""
    port: int = 0
    tags: list[str] | None = None
    meta: dict[str, str] | None = None
    weights: _Weights | None = None
    create_index: int = 0
    modify_index: int = 0


class _Check(msgspec.Struct, rename="pascal"):
    check_id: str = msgspec.field(name="CheckID", default="")
    name: str = ""
    status: str = "critical"
    service_id: str = msgspec.field(name="ServiceID", default="")


class HealthEntry(msgspec.Struct, rename="pascal"):
    """One ``ServiceEntry`` of ``/v1/health/service/:service``."""

    node: _Node
    service: _Service
    checks: list[_Check] | None = None


_decoder = msgspec.json.Decoder(list[HealthEntry] | None)


def decode_health(body: str | bytes) -> list[HealthEntry]:
    """Decode a health answer. :raises msgspec.DecodeError: / ValidationError on bad JSON."""
    return _decoder.decode(body) or []


class _NodeName(msgspec.Struct, rename="pascal"):
    node: str


_nodes_decoder = msgspec.json.Decoder(list[_NodeName] | None)


def decode_node_names(body: str | bytes) -> frozenset[str]:
    """The node names of a ``/v1/catalog/nodes`` answer (a list of ``{Node, Address, ...}``,
    Consul's "Catalog - HTTP API" page); every other field is skipped undecoded.

    :raises msgspec.DecodeError: / ValidationError: not a list of node objects.
    """
    return frozenset(n.node for n in _nodes_decoder.decode(body) or ())


class _ServiceName(msgspec.Struct, rename="pascal"):
    service: str


class _NodeServices(msgspec.Struct, rename="pascal"):
    services: list[_ServiceName] | None = None


_node_services_decoder = msgspec.json.Decoder(_NodeServices)


def decode_node_service_names(body: str | bytes) -> frozenset[str]:
    """The names of the services registered on one node, from a
    ``/v1/catalog/node-services/:node`` answer (``{"Node": {...}, "Services": [{"Service":
    name, ...}]}``; ``{"Node": null, "Services": null}`` for an unknown node). Only the names
    are decoded: which instances a service has, and their tags, come from its own health
    query.

    :raises msgspec.DecodeError: / ValidationError: not such an object.
    """
    return frozenset(s.service for s in _node_services_decoder.decode(body).services or ())


def signature(entries: list[HealthEntry]) -> tuple:
    """What Unify's view of the service depends on, as a comparable tuple: instance ids,
    their ``ModifyIndex`` (tags, meta, address, port, weights changes bump it), the node name, the
    effective address (the node's only when the service has none) and each check's id and
    status. Equal signatures give equal instances."""
    return tuple(
        (e.service.id, e.service.modify_index, e.node.node,
         e.service.address or e.node.address,
         tuple((c.check_id, c.status) for c in e.checks or ()))
        for e in entries
    )


def as_api_dict(entry: HealthEntry) -> dict:
    """The entry in the API's own field names (for :func:`instance_from_health_entry`)."""
    return msgspec.to_builtins(entry)
