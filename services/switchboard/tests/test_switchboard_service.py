"""The service shell's wiring (constructed only, nothing started)."""

from __future__ import annotations

import hashlib

import pytest

from switchboard.service import SwitchboardService
from switchboard.settings import SwitchboardSettings


@pytest.mark.parametrize(("node", "durable"), [
    ("edge-1", "switchboard-edge-1"),
    ("edge 1.example.com", "switchboard-_"
     + hashlib.sha256(b"edge 1.example.com").hexdigest()[:16]),
], ids=["plain-node", "unsafe-node"])
def test_one_durable_consumer_per_node(node, durable):
    service = SwitchboardService(SwitchboardSettings.from_env({
        "UNIFY_HAPROXY_CONFIG": "/tmp/sb-unused/haproxy.cfg", "UNIFY_NODE": node}))
    assert (service.subscriber.name, service.subscriber.durable) == ("switchboard", durable)
    assert service.supervisor is None
