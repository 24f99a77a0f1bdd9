"""NATS credentials reach a real server that requires them; secrets never reach logs."""

from __future__ import annotations

import json
import logging

import pytest

from unify_common.logs import _JsonFormatter, _TextFormatter
from unify_common.natsio import connect_nats
from unify_common.settings import CommonSettings
from unify_testkit.devstack.nats import nats_server_binary
from unify_testkit.devstack.process import ManagedProcess, free_port, tcp_open


@pytest.fixture
def nats_with_password(tmp_path):
    port = free_port()
    proc = ManagedProcess("nats-auth", [nats_server_binary(), "-a", "127.0.0.1", "-p",
                                        str(port), "--user", "unify", "--pass", "s3cret-pw"],
                          log_path=tmp_path / "nats.log")
    proc.start(lambda: tcp_open("127.0.0.1", port))
    yield f"nats://127.0.0.1:{port}"
    proc.stop()


async def test_user_and_password_from_the_environment(nats_with_password):
    env = {"NATS_URL": nats_with_password, "NATS_USER": "unify", "NATS_PASSWORD": "s3cret-pw"}
    settings = CommonSettings.from_env(env)
    assert "s3cret-pw" not in repr(settings)
    nc = await connect_nats(settings, name="auth-test")
    assert nc.is_connected
    await nc.close()


def test_consul_token_is_kept_out_of_repr():
    settings = CommonSettings.from_env({"CONSUL_HTTP_TOKEN": "b1gs3cret-token",
                                        "CONSUL_HTTP_ADDR": "https://consul.local:8501"})
    assert "b1gs3cret-token" not in repr(settings)
    assert (settings.consul_scheme, settings.consul_host, settings.consul_port) == (
        "https", "consul.local", 8501)


@pytest.mark.parametrize("formatter", [_JsonFormatter(), _TextFormatter()], ids=["json", "text"])
def test_secret_looking_fields_are_masked(formatter):
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "connecting", None, None)
    record.fields = {"consul_token": "tok-123", "nats_password": "pw-456",
                     "Authorization": "Bearer x", "node": "n1"}
    line = formatter.format(record)
    for secret in ("tok-123", "pw-456", "Bearer x"):
        assert secret not in line
    assert "n1" in line
    if isinstance(formatter, _JsonFormatter):
        assert json.loads(line)["consul_token"] == "***"
