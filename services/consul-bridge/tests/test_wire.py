"""Typed decoding of Consul answers (pure)."""

from __future__ import annotations

import msgspec
import pytest

from consul_bridge.wire import decode_node_names, decode_node_service_names

# Shapes as Consul v1.14 answers them (fields the bridge does not read included).
NODES = (b'[{"ID":"","Node":"n1","Address":"10.0.0.1","Datacenter":"dc1","TaggedAddresses":'
         b'null,"Meta":null,"CreateIndex":18,"ModifyIndex":18},{"ID":"404bc9a6","Node":"vm",'
         b'"Address":"127.0.0.1","Meta":{"consul-network-segment":""},"CreateIndex":11,'
         b'"ModifyIndex":17}]')
NODE_SERVICES = (b'{"Node":{"ID":"","Node":"n1","Address":"10.0.0.1"},"Services":['
                 b'{"ID":"w1","Service":"web","Tags":["a"],"Address":"","Meta":null,'
                 b'"Port":80,"Weights":{"Passing":1,"Warning":1},"CreateIndex":18},'
                 b'{"ID":"w2","Service":"web","Tags":[],"Port":81},'
                 b'{"ID":"d1","Service":"db","Tags":["x"],"Port":5432}]}')


def test_node_names():
    assert decode_node_names(NODES) == frozenset({"n1", "vm"})
    assert decode_node_names(b"[]") == decode_node_names(b"null") == frozenset()


def test_node_service_names_are_the_distinct_service_names():
    assert decode_node_service_names(NODE_SERVICES) == frozenset({"web", "db"})
    # an unknown node (or one whose services all went)
    assert decode_node_service_names(b'{"Node":null,"Services":null}') == frozenset()
    assert decode_node_service_names(b'{"Node":{"Node":"n1"},"Services":[]}') == frozenset()


@pytest.mark.parametrize("body", [b"[1,2]", b"{", b'"web"', b'{"Services":[{"ID":"x"}]}'])
def test_node_services_reject_other_shapes(body):
    with pytest.raises(msgspec.MsgspecError):
        decode_node_service_names(body)


@pytest.mark.parametrize("body", [b"{}", b"{", b'[{"Address":"10.0.0.1"}]'])
def test_nodes_reject_other_shapes(body):
    with pytest.raises(msgspec.MsgspecError):
        decode_node_names(body)
