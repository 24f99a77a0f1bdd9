"""registrator settings from the environment."""

from __future__ import annotations

import pytest

from registrator.settings import RegistratorSettings


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
     "UNIFY_REGISTRATOR_INTERNAL must be 1 or 0, got 'maybe'"),
    ({"UNIFY_REGISTRATOR_RESYNC": "soon"},
     "UNIFY_REGISTRATOR_RESYNC must be a number, got 'soon'"),
    ({"UNIFY_REGISTRATOR_RESYNC": "-1"}, "UNIFY_REGISTRATOR_RESYNC must be >= 0, got -1.0"),
    ({"UNIFY_REGISTRATOR_RETRY": "0"}, "UNIFY_REGISTRATOR_RETRY must be > 0, got 0.0"),
])
def test_bad_values(env, message):
    with pytest.raises(ValueError) as err:
        RegistratorSettings.from_env(env)
    assert str(err.value) == message
