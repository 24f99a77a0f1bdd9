"""Settings, the shell's environment, sshd_config and the hook's request, as tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wireline.service import parse_push_request, sshd_config
from wireline.settings import WirelineSettings, shell_env

SHA = "a" * 40
ZERO = "0" * 40


def test_settings_from_env(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = WirelineSettings.from_env({
        "UNIFY_WIRELINE_DATA_DIR": "/d", "UNIFY_WIRELINE_SSH_PORT": "2022",
        "UNIFY_WIRELINE_REGISTRY": "reg:5000", "UNIFY_WIRELINE_REGISTRY_USER": "ci",
        "UNIFY_WIRELINE_REGISTRY_PASSWORD_FILE": str(secret), "DOCKER_HOST": "unix:///x.sock",
        "UNIFY_WIRELINE_DEPLOY_DOCKER_HOST": "tcp://swarm:2376",
        "UNIFY_WIRELINE_NETWORKS": "edge, ,proxy", "UNIFY_WIRELINE_LOCK_TTL": "9"})
    assert (settings.data_dir, settings.ssh_port, settings.registry) == (Path("/d"), 2022,
                                                                        "reg:5000")
    assert settings.registry_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    assert (settings.build_docker_host, settings.deploy_docker_host) == (
        "unix:///x.sock", "tcp://swarm:2376")
    assert settings.networks == ("edge", "proxy")
    assert settings.lock_ttl_s == 9.0
    assert settings.host_key == Path("/d/sshd/host_ed25519")
    assert settings.socket_path == Path("/d/wireline.sock")
    assert settings.bucket("locks") == "unify-wireline-locks"


@pytest.mark.parametrize("env, message", [
    ({"UNIFY_WIRELINE_SSH_PORT": "x"}, "UNIFY_WIRELINE_SSH_PORT must be an integer, got 'x'"),
    ({"UNIFY_WIRELINE_SSH_PORT": "70000"}, "UNIFY_WIRELINE_SSH_PORT must be 1-65535, got 70000"),
    ({"UNIFY_WIRELINE_REGISTRY_PASSWORD_FILE": "/nonexistent/pw"},
     "UNIFY_WIRELINE_REGISTRY_PASSWORD_FILE: cannot read /nonexistent/pw: FileNotFoundError"),
    ({"UNIFY_WIRELINE_REGISTRY_PASSWORD_FILE": "/etc/hostname",
      "UNIFY_WIRELINE_REGISTRY_PASSWORD": "p"},
     "set UNIFY_WIRELINE_REGISTRY_PASSWORD or UNIFY_WIRELINE_REGISTRY_PASSWORD_FILE, not both"),
    ({"UNIFY_WIRELINE_LOCK_TTL": "0"}, "UNIFY_WIRELINE_LOCK_TTL must be more than 0, got 0"),
    ({"UNIFY_WIRELINE_BUILD_TIMEOUT": "soon"},
     "UNIFY_WIRELINE_BUILD_TIMEOUT must be a number, got 'soon'"),
    ({"UNIFY_WIRELINE_SSH_USER": "git;id"},
     "UNIFY_WIRELINE_SSH_USER must be a user name, got 'git;id'"),
    ({"UNIFY_WIRELINE_DEPLOY_BRANCH": "a..b"},
     "UNIFY_WIRELINE_DEPLOY_BRANCH must be a branch name, got 'a..b'"),
    ({"UNIFY_WIRELINE_STACK_PREFIX": "a b"},
     "UNIFY_WIRELINE_STACK_PREFIX may hold letters, digits, '-' and '_' only, got 'a b'"),
    ({"UNIFY_HEALTH_ADDR": "nowhere"}, "UNIFY_HEALTH_ADDR must be host:port, got 'nowhere'"),
])
def test_bad_settings(env, message):
    with pytest.raises(ValueError) as err:
        WirelineSettings.from_env(env)
    assert str(err.value) == message


def test_defaults_and_derived_values():
    settings = WirelineSettings.from_env({})
    assert (settings.data_dir, settings.host_key, settings.authorized_keys) == (
        Path("/var/lib/wireline"), Path("/var/lib/wireline/sshd/host_ed25519"),
        Path("/var/lib/wireline/sshd/authorized_keys"))
    assert (settings.build_docker_host, settings.deploy_docker_host, settings.health_addr) == (
        "", "", ("127.0.0.1", 9106))
    assert Path(settings.shell).name == "unify-wireline-shell"
    # the constructor derives the same way (one place for each default)
    assert WirelineSettings(data_dir=Path("/d"), docker_host="unix:///e").host_key == \
        Path("/d/sshd/host_ed25519")
    assert WirelineSettings(docker_host="unix:///e", build_docker_host="tcp://b:2376") \
        .replace().deploy_docker_host == "unix:///e"
    assert WirelineSettings(host_key=Path("/k")).host_key == Path("/k")


def test_the_docstring_and_readme_tables_match_the_model():
    import wireline.settings as settings_module
    from tests.fixtures.settings_docs import check_table, markdown_rows, rst_rows

    check_table(WirelineSettings, rst_rows(settings_module.__doc__))
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    check_table(WirelineSettings, markdown_rows(readme))


def test_shell_env_drops_secrets_and_their_files():
    env = shell_env({"NATS_URL": "nats://n:4222", "NATS_PASSWORD": "p", "NATS_CREDS": "/c",
                     "NATS_PASSWORD_FILE": "/run/secrets/nats",
                     "UNIFY_WIRELINE_REGISTRY_PASSWORD": "p",
                     "UNIFY_WIRELINE_REGISTRY_PASSWORD_FILE": "/run/secrets/pw",
                     "CONSUL_HTTP_TOKEN": "t", "HOME": "/root", "PATH": "/bin",
                     "DOCKER_HOST": "unix:///s", "UNIFY_WIRELINE_REGISTRY": "r:5000"})
    assert env == {"DOCKER_HOST": "unix:///s", "NATS_CREDS": "/c", "NATS_URL": "nats://n:4222",
                   "PATH": "/bin", "UNIFY_WIRELINE_REGISTRY": "r:5000"}


def test_sshd_config():
    settings = WirelineSettings(data_dir=Path("/d"), ssh_port=2222, ssh_user="git",
                                host_key=Path("/d/k"), authorized_keys=Path("/d/ak"))
    lines = sshd_config(settings).splitlines()
    for expected in ("Port 2222", "HostKey /d/k", "AuthorizedKeysFile /d/ak", "AllowUsers git",
                     "PermitRootLogin no", "PasswordAuthentication no", "DisableForwarding yes",
                     "PermitTTY no", "PermitUserEnvironment no", "UsePAM no"):
        assert expected in lines
    root = sshd_config(WirelineSettings(ssh_user="root")).splitlines()
    assert "PermitRootLogin forced-commands-only" in root


def _request(**fields) -> bytes:
    base = {"app": "ticker", "key": "alice", "fingerprint": "SHA256:x", "t0": "1.5",
            "updates": [[ZERO, SHA, "refs/heads/main"]], "git_env": {}}
    base.update(fields)
    return json.dumps(base).encode()


def test_push_request_accepted():
    settings = WirelineSettings(data_dir=Path("/d"))
    quarantine = "/d/repos/ticker.git/objects/tmp_objdir-incoming-x"
    ctx, updates = parse_push_request(_request(git_env={
        "GIT_OBJECT_DIRECTORY": quarantine,
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": "/d/repos/ticker.git/objects"}), settings)
    assert (ctx.app, ctx.repo, ctx.pusher, ctx.started) == (
        "ticker", Path("/d/repos/ticker.git"), "alice", 1.5)
    assert updates == [(ZERO, SHA, "refs/heads/main")]
    assert ctx.git_env["GIT_OBJECT_DIRECTORY"] == quarantine


@pytest.mark.parametrize("raw, message", [
    (b"not json", None),
    (_request(app="../etc"), None),
    (_request(updates=[[ZERO, "HEAD", "refs/heads/main"]]), "malformed ref update"),
    (_request(updates=[[ZERO, SHA, "main; id"]]), "malformed ref update"),
    (_request(git_env={"GIT_OBJECT_DIRECTORY": "/d/repos/other.git/objects"}),
     "refused git variable GIT_OBJECT_DIRECTORY"),
    (_request(git_env={"GIT_ALTERNATE_OBJECT_DIRECTORIES":
                       "/d/repos/ticker.git/objects:/etc"}),
     "refused git variable GIT_ALTERNATE_OBJECT_DIRECTORIES"),
    (_request(git_env={"GIT_DIR": "/d/repos/ticker.git"}), "refused git variable GIT_DIR"),
])
def test_push_request_refused(raw, message):
    with pytest.raises(ValueError) as err:
        parse_push_request(raw, WirelineSettings(data_dir=Path("/d")))
    if message:
        assert str(err.value) == message
    else:
        assert str(err.value).startswith("malformed hook request")


def test_hook_without_the_service_runs_the_pipeline_itself(tmp_path):
    import os
    import subprocess
    import sys
    env = dict(os.environ, WIRELINE_SOCKET=str(tmp_path / "absent.sock"), WIRELINE_APP="ticker",
               WIRELINE_KEY="alice", UNIFY_WIRELINE_DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "wireline.hook"], env=env,
                            input=f"{ZERO} {SHA} refs/heads/feature\n", capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "wireline service not reachable; deploying from the hook",
        "refs/heads/feature stored, not deployed (the deploy branch is main)"]
    refused = subprocess.run([sys.executable, "-m", "wireline.hook"], env=env,
                             input=f"{SHA} {ZERO} refs/heads/main\n", capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        "refused: deleting main is not allowed; push DEPLOY=N in wireline.ini to remove the app")
