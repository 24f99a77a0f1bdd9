"""registry-admin's files and settings, and the pure parts of gc and the registry client."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
import yaml

from registry_admin import gc, pki, store
from registry_admin.registry_api import next_link
from registry_admin.settings import RegistryAdminSettings

NOW = dt.datetime(2026, 12, 6, 1, 0, tzinfo=dt.UTC)
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_made_once_with_a_0600_key_and_damaged_files_are_never_replaced(tmp_path):
    state = tmp_path / "state"
    ca = store.ensure_ca(state, NOW, days=3650)
    assert _mode(state) == 0o700 and _mode(state / "ca.key") == 0o600
    assert _mode(state / "ca.crt") == 0o644
    assert store.ensure_ca(state, NOW, days=3650) == ca  # loaded, not made again
    (state / "ca.key").write_bytes(b"broken")
    with pytest.raises(ValueError, match="are not a certificate and its key"):
        store.ensure_ca(state, NOW, days=3650)


def test_secret_is_generated_once_or_read_from_a_file(tmp_path):
    first = store.ensure_secret(tmp_path, "http-secret", None)
    assert store.ensure_secret(tmp_path, "http-secret", None) == first
    assert _mode(tmp_path / "http-secret") == 0o600
    given = tmp_path / "swarm-secret"
    given.write_text("from-swarm\n")
    assert store.ensure_secret(tmp_path, "http-secret", given) == "from-swarm"
    given.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        store.ensure_secret(tmp_path, "http-secret", given)


def test_server_pair_and_trust_directories(tmp_path):
    ca = pki.new_ca(NOW)
    server = pki.issue_server(ca, pki.SanSet.of(["registry.unify.test"], []), NOW)
    store.write_server(tmp_path / "tls", server)
    assert _mode(tmp_path / "tls" / "registry.key") == 0o600
    assert store.read_server(tmp_path / "tls") == server
    certs_d = tmp_path / "certs.d"
    (certs_d / "someone.else:443").mkdir(parents=True)
    (certs_d / "someone.else:443" / "client.cert").write_text("x")
    assert store.write_trust(certs_d, ["a:5000", "b:5000", "someone.else:443"],
                             ca.cert_pem) == ["a:5000", "b:5000", "someone.else:443"]
    assert store.write_trust(certs_d, ["a:5000"], ca.cert_pem) == []  # unchanged
    assert store.remove_stale_trust(certs_d, ["a:5000"]) == ["b:5000"]
    assert sorted(p.name for p in certs_d.iterdir()) == ["a:5000", "someone.else:443"]
    assert (certs_d / "someone.else:443" / "client.cert").read_text() == "x"


def test_registry_config_is_what_distribution_reads(tmp_path):
    raw = store.render_registry_config(storage_dir=tmp_path / "s", tls_dir=tmp_path / "t",
                                       port=5000, secret="S", notify_url="http://ra:5005/notify",
                                       notify_token="T", read_only=True)
    config = yaml.safe_load(raw)
    assert config["http"]["secret"] == "S" and config["http"]["addr"] == ":5000"
    assert config["http"]["tls"] == {"certificate": str(tmp_path / "t" / "registry.crt"),
                                     "key": str(tmp_path / "t" / "registry.key")}
    assert config["storage"]["maintenance"] == {"readonly": {"enabled": True}}
    endpoint, = config["notifications"]["endpoints"]
    assert endpoint["headers"] == {"Authorization": ["Bearer T"]}
    assert endpoint["ignoredmediatypes"] == ["application/octet-stream"]


def test_read_only_switch_keeps_the_rest_of_the_config(tmp_path):
    path = tmp_path / "registry.yml"
    path.write_bytes(store.render_registry_config(
        storage_dir=tmp_path, tls_dir=tmp_path, port=5000, secret="S", notify_url="u",
        notify_token="T", read_only=False))
    before = yaml.safe_load(path.read_bytes())
    assert store.set_read_only(path, True)
    after = yaml.safe_load(path.read_bytes())
    assert after["storage"]["maintenance"] == {"readonly": {"enabled": True}}
    after["storage"]["maintenance"]["readonly"]["enabled"] = False
    assert after == before and _mode(path) == 0o600
    assert store.set_read_only(path, True) is False  # already read-only: unchanged
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="is not a registry configuration"):
        store.set_read_only(path, False)


async def test_gc_refuses_without_instances(tmp_path):
    from registry_admin.ops import Operator

    op = Operator(RegistryAdminSettings.from_env({"UNIFY_REGISTRY_STATE_DIR": str(tmp_path)}),
                  restarter=None)
    steps = []
    op.on_step = lambda *a: steps.append(a[1:3])
    outcome = await gc.run_gc(op, [], dry_run=False, delete_untagged=False, protected_refs=set())
    assert (outcome.status, outcome.reasons) == ("refused", [
        "no registry instance in the catalog: the instances cannot be switched to read-only"])
    assert steps == [("protect", "refused")]


def test_settings_from_env_and_their_errors():
    s = RegistryAdminSettings.from_env({
        "UNIFY_REGISTRY_DOMAINS": "unify.test, example.org", "UNIFY_REGISTRY_STATE_DIR": "/st",
        "UNIFY_REGISTRY_RESTART": "command",
        "UNIFY_REGISTRY_RESTART_COMMAND": '["systemctl", "restart", "registry@{port}"]',
        "UNIFY_REGISTRY_TRUST_PORTS": "443", "UNIFY_REGISTRY_NOTIFY_ADDR": "127.0.0.1:6000"})
    assert (s.domains, s.tls_dir.as_posix(), s.restart_command, s.trust_ports) == (
        ("unify.test", "example.org"), "/st/tls", ("systemctl", "restart", "registry@{port}"),
        (443,))
    assert (s.notify_host, s.notify_port, s.certs_d.as_posix()) == (
        "127.0.0.1", 6000, "/etc/docker/certs.d")
    for env, message in [
        ({"UNIFY_REGISTRY_DOMAINS": "bad_domain"}, "is not a host name"),
        ({"UNIFY_REGISTRY_RESTART": "kill"}, "must be none, docker or command"),
        ({"UNIFY_REGISTRY_RESTART": "command"}, "must be a JSON list of strings"),
        ({"UNIFY_REGISTRY_TRUST_PORTS": "99999"}, "is not a port"),
        ({"UNIFY_REGISTRY_CERT_DAYS": "5000"}, "must be 1-825"),
        ({"UNIFY_REGISTRY_MODE": "both"}, "must be manager or trust"),
        ({"UNIFY_REGISTRY_LISTEN_PORT": "99999"},
         "^UNIFY_REGISTRY_LISTEN_PORT must be 1-65535, got 99999$"),
        ({"UNIFY_REGISTRY_CA_DAYS": "0"}, "^UNIFY_REGISTRY_CA_DAYS must be 2-36500, got 0$"),
        ({"UNIFY_REGISTRY_RESTART_TIMEOUT": "0"},
         "^UNIFY_REGISTRY_RESTART_TIMEOUT must be more than 0, got 0$"),
        ({"UNIFY_REGISTRY_RESOLVE_TIMEOUT": "-1"},
         "^UNIFY_REGISTRY_RESOLVE_TIMEOUT must be more than 0, got -1$"),
        ({"UNIFY_REGISTRY_GC_TIMEOUT": "0"},
         "^UNIFY_REGISTRY_GC_TIMEOUT must be more than 0, got 0$"),
        ({"UNIFY_REGISTRY_HTTP_SECRET_FILE": "/nope"},
         "^UNIFY_REGISTRY_HTTP_SECRET_FILE: cannot read /nope: FileNotFoundError$"),
    ]:
        with pytest.raises(ValueError, match=message):
            RegistryAdminSettings.from_env(env)


def test_gc_output_and_protected_conflicts():
    report = gc.parse_gc_output(
        f"team/app\nteam/app: marking manifest {D1} \nteam/app: marking blob {D2}\n"
        f"manifest eligible for deletion: {D3}\n"
        "\n2 blobs marked, 1 blobs and 1 manifests eligible for deletion\n"
        f"blob eligible for deletion: {D3}\nnoise\n")
    assert report.marked_manifests == {("team/app", D1)} and report.marked_blobs == {D2}
    assert report.eligible_manifests == {D3} and report.eligible_blobs == {D3}
    assert report.summary == "2 blobs marked, 1 blobs and 1 manifests eligible for deletion"
    assert gc.protected_conflicts(report, {("team/app", D1): {D2}}) == []
    assert gc.protected_conflicts(report, {("team/app", D3): set(), ("x", D1): {D3},
                                           ("y", D2): None}) == [
        f"team/app@{D3} is protected but eligible for deletion (untagged)",
        f"blob {D3} of protected x@{D1} is eligible for deletion",
        f"y@{D2} is protected but not in the registry"]


@pytest.mark.parametrize("ref, parsed", [
    (f"registry.unify.test:5000/team/app:1@{D1}", ("registry.unify.test", "team/app", "1", D1)),
    ("localhost/app", ("localhost", "app", "", "")),
    ("nginx:1.25", ("", "nginx", "1.25", "")),
    ("127.0.0.1:5000/a/b", ("127.0.0.1", "a/b", "", "")),
    ("UPPER/Case", None),
])
def test_image_references(ref, parsed):
    assert gc.parse_image_ref(ref) == parsed


def test_next_link_stays_on_the_registry():
    base = "https://r:5000/v2/"
    assert next_link('</v2/_catalog?last=b&n=2>; rel="next"', base) == \
        "https://r:5000/v2/_catalog?last=b&n=2"
    assert next_link('<https://evil/v2/_catalog?last=b>; rel="next"', base) is None
    assert next_link(None, base) is None


def test_the_constructor_and_the_environment_share_their_defaults():
    from unify_common.settings import CommonSettings

    common = CommonSettings(node="n1")
    built = RegistryAdminSettings(common=common, state_dir=Path("/st"))
    assert RegistryAdminSettings.from_env({"UNIFY_NODE": "n1",
                                           "UNIFY_REGISTRY_STATE_DIR": "/st"}) == built
    assert (built.tls_dir, built.config_path, built.notify_host, built.notify_port) == (
        Path("/st/tls"), Path("/st/registry.yml"), "0.0.0.0", 5005)
    moved = RegistryAdminSettings(common=common, notify_host="127.0.0.1", notify_port=0)
    assert moved.notify_addr == ("127.0.0.1", 0)


def test_the_docstring_table_matches_the_model():
    import registry_admin.settings as settings_module
    from tests.fixtures.settings_docs import check_table, rst_rows

    check_table(RegistryAdminSettings, rst_rows(settings_module.__doc__))
