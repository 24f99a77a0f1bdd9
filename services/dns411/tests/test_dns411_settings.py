"""Settings from the environment (pure tables)."""

from __future__ import annotations

from pathlib import Path

import pytest

import dns411.settings as settings_module
from dns411.apply.route53 import route53_config
from dns411.settings import Dns411Settings
from tests.fixtures.settings_docs import check_table, rst_rows


def test_defaults():
    s = Dns411Settings.from_env({})
    assert (s.mode, s.ttl, s.haproxy_service, s.policy, s.owner_id, s.route53_enabled,
            s.manage, s.port, s.debounce) == ("primary", 30, "haproxy", "sync", "unify", False,
                                              False, 53, 0.05)
    assert s.conf_path == Path("/var/lib/unify/dnsmasq/conf.d/dns411.conf")
    assert (s.zone_ids, s.zone_ttl) == ((), 600.0)


def test_everything_from_env():
    s = Dns411Settings.from_env({
        "UNIFY_DNS_TTL": "45", "UNIFY_HAPROXY_SERVICE": "switchboard",
        "UNIFY_DNSMASQ_MANAGE": "1", "UNIFY_DNSMASQ_PORT": "5353",
        "UNIFY_DNSMASQ_HOSTS": "/x/h", "UNIFY_DNSMASQ_CONF_DIR": "/x/c",
        "UNIFY_DNSMASQ_PIDFILE": "/run/dnsmasq.pid",
        "UNIFY_DNSMASQ_RESTART_CMD": "systemctl restart dnsmasq",
        "UNIFY_ROUTE53_ENABLED": "true", "UNIFY_ROUTE53_POLICY": "upsert-only",
        "UNIFY_ROUTE53_ZONES": "Example.com., Z123", "UNIFY_DNS_OWNER_ID": "edge-eu",
        "UNIFY_CONSUL_DNS_ADDR": "127.0.0.1:8600", "UNIFY_DNS_STATIC_FILES": "/a, /b",
        "UNIFY_DNS411_MODE": "replica", "UNIFY_DNS411_TICK": "5", "UNIFY_ROUTE53_LOCK": "1",
        "UNIFY_DNS411_DEBOUNCE": "0.02", "UNIFY_ROUTE53_ZONE_IDS": "Z0123ABC, /hostedzone/Z9",
        "UNIFY_ROUTE53_ZONE_TTL": "0"})
    assert (s.ttl, s.haproxy_service, s.manage, s.port, s.route53_enabled, s.policy) == (
        45, "switchboard", True, 5353, True, "upsert-only")
    assert s.zones == ("example.com", "z123")
    assert s.restart_cmd == ("systemctl", "restart", "dnsmasq")
    assert s.static_files == (Path("/a"), Path("/b"))
    assert s.pid_file == Path("/run/dnsmasq.pid") and s.mode == "replica"
    assert (s.tick, s.route53_lock, s.lock_key) == (5.0, True, "unify/locks/dns411-route53")
    assert s.debounce == 0.02
    assert (s.zone_ids, s.zone_ttl) == (("Z0123ABC", "Z9"), 0.0)


@pytest.mark.parametrize(("env", "message"), [
    pytest.param({"UNIFY_DNS_TTL": "ten"}, "UNIFY_DNS_TTL must be an integer", id="ttl"),
    pytest.param({"UNIFY_ROUTE53_POLICY": "delete-all"}, "UNIFY_ROUTE53_POLICY", id="policy"),
    pytest.param({"UNIFY_DNS_OWNER_ID": "a b"}, "UNIFY_DNS_OWNER_ID", id="owner"),
    pytest.param({"UNIFY_DNSMASQ_MANAGE": "maybe"}, "UNIFY_DNSMASQ_MANAGE", id="flag"),
    pytest.param({"UNIFY_CONSUL_DNS_ADDR": "consul:8600"}, "Consul DNS", id="consul"),
    pytest.param({"UNIFY_DNS411_MODE": "both"}, "UNIFY_DNS411_MODE", id="mode"),
    pytest.param({"UNIFY_DNSMASQ_CONF_NAME": "../x.conf"}, "CONF_NAME", id="conf-name"),
    pytest.param({"UNIFY_ROUTE53_ZONE_IDS": "Z1,example.com"},
                 "UNIFY_ROUTE53_ZONE_IDS: not a hosted zone id: 'example.com'", id="zone-id"),
    pytest.param({"UNIFY_ROUTE53_ZONE_TTL": "-1"}, "UNIFY_ROUTE53_ZONE_TTL", id="zone-ttl"),
    pytest.param({"UNIFY_DNS411_DEBOUNCE": "2"}, "UNIFY_DNS411_DEBOUNCE must be 0..1",
                 id="debounce"),
    pytest.param({"UNIFY_VERDICT_BUCKET": "a.b"},
                 "UNIFY_VERDICT_BUCKET must be 1-64 letters, digits, '_' or '-', got 'a.b'",
                 id="verdict-bucket"),
    pytest.param({"UNIFY_DNS411_STATE_BUCKET": "x" * 65}, "UNIFY_DNS411_STATE_BUCKET must be",
                 id="state-bucket"),
    pytest.param({"UNIFY_DNSMASQ_PORT": "70000"}, "^UNIFY_DNSMASQ_PORT must be 1-65535, got 70000$",
                 id="dnsmasq-port"),
    pytest.param({"UNIFY_ROUTE53_LOCK_TTL": "5"},
                 "^UNIFY_ROUTE53_LOCK_TTL must be 10-86400, got 5$", id="lock-ttl"),
    pytest.param({"UNIFY_ROUTE53_RESYNC": "-1"},
                 "^UNIFY_ROUTE53_RESYNC must be 0 or more, got -1$", id="route53-resync"),
    pytest.param({"UNIFY_DNS411_TICK": "-1"}, "^UNIFY_DNS411_TICK must be 0 or more, got -1$",
                 id="tick"),
    pytest.param({"UNIFY_DNS411_REPLICA_EVERY": "0"},
                 "^UNIFY_DNS411_REPLICA_EVERY must be more than 0, got 0$", id="replica-every"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        Dns411Settings.from_env(env)


def test_local_domains_are_normalised_and_validated():
    from dns411.settings import Dns411Settings
    env = {"UNIFY_DNS_LOCAL_DOMAINS": "Unify.Test., example.com,unify.test"}
    assert Dns411Settings.from_env(env).local_domains == ("example.com", "unify.test")
    with pytest.raises(ValueError, match="UNIFY_DNS_LOCAL_DOMAINS"):
        Dns411Settings.from_env({"UNIFY_DNS_LOCAL_DOMAINS": "bad domain/"})


def test_the_constructor_and_the_environment_share_their_defaults():
    assert Dns411Settings.from_env({}) == Dns411Settings()
    assert Dns411Settings(zones=("Example.com.",)).zones == ("example.com",)


@pytest.mark.parametrize("raw,value", [("yes", True), ("On", True), ("1", True), ("no", False),
                                       ("0", False), ("FALSE", False)])
def test_every_boolean_takes_the_one_dialect(raw, value):
    s = Dns411Settings.from_env({"UNIFY_ROUTE53_ENABLED": raw, "UNIFY_DNSMASQ_MANAGE": raw})
    assert (s.route53_enabled, s.manage) == (value, value)


def test_a_bad_boolean_is_refused_naming_the_variable():
    with pytest.raises(ValueError) as err:
        Dns411Settings.from_env({"UNIFY_ROUTE53_LOCK": "sometimes"})
    assert str(err.value) == ("UNIFY_ROUTE53_LOCK must be true or false (also 1/0, yes/no, "
                              "on/off), got 'sometimes'")


def test_botocore_retry_configuration_comes_from_the_settings():
    s = Dns411Settings.from_env({"UNIFY_ROUTE53_MAX_ATTEMPTS": "5",
                                 "UNIFY_ROUTE53_RETRY_MODE": "adaptive"})
    config = route53_config(max_attempts=s.max_attempts, retry_mode=s.retry_mode)
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 5}
    with pytest.raises(ValueError, match="^UNIFY_ROUTE53_RETRY_MODE must be standard or "
                                         "adaptive, got 'legacy'$"):
        Dns411Settings.from_env({"UNIFY_ROUTE53_RETRY_MODE": "legacy"})


def test_the_docstring_table_matches_the_model():
    check_table(Dns411Settings, rst_rows(settings_module.__doc__))
