"""Typed views of the Consul catalog answers the bridge reads, decoded with msgspec.

The health answer (``GET /v1/health/service/:service``, Consul's "Health - HTTP API" page)
is typed in :mod:`unify_common.consul_health`, beside the builder of ``Instance``; this module
holds the catalog answers only the bridge reads (Consul's "Catalog - HTTP API" page) and the
signature of a health answer. Only the fields Unify uses are declared; the rest of each answer
is skipped by the decoder.
"""

from __future__ import annotations

import msgspec

from unify_common.consul_health import HealthEntry

__all__ = ["decode_node_names", "decode_node_service_names", "signature"]


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
