"""registrator settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

import registrator.settings as settings_module
from registrator.settings import RegistratorSettings
from tests.fixtures.settings_docs import check_table, markdown_rows, rst_rows
from unify_common.settings import CommonSettings


def test_defaults():
    assert RegistratorSettings.from_env({}) == RegistratorSettings(
        ip="", internal=False, force_tags=(), resync=60.0, retry=5.0, nats=True)


def test_values():
    settings = RegistratorSettings.from_env({
        "UNIFY_REGISTRATOR_IP": "192.0.2.1", "UNIFY_REGISTRATOR_INTERNAL": "true",
        "UNIFY_REGISTRATOR_TAGS": "a, b,a", "UNIFY_REGISTRATOR_RESYNC": "0",
        "UNIFY_REGISTRATOR_RETRY": "0.5", "UNIFY_REGISTRATOR_NATS": "0"})
    assert settings == RegistratorSettings(ip="192.0.2.1", internal=True, force_tags=("a", "b"),
                                           resync=0.0, retry=0.5, nats=False)


@pytest.mark.parametrize("env,message", [
    ({"UNIFY_REGISTRATOR_IP": "host.example"},
     "UNIFY_REGISTRATOR_IP must be an IP address, got 'host.example'"),
    ({"UNIFY_REGISTRATOR_INTERNAL": "maybe"},
     "UNIFY_REGISTRATOR_INTERNAL must be true or false (also 1/0, yes/no, on/off), got 'maybe'"),
    ({"UNIFY_HEALTH_ADDR": "9104"}, "UNIFY_HEALTH_ADDR must be host:port, got '9104'"),
    ({"UNIFY_REGISTRATOR_RESYNC": "soon"},
     "UNIFY_REGISTRATOR_RESYNC must be a number, got 'soon'"),
    ({"UNIFY_REGISTRATOR_RESYNC": "-1"}, "UNIFY_REGISTRATOR_RESYNC must be >= 0, got -1.0"),
    ({"UNIFY_REGISTRATOR_RETRY": "0"}, "UNIFY_REGISTRATOR_RETRY must be > 0, got 0.0"),
])
def test_bad_values(env, message):
    with pytest.raises(ValueError) as err:
        RegistratorSettings.from_env(env)
    assert str(err.value) == message


def test_the_constructor_has_the_same_defaults_and_health_address():
    assert RegistratorSettings.from_env({}) == RegistratorSettings()
    assert RegistratorSettings.from_env({"UNIFY_HEALTH_ADDR": ":0"}).health_addr == (
        "127.0.0.1", 0)


def test_the_docstring_and_readme_tables_match_the_model():
    others = {"DOCKER_HOST", *CommonSettings.env_variables()}
    check_table(RegistratorSettings, rst_rows(settings_module.__doc__), others=others)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    check_table(RegistratorSettings, markdown_rows(readme), others=others)
