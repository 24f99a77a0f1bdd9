"""consul-bridge settings from the environment (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

import consul_bridge.settings as settings_module
from consul_bridge.settings import BridgeSettings
from tests.fixtures.settings_docs import check_table, markdown_rows, rst_rows
from unify_common.settings import CommonSettings


def test_defaults():
    settings = BridgeSettings.from_env({})
    assert (settings.wait_s, settings.kv_prefixes, settings.lock_key, settings.lock_ttl_s) == (
        240.0, ("unify/",), "unify-locks/consul-bridge", 10.0)


@pytest.mark.parametrize("value", ["0", "281", "600"])
def test_wait_outside_what_the_http_client_allows_is_refused(value):
    with pytest.raises(ValueError, match=f"UNIFY_BRIDGE_WAIT must be 1-280 seconds, got {value}"):
        BridgeSettings.from_env({"UNIFY_BRIDGE_WAIT": value})


@pytest.mark.parametrize(("env", "message"), [
    pytest.param({"UNIFY_BRIDGE_REMOVAL_RATIO": "2"},
                 "UNIFY_BRIDGE_REMOVAL_RATIO must be 0-1, got 2", id="removal-ratio"),
    pytest.param({"UNIFY_BRIDGE_REMOVAL_CONFIRM": "-1"},
                 "UNIFY_BRIDGE_REMOVAL_CONFIRM must be 0 or more, got -1", id="removal-confirm"),
    pytest.param({"UNIFY_BRIDGE_LOCK_TTL": "5"},
                 "UNIFY_BRIDGE_LOCK_TTL must be 10-86400, got 5", id="lock-ttl"),
    pytest.param({"UNIFY_BRIDGE_MAX_INSTANCE_BYTES": "0"},
                 "UNIFY_BRIDGE_MAX_INSTANCE_BYTES must be 1-1048576, got 0", id="max-bytes"),
    pytest.param({"UNIFY_STREAM_MAX_AGE": "-5"},
                 "UNIFY_STREAM_MAX_AGE must be 120 or more, got -5", id="stream-max-age"),
    pytest.param({"CONSUL_HTTP_ADDR": "http://[::1"},
                 "CONSUL_HTTP_ADDR must be host, host:port or [v6]:port, optionally after "
                 "http:// or https://, got '[::1'", id="consul-addr"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ValueError) as err:
        BridgeSettings.from_env(env)
    assert str(err.value) == message


def test_the_constructor_and_the_environment_share_their_defaults():
    env = {"UNIFY_NODE": "n1"}
    assert BridgeSettings.from_env(env) == BridgeSettings(common=CommonSettings(node="n1"))
    assert BridgeSettings.from_env({"UNIFY_BRIDGE_IGNORE_SERVICES": "consul, nomad,"}
                                   ).ignore_services == frozenset({"consul", "nomad"})


def test_the_docstring_table_matches_the_model():
    check_table(BridgeSettings, rst_rows(settings_module.__doc__))


def test_the_readme_table_matches_the_model():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    others = {*CommonSettings.env_variables(), "CONSUL_HTTP_TOKEN_FILE", "NATS_PASSWORD_FILE",
              "UNIFY_STREAM_MAX_AGE"}
    check_table(BridgeSettings, markdown_rows(readme), others=others)
