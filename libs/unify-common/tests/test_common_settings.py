"""CommonSettings on pydantic-settings: one boolean dialect, secrets, defaults, the table."""

from __future__ import annotations

import socket

import pytest

import unify_common.settings as settings_module
from tests.fixtures.settings_docs import check_table, rst_rows
from unify_common.settings import CommonSettings, bucket_name


@pytest.mark.parametrize("raw,scheme", [
    ("1", "https"), ("true", "https"), ("TRUE", "https"), ("yes", "https"), ("on", "https"),
    ("0", "http"), ("false", "http"), ("no", "http"), ("off", "http"), ("", "http")])
def test_consul_http_ssl_takes_the_usual_spellings(raw, scheme):
    assert CommonSettings.from_env({"CONSUL_HTTP_SSL": raw}).consul_scheme == scheme


@pytest.mark.parametrize("raw", ["maybe", "2", "https"])
def test_consul_http_ssl_refuses_anything_else(raw):
    with pytest.raises(ValueError) as err:
        CommonSettings.from_env({"CONSUL_HTTP_SSL": raw})
    assert str(err.value) == (
        f"CONSUL_HTTP_SSL must be true or false (also 1/0, yes/no, on/off), got {raw!r}")


def test_a_url_scheme_decides_tls():
    settings = CommonSettings.from_env({"CONSUL_HTTP_ADDR": "http://c.local:8500/",
                                        "CONSUL_HTTP_SSL": "true"})
    assert (settings.consul_scheme, settings.consul_addr) == ("http", "c.local:8500")


def test_the_constructor_and_the_environment_share_their_defaults():
    assert CommonSettings.from_env({}) == CommonSettings()
    assert CommonSettings().node == socket.gethostname()
    assert CommonSettings.from_env({"NATS_URL": " nats://a:1, ,nats://b:2 "}).nats_urls == (
        "nats://a:1", "nats://b:2")


def test_secrets_are_secret_types_and_never_in_repr():
    settings = CommonSettings(consul_token="t0ken-value", nats_password="pa55word")
    assert (settings.consul_token.get_secret_value(),
            settings.nats_password.get_secret_value()) == ("t0ken-value", "pa55word")
    assert "t0ken-value" not in repr(settings) and "pa55word" not in str(settings)


def test_numbers_name_the_variable():
    with pytest.raises(ValueError) as err:
        CommonSettings.from_env({"UNIFY_RESYNC": "soon"})
    assert str(err.value) == "UNIFY_RESYNC must be a number, got 'soon'"
    with pytest.raises(ValueError) as err:
        CommonSettings.from_env({"UNIFY_RESYNC": "-1"})
    assert str(err.value) == "UNIFY_RESYNC must be 0 or more seconds, got -1"


def test_the_module_table_matches_the_model():
    check_table(CommonSettings, rst_rows(settings_module.__doc__))


def test_a_bad_secret_is_refused_without_its_value():
    with pytest.raises(ValueError) as err:
        CommonSettings(consul_token=["t0ken-value"])
    assert str(err.value) == "CONSUL_HTTP_TOKEN: Input should be a valid string, got '**********'"


@pytest.mark.parametrize("name", ["unify-catalog", "KV_x", "a" * 64, "under_score-1"])
def test_bucket_names_accepted(name):
    assert bucket_name(name, "UNIFY_X_BUCKET") == name


@pytest.mark.parametrize("name", ["", "a" * 65, "a.b", "a b", "a>", "a*", "ä"])
def test_bucket_names_refused_naming_the_variable(name):
    with pytest.raises(ValueError) as err:
        bucket_name(name, "UNIFY_X_BUCKET")
    assert str(err.value) == (
        f"UNIFY_X_BUCKET must be 1-64 letters, digits, '_' or '-', got {name[:80]!r}")


@pytest.mark.parametrize(("env", "message"), [
    pytest.param({"UNIFY_STREAM_MAX_AGE": "-5"}, "UNIFY_STREAM_MAX_AGE must be 120 or more, got -5",
                 id="stream-max-age"),
    pytest.param({"CONSUL_HTTP_ADDR": "http://[::1"},
                 "CONSUL_HTTP_ADDR must be host, host:port or [v6]:port, optionally after "
                 "http:// or https://, got '[::1'", id="unclosed-v6"),
    pytest.param({"CONSUL_HTTP_ADDR": "c.local:70000"},
                 "CONSUL_HTTP_ADDR must be host, host:port or [v6]:port, optionally after "
                 "http:// or https://, got 'c.local:70000'", id="port"),
    pytest.param({"CONSUL_HTTP_ADDR": "http://u:pw@c.local:8500"},
                 "CONSUL_HTTP_ADDR must be host, host:port or [v6]:port, optionally after "
                 "http:// or https://, got '***@c.local:8500'", id="credentials-masked"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ValueError) as err:
        CommonSettings.from_env(env)
    assert str(err.value) == message


@pytest.mark.parametrize(("addr", "expected"), [
    ("https://[::1]:8501/", "[::1]:8501"), ("consul.service:8500", "consul.service:8500"),
    ("10.0.0.1", "10.0.0.1")])
def test_good_consul_addresses_are_kept(addr, expected):
    assert CommonSettings.from_env({"CONSUL_HTTP_ADDR": addr}).consul_addr == expected


def test_stream_max_age_is_read_once_with_the_settings():
    assert CommonSettings.from_env({}).stream_max_age == 604800.0
    assert CommonSettings.from_env({"UNIFY_STREAM_MAX_AGE": "3600"}).stream_max_age == 3600.0
