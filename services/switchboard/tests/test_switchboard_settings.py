"""Pure table: switchboard settings from environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

import switchboard.settings as settings_module
from switchboard.render import RenderOptions
from switchboard.settings import SwitchboardSettings
from tests.fixtures.settings_docs import check_table, markdown_rows, rst_rows
from unify_common.settings import CommonSettings


def test_defaults_from_the_config_path():
    s = SwitchboardSettings.from_env({"UNIFY_HAPROXY_CONFIG": "/etc/haproxy/unify.cfg",
                                      "UNIFY_NODE": "edge-1"})
    assert (s.config_path, s.master_socket, s.haproxy_bin, s.cert_dir, s.manage) == (
        Path("/etc/haproxy/unify.cfg"), Path("/etc/haproxy/master.sock"), "haproxy", None,
        False)
    assert (s.render.bind, s.render.run_dir, s.render.maxconn, s.render.hard_stop_after,
            s.render.ssl_ciphers, s.min_slots) == ("0.0.0.0", "/etc/haproxy", 4000, "30s", "",
                                                   4)
    assert (s.render.host_maps, s.spare_backends, s.debounce, s.max_wait) == (True, 4, 0.05, 1.0)
    assert s.common.node == "edge-1"


def test_every_variable():
    s = SwitchboardSettings.from_env({
        "UNIFY_HAPROXY_CONFIG": "/srv/h.cfg", "UNIFY_HAPROXY_MASTER_SOCKET": "/run/m.sock",
        "UNIFY_HAPROXY_BIN": "/opt/haproxy", "UNIFY_HAPROXY_CERT_DIR": "/srv/certs",
        "UNIFY_HAPROXY_BIND": "127.0.0.1", "UNIFY_HAPROXY_RUN_DIR": "/run/sb",
        "UNIFY_HAPROXY_MANAGE": "1", "UNIFY_HAPROXY_MAXCONN": "2000",
        "UNIFY_HAPROXY_HARD_STOP_AFTER": "5m", "UNIFY_HAPROXY_SSL_CIPHERS": "ECDHE+AESGCM",
        "UNIFY_HAPROXY_MIN_SLOTS": "16", "UNIFY_HAPROXY_HOST_MAPS": "0",
        "UNIFY_HAPROXY_SPARE_BACKENDS": "9", "UNIFY_SWITCHBOARD_DEBOUNCE": "0.02",
        "UNIFY_SWITCHBOARD_MAX_WAIT": "2.5"})
    assert (s.master_socket, s.haproxy_bin, s.cert_dir, s.manage) == (
        Path("/run/m.sock"), "/opt/haproxy", Path("/srv/certs"), True)
    assert (s.render.bind, s.render.run_dir, s.render.maxconn, s.render.hard_stop_after,
            s.render.ssl_ciphers, s.min_slots) == ("127.0.0.1", "/run/sb", 2000, "5m",
                                                   "ECDHE+AESGCM", 16)
    assert (s.render.host_maps, s.spare_backends, s.debounce, s.max_wait) == (False, 9, 0.02, 2.5)


CFG = {"UNIFY_HAPROXY_CONFIG": "/srv/h.cfg"}
BAD = {
    "no-config": ({"UNIFY_HAPROXY_BIND": "127.0.0.1"}, "UNIFY_HAPROXY_CONFIG"),
    "bind-not-ip": ({**CFG, "UNIFY_HAPROXY_BIND": "0.0.0.0:80"}, "bind must be an IP address"),
    "run-dir-space": ({**CFG, "UNIFY_HAPROXY_RUN_DIR": "/run/a b"}, "run_dir"),
    "ciphers-newline": ({**CFG, "UNIFY_HAPROXY_SSL_CIPHERS": "A\nB"}, "ssl_ciphers"),
    "hard-stop": ({**CFG, "UNIFY_HAPROXY_HARD_STOP_AFTER": "soon"}, "hard_stop_after"),
    "manage": ({**CFG, "UNIFY_HAPROXY_MANAGE": "maybe"},
               "^UNIFY_HAPROXY_MANAGE must be true or false \\(also 1/0, yes/no, on/off\\), "
               "got 'maybe'$"),
    "maxconn": ({**CFG, "UNIFY_HAPROXY_MAXCONN": "many"}, "UNIFY_HAPROXY_MAXCONN"),
    "socket-comma": ({**CFG, "UNIFY_HAPROXY_MASTER_SOCKET": "/run/a,b.sock"},
                     "UNIFY_HAPROXY_MASTER_SOCKET"),
    "slots": ({**CFG, "UNIFY_HAPROXY_MIN_SLOTS": "0"}, "UNIFY_HAPROXY_MIN_SLOTS"),
    "host-maps": ({**CFG, "UNIFY_HAPROXY_HOST_MAPS": "2"}, "UNIFY_HAPROXY_HOST_MAPS"),
    "spares": ({**CFG, "UNIFY_HAPROXY_SPARE_BACKENDS": "65"}, "UNIFY_HAPROXY_SPARE_BACKENDS"),
    "debounce": ({**CFG, "UNIFY_SWITCHBOARD_DEBOUNCE": "2"},
                 "UNIFY_SWITCHBOARD_DEBOUNCE must be 0-1 seconds, got 2"),
    "max-wait-below-debounce": ({**CFG, "UNIFY_SWITCHBOARD_DEBOUNCE": "0.5",
                                 "UNIFY_SWITCHBOARD_MAX_WAIT": "0.1"},
                                "UNIFY_SWITCHBOARD_MAX_WAIT must be at least the debounce"),
    "verdict-bucket": ({**CFG, "UNIFY_VERDICT_BUCKET": "verdicts>"},
                       "^UNIFY_VERDICT_BUCKET must be 1-64 letters, digits, '_' or '-', "
                       "got 'verdicts>'$"),
}


@pytest.mark.parametrize(("env", "message"), list(BAD.values()), ids=list(BAD))
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        SwitchboardSettings.from_env(env)


@pytest.mark.parametrize("raw,value", [("yes", True), ("on", True), ("TRUE", True),
                                       ("no", False), ("off", False), ("0", False)])
def test_booleans_take_the_one_dialect(raw, value):
    s = SwitchboardSettings.from_env({**CFG, "UNIFY_HAPROXY_MANAGE": raw,
                                      "UNIFY_HAPROXY_HOST_MAPS": raw})
    assert (s.manage, s.render.host_maps) == (value, value)


def test_the_constructor_and_the_environment_share_their_defaults():
    common = CommonSettings(node="n1")
    built = SwitchboardSettings(common=common, config_path=Path("/srv/h.cfg"))
    assert SwitchboardSettings.from_env({**CFG, "UNIFY_NODE": "n1"}) == built
    assert (built.spare_backends, built.render.host_maps, built.master_socket) == (
        4, True, Path("/srv/master.sock"))


def test_render_options_given_to_the_constructor_become_the_fields():
    render = RenderOptions(bind="127.0.0.1", run_dir="/run/sb", maxconn=10,
                           hard_stop_after="1s", ssl_ciphers="X", host_maps=False)
    s = SwitchboardSettings(common=CommonSettings(node="n1"), config_path=Path("/srv/h.cfg"),
                            render=render)
    assert (s.render, s.bind, s.run_dir, s.master_socket) == (
        render, "127.0.0.1", Path("/run/sb"), Path("/run/sb/master.sock"))


def test_the_docstring_and_readme_tables_match_the_model():
    check_table(SwitchboardSettings, rst_rows(settings_module.__doc__), required=CFG)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    check_table(SwitchboardSettings, markdown_rows(readme), required=CFG)
