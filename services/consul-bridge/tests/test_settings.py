"""consul-bridge settings from the environment (pure)."""

from __future__ import annotations

import pytest

from consul_bridge.settings import BridgeSettings


def test_defaults():
    settings = BridgeSettings.from_env({})
    assert (settings.wait_s, settings.kv_prefixes, settings.lock_key, settings.lock_ttl_s) == (
        240.0, ("unify/",), "unify-locks/consul-bridge", 10.0)


@pytest.mark.parametrize("value", ["0", "281", "600"])
def test_wait_outside_what_the_http_client_allows_is_refused(value):
    with pytest.raises(ValueError, match=f"UNIFY_BRIDGE_WAIT must be 1-280 seconds, got {value}"):
        BridgeSettings.from_env({"UNIFY_BRIDGE_WAIT": value})
