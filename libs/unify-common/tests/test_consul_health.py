"""An Instance straight from the typed health answer (no dictionary in between)."""

from __future__ import annotations

import msgspec
import pytest

from unify_common.consul_health import decode_health
from unify_common.events import Check, Instance, instance_from_health_entry
from unify_common.tags import parse_tags

# One ServiceEntry as Consul 1.x answers /v1/health/service/web (fields Unify does not read
# included: they are skipped)
BODY = (b'[{"Node":{"ID":"4b2","Node":"n1","Address":"10.0.0.1","Datacenter":"dc1",'
        b'"TaggedAddresses":{"lan":"10.0.0.1"},"Meta":null,"CreateIndex":5,"ModifyIndex":5},'
        b'"Service":{"Kind":"","ID":"web-1","Service":"web","Tags":["dns=example.com",'
        b'"vhost=www"],"Address":"","Meta":{"version":"3"},"Port":8080,'
        b'"Weights":{"Passing":7,"Warning":1},"EnableTagOverride":false,"CreateIndex":20,'
        b'"ModifyIndex":21},"Checks":[{"Node":"n1","CheckID":"serfHealth","Name":"Serf",'
        b'"Status":"passing","Output":"ok","ServiceID":""},{"Node":"n1","CheckID":'
        b'"service:web-1","Name":"web","Status":"warning","Output":"slow","ServiceID":'
        b'"web-1"}]}]')


def test_instance_from_the_typed_entry():
    [entry] = decode_health(BODY)
    assert instance_from_health_entry(entry) == Instance(
        service="web", instance_id="web-1", node="n1", address="10.0.0.1", port=8080,
        tags=("dns=example.com", "vhost=www"), meta={"version": "3"}, health="warning",
        checks=(Check(check_id="serfHealth", name="Serf", status="passing", service_id=""),
                Check(check_id="service:web-1", name="web", status="warning",
                      service_id="web-1")),
        unify=parse_tags(("dns=example.com", "vhost=www")), tag_error=None, weight=7,
        create_index=20, modify_index=21)


def test_a_dictionary_in_the_api_shape_gives_the_same_instance():
    [entry] = decode_health(BODY)
    as_dict = msgspec.json.decode(BODY)[0]
    assert instance_from_health_entry(as_dict) == instance_from_health_entry(entry)


@pytest.mark.parametrize(("weights", "weight"), [
    (None, 1), ({"Passing": 0, "Warning": 1}, 1), ({"Passing": -3}, 1), ({"Passing": 40}, 40),
    ({"Warning": 2}, 1)])
def test_weight_is_passing_or_1(weights, weight):
    service = {"ID": "a", "Service": "s", "Port": 1, **({"Weights": weights} if weights else {})}
    entry = {"Node": {"Node": "n", "Address": "10.0.0.2"}, "Service": service}
    assert instance_from_health_entry(entry).weight == weight


def test_no_checks_is_passing_and_own_address_wins():
    entry = {"Node": {"Node": "n", "Address": "10.0.0.2"},
             "Service": {"ID": "a", "Service": "s", "Address": "10.9.9.9", "Port": 1,
                         "Tags": ["vhost=bad name"]}, "Checks": None}
    inst = instance_from_health_entry(entry)
    assert (inst.health, inst.checks, inst.address, inst.unify, inst.tag_error) == (
        "passing", (), "10.9.9.9", None, "tag 'vhost=bad name': spaces are not allowed")


@pytest.mark.parametrize("body", [b'[{"Node":{"Node":"n"}}]', b'[{"Service":{}}]',
                                  b'[{"Node":{},"Service":{"Port":"80"}}]', b"{"])
def test_other_shapes_are_refused(body):
    with pytest.raises(msgspec.MsgspecError):
        decode_health(body)
    assert decode_health(b"null") == []
