"""Secrets from files (Swarm/Docker secrets): ``CONSUL_HTTP_TOKEN_FILE``, ``NATS_PASSWORD_FILE``."""

from __future__ import annotations

import pytest

from unify_common.settings import CommonSettings, env_secret


def test_secrets_come_from_files(tmp_path):
    (tmp_path / "token").write_text("c0ffee-token\n")
    (tmp_path / "password").write_text("s3cret")
    settings = CommonSettings.from_env({
        "CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "token"),
        "NATS_PASSWORD_FILE": str(tmp_path / "password"), "NATS_USER": "unify"})
    assert (settings.consul_token.get_secret_value(), settings.nats_user,
            settings.nats_password.get_secret_value()) == (
        "c0ffee-token", "unify", "s3cret")
    assert "c0ffee" not in repr(settings) and "s3cret" not in repr(settings)


def test_plain_variable_still_works():
    assert env_secret({"CONSUL_HTTP_TOKEN": "abc"}, "CONSUL_HTTP_TOKEN") == "abc"
    assert env_secret({}, "CONSUL_HTTP_TOKEN") == ""


def test_both_or_unreadable_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="^set CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE, not both$"):
        env_secret({"CONSUL_HTTP_TOKEN": "a", "CONSUL_HTTP_TOKEN_FILE": "/x"}, "CONSUL_HTTP_TOKEN")
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=f"^NATS_PASSWORD_FILE: cannot read {missing}: FileNotFoundError$"):
        env_secret({"NATS_PASSWORD_FILE": str(missing)}, "NATS_PASSWORD")
