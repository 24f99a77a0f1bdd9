"""Typed decoding of Consul answers (pure)."""

from __future__ import annotations

import msgspec
import pytest

from consul_bridge.wire import decode_service_names


def test_service_names_ignore_the_order_of_tags():
    first = b'{"consul":[],"web":["dns=a.test","vhost=w"],"db":["x","y"]}'
    again = b'{"consul":[],"web":["vhost=w","dns=a.test"],"db":["y","x"]}'
    assert decode_service_names(first) == decode_service_names(again) == frozenset(
        {"consul", "web", "db"})
    assert decode_service_names(b"null") == frozenset()
    assert decode_service_names(b"{}") == frozenset()


@pytest.mark.parametrize("body", [b"[1,2]", b"{", b'"web"'])
def test_service_names_reject_what_is_not_an_object(body):
    with pytest.raises(msgspec.MsgspecError):
        decode_service_names(body)
