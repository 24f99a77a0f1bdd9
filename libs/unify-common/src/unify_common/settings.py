"""Connection settings shared by every component, read from the environment, and the base
of every service's settings (:class:`EnvSettings`, on pydantic-settings).

Each ecosystem's own variables are used where they exist (Consul and NATS as their CLIs read
them); the rest are Unify's own:

========================  =======================================================  =========================
variable                  meaning                                                  default
========================  =======================================================  =========================
``CONSUL_HTTP_ADDR``      Consul agent, ``host:port`` or a URL (``https://`` sets   ``127.0.0.1:8500``
                          TLS)
``CONSUL_HTTP_TOKEN``     ACL token (or ``CONSUL_HTTP_TOKEN_FILE``)                 (none)
``CONSUL_HTTP_SSL``       talk HTTPS to Consul (a boolean)                          ``false``
``CONSUL_CACERT``         CA bundle verifying Consul's certificate                  (system CAs)
``NATS_URL``              NATS servers, comma-separated for a cluster               ``nats://127.0.0.1:4222``
``NATS_CREDS``            credentials file (JWT + nkey seed)                        (none)
``NATS_USER``             user name                                                 (none)
``NATS_PASSWORD``         password (or ``NATS_PASSWORD_FILE``)                      (none)
``NATS_CA``               CA bundle verifying the servers' certificates             (none)
``NATS_CERT``             client certificate (mutual TLS)                           (none)
``NATS_KEY``              client key (mutual TLS)                                   (none)
``UNIFY_STREAM``          the JetStream stream of Unify's events                    ``UNIFY``
``UNIFY_CATALOG_BUCKET``  the JetStream KV bucket of the catalog                    ``unify-catalog``
``UNIFY_NODE``            this node's name in events and IDs                        (the host name)
``UNIFY_LOG_FORMAT``      ``text`` or ``json``                                      ``text``
``UNIFY_LOG_LEVEL``       ``debug``, ``info``, ``warning``, ``error`` or            ``INFO``
                          ``critical`` (any case)
``UNIFY_RESYNC``          seconds between full reconciles of a subscriber while     ``300``
                          the catalog is quiet; 0: never
``UNIFY_STREAM_MAX_AGE``  seconds the stream keeps events (120 or more; set on the  ``604800``
                          stream by consul-bridge only)
========================  =======================================================  =========================

Booleans, in every Unify setting, take one dialect: ``1``/``true``/``yes``/``on``/``t``/``y``
and ``0``/``false``/``no``/``off``/``f``/``n`` in any case (pydantic's); anything else is
refused with an error naming the variable. An empty variable means its default.

Secrets (tokens, passwords) are :class:`pydantic.SecretStr`: ``repr`` and logs show
``**********``; ``.get_secret_value()`` gives the value to the client library. Each secret can
also come from a file, as Swarm secrets and Docker secrets are mounted:
``CONSUL_HTTP_TOKEN_FILE`` (the Consul CLI's own variable) and ``NATS_PASSWORD_FILE``; the
file's content, without its trailing newline, is the value. ``NATS_CREDS`` is a file already.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .logs import log_format, log_level

__all__ = ["CommaList", "CommonSettings", "EnvSettings", "HostPort", "bucket_name",
           "env_only_parser", "env_float",
           "env_int",
           "env_secret", "env_var"]


#: what a JetStream KV bucket may be called (the server's rule for stream names, which a
#: bucket's ``KV_<bucket>`` stream must follow, narrowed to the characters NATS tools accept)
_BUCKET_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def env_only_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The command line of a service whose settings all come from the environment: only
    ``--help`` (which prints ``doc``, a module docstring with its reST markup taken out, and
    exits 0 before anything starts). Parse with ``.parse_args(argv)``; an unknown argument
    exits 2 with argparse's usage message."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", (doc or "").replace("``", ""))
    return argparse.ArgumentParser(prog=prog, description=text,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def bucket_name(value: str, variable: str) -> str:
    """``value`` when it is a usable NATS KV bucket name: 1-64 letters, digits, ``_`` or
    ``-``.

    :raises ValueError: naming ``variable`` and showing (the start of) ``value``.
    """
    if not _BUCKET_NAME.fullmatch(value):
        raise ValueError(f"{variable} must be 1-64 letters, digits, '_' or '-', "
                         f"got {value[:80]!r}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    """``float(env[name])`` or ``default``. :raises ValueError: naming the variable."""
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    """``int(env[name])`` or ``default``. :raises ValueError: naming the variable."""
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def env_secret(env: Mapping[str, str], name: str) -> str:
    """The secret ``env[name]``, or the content of the file named by ``env[name + "_FILE"]``
    (trailing newline removed) when that is set; ``""`` when neither is.

    :raises ValueError: both are set, or the file cannot be read (the message names the
        variable and the path, never the content).
    """
    path = env.get(f"{name}_FILE", "")
    if not path:
        return env.get(name, "")
    if env.get(name, ""):
        raise ValueError(f"set {name} or {name}_FILE, not both")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{name}_FILE: cannot read {path}: {type(err).__name__}") from None




def _split_commas(raw: Any) -> Any:
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


#: a tuple of strings; from the environment a comma-separated list (spaces trimmed, empty
#: items dropped), never JSON.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]


def _host_port(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"must be host:port, got {text!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


#: ``(host, port)``; from the environment ``host:port``, ``[v6]:port`` or ``:port`` (host
#: ``127.0.0.1``); port 0 means "any free port".
HostPort = Annotated[tuple[str, int], NoDecode, BeforeValidator(_host_port)]


def env_var(name: str, default: Any = ..., **kwargs: Any) -> Any:
    """A settings field read from the environment variable ``name`` (``Field`` with
    ``validation_alias``); the constructor takes the field's own name."""
    return Field(default, validation_alias=name, **kwargs)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``;
    empty values count as unset."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls, case_sensitive=True, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key: value for key, value in self._env.items() if value != ""}


class _SecretFileSource(PydanticBaseSettingsSource):
    """Each :class:`SecretStr` field ``X`` also read from the file named by ``X_FILE``
    (:func:`env_secret`: trailing newline removed; both set or an unreadable file is an error)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for var in self.settings_cls.secret_variables():  # type: ignore[attr-defined]
            if self._env.get(f"{var}_FILE", ""):
                values[var] = env_secret(self._env, var)
        return values


_BOOL_WORDS = "true or false (also 1/0, yes/no, on/off)"

#: ``CONSUL_HTTP_ADDR`` once its scheme is taken off: a host name or IPv4 address, or a
#: bracketed IPv6 address, then an optional port
_CONSUL_ADDR = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")

#: pydantic's error types of a number outside a field's ``ge``/``gt``/``le``/``lt``
_BOUND_ERRORS = ("greater_than_equal", "greater_than", "less_than_equal", "less_than")


def _bounds_text(field: FieldInfo | None) -> str:
    """A field's range in words, from its ``ge``/``gt``/``le``/``lt`` (as given to
    :func:`env_var`): ``1-65535``, ``0 or more``, ``more than 0``, ``more than 0 and at most
    1``."""
    bounds: dict[str, Any] = {}
    for item in (field.metadata if field is not None else ()):
        for key in ("ge", "gt", "le", "lt"):
            if getattr(item, key, None) is not None:
                bounds[key] = getattr(item, key)
    def num(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else str(value)

    low = (num(bounds["ge"]), "ge") if "ge" in bounds else \
        ((num(bounds["gt"]), "gt") if "gt" in bounds else None)
    high = (num(bounds["le"]), "le") if "le" in bounds else \
        ((num(bounds["lt"]), "lt") if "lt" in bounds else None)
    if low and high and low[1] == "ge" and high[1] == "le":
        return f"{low[0]}-{high[0]}"
    parts = []
    if low:
        parts.append(f"{low[0]} or more" if low[1] == "ge" else f"more than {low[0]}")
    if high:
        parts.append(f"at most {high[0]}" if high[1] == "le" else f"less than {high[0]}")
    return " and ".join(parts) or "in range"


class EnvSettings(BaseSettings):
    """Base of Unify's settings models: frozen, one field per environment variable (named by
    :func:`env_var`), read by :meth:`from_env`.

    The constructor takes field names and reads nothing from the environment (tests and
    benchmarks build settings by hand); :meth:`from_env` reads only the environment.
    A bad value raises :class:`ValueError` whose message names the variable (several bad
    values: the messages joined by ``"; "``).
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_by_name=True,
                                      validate_by_alias=True, case_sensitive=True,
                                      env_ignore_empty=True, arbitrary_types_allowed=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise ValueError(type(self)._explain(err)) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **values: Any) -> Self:
        """Read the settings from ``env`` (default ``os.environ``); ``values`` (by field name)
        take precedence. A field that is itself :class:`EnvSettings` (such as ``common``) is
        read from the same ``env``.

        :raises ValueError: a malformed or missing value, naming the variable.
        """
        env = os.environ if env is None else env
        for name, field in cls.model_fields.items():  # nested settings, from the same env
            kind = field.annotation
            if name not in values and isinstance(kind, type) and issubclass(kind, EnvSettings):
                values[name] = kind.from_env(env)
        sources = (InitSettingsSource(cls, init_kwargs=values), _SecretFileSource(cls, env),
                   _MappingEnvSource(cls, env))
        return cls(_build_sources=(sources, values))

    @classmethod
    def env_variables(cls) -> dict[str, str]:
        """``{variable: field name}`` of every field read from the environment."""
        return {field.validation_alias: name for name, field in cls.model_fields.items()
                if isinstance(field.validation_alias, str)}

    @classmethod
    def secret_variables(cls) -> tuple[str, ...]:
        """The variables of :class:`SecretStr` fields (each also read from ``<name>_FILE``)."""
        return tuple(var for var, name in cls.env_variables().items()
                     if cls.model_fields[name].annotation in (SecretStr, "SecretStr"))

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (field names), validated like the constructor."""
        current = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**current, **changes})

    @classmethod
    def _explain(cls, err: ValidationError) -> str:
        messages = []
        for error in err.errors(include_url=False):
            loc = str(error["loc"][0]) if error["loc"] else ""
            field = cls.model_fields.get(loc)
            var = field.validation_alias if field and isinstance(field.validation_alias, str) \
                else loc
            kind, given = error["type"], error.get("input")
            if field is None:
                field = cls.model_fields.get(cls.env_variables().get(loc, ""))
            if field is not None and field.annotation in (SecretStr, "SecretStr"):
                given = "**********"  # a secret's value never reaches a message or a log
            if kind == "value_error":
                text = str(error["ctx"]["error"])
                messages.append(text if not var or text.startswith(var) else f"{var} {text}")
            elif kind in _BOUND_ERRORS:
                messages.append(f"{var} must be {_bounds_text(field)}, got {given}")
            elif kind.startswith("float"):
                messages.append(f"{var} must be a number, got {given!r}")
            elif kind.startswith("int"):
                messages.append(f"{var} must be an integer, got {given!r}")
            elif kind.startswith("bool"):
                messages.append(f"{var} must be {_BOOL_WORDS}, got {given!r}")
            elif kind == "missing":
                messages.append(f"{var} is required")
            else:
                messages.append(f"{var}: {error['msg']}, got {given!r}")
        return "; ".join(messages)


class CommonSettings(EnvSettings):
    """Where Consul and NATS are and how to authenticate; see the module doc for variables."""

    consul_addr: str = env_var("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
    consul_token: SecretStr = env_var("CONSUL_HTTP_TOKEN", SecretStr(""))
    consul_ssl: bool = env_var("CONSUL_HTTP_SSL", False)
    consul_ca: str = env_var("CONSUL_CACERT", "")
    nats_urls: CommaList = env_var("NATS_URL", ("nats://127.0.0.1:4222",))
    nats_creds: str = env_var("NATS_CREDS", "")
    nats_user: str = env_var("NATS_USER", "")
    nats_password: SecretStr = env_var("NATS_PASSWORD", SecretStr(""))
    nats_ca: str = env_var("NATS_CA", "")
    nats_cert: str = env_var("NATS_CERT", "")
    nats_key: str = env_var("NATS_KEY", "")
    stream: str = env_var("UNIFY_STREAM", "UNIFY")
    catalog_bucket: str = env_var("UNIFY_CATALOG_BUCKET", "unify-catalog")
    node: str = env_var("UNIFY_NODE", default_factory=socket.gethostname)
    log_format: str = env_var("UNIFY_LOG_FORMAT", "text")
    log_level: str = env_var("UNIFY_LOG_LEVEL", "INFO")
    resync: float = env_var("UNIFY_RESYNC", 300.0)
    #: set on the stream by its owner (consul-bridge) only; at least JetStream's 2-minute
    #: duplicate window, which NATS requires to fit inside the retention
    stream_max_age: float = env_var("UNIFY_STREAM_MAX_AGE", 7 * 24 * 3600.0, ge=120)

    @model_validator(mode="before")
    @classmethod
    def _scheme_from_url(cls, data: Any) -> Any:
        """``CONSUL_HTTP_ADDR=https://host:port``: the URL's scheme decides TLS."""
        if not isinstance(data, dict):
            return data
        key = next((k for k in ("CONSUL_HTTP_ADDR", "consul_addr") if k in data), None)
        addr = data.get(key) if key else None
        if isinstance(addr, str) and "://" in addr:
            scheme, _, rest = addr.partition("://")
            if scheme not in ("http", "https"):
                raise ValueError(f"CONSUL_HTTP_ADDR: unknown scheme {scheme!r} (http or https)")
            data = {k: v for k, v in data.items() if k not in ("CONSUL_HTTP_SSL", "consul_ssl")}
            data[key] = rest.rstrip("/")
            data["consul_ssl"] = scheme == "https"
        return data

    @field_validator("consul_addr")
    @classmethod
    def _no_trailing_slash(cls, addr: str) -> str:
        addr = addr.rstrip("/")
        match = _CONSUL_ADDR.fullmatch(addr)
        if not match or (match["port"] and not 0 < int(match["port"]) < 65536):
            raise ValueError("CONSUL_HTTP_ADDR must be host, host:port or [v6]:port, "
                             f"optionally after http:// or https://, got "
                             f"{re.sub(r'^[^@]*@', '***@', addr)[:80]!r}")
        return addr

    @field_validator("nats_urls")
    @classmethod
    def _some_url(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        return urls or ("nats://127.0.0.1:4222",)

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        return log_format(value)

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        return log_level(value)

    @field_validator("resync")
    @classmethod
    def _resync_not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"UNIFY_RESYNC must be 0 or more seconds, got {value:g}")
        return value

    @property
    def consul_scheme(self) -> str:
        """``https`` or ``http``."""
        return "https" if self.consul_ssl else "http"

    @property
    def consul_host(self) -> str:
        """Host part of ``consul_addr``."""
        return self.consul_addr.rsplit(":", 1)[0]

    @property
    def consul_port(self) -> int:
        """Port part of ``consul_addr`` (8500 when absent, 443 for https without a port)."""
        host, sep, port = self.consul_addr.rpartition(":")
        if sep and port.isdigit():
            return int(port)
        return 443 if self.consul_scheme == "https" else 8500
