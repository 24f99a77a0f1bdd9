"""The service shell's wiring (constructed only, nothing started)."""

from __future__ import annotations

from switchboard.service import SwitchboardService
from switchboard.settings import SwitchboardSettings


def test_subscriber_wiring_from_the_environment():
    service = SwitchboardService(SwitchboardSettings.from_env({
        "UNIFY_HAPROXY_CONFIG": "/tmp/sb-unused/haproxy.cfg", "UNIFY_NODE": "edge 1.example",
        "UNIFY_SWITCHBOARD_DEBOUNCE": "0.2", "UNIFY_SWITCHBOARD_MAX_WAIT": "2",
        "UNIFY_RESYNC": "120"}))
    sub = service.subscriber
    assert sub.name == "switchboard"
    assert not hasattr(sub, "durable")  # nothing per node is kept on the NATS server
    assert (sub.schedule.quiet.min_wait, sub.schedule.quiet.max_wait, sub.schedule.resync) \
        == (0.2, 2.0, 120.0)
    assert service.supervisor is None
