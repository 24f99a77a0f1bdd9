"""switchboard's settings, read from the environment (plus :class:`CommonSettings`).

==================================  =======================================================  ==================
variable                            meaning                                                  default
==================================  =======================================================  ==================
``UNIFY_HAPROXY_CONFIG``            path of the live HAProxy configuration file              (required)
``UNIFY_HAPROXY_MASTER_SOCKET``     HAProxy master CLI socket                                (``<run dir>/master.sock``)
``UNIFY_HAPROXY_BIN``               HAProxy executable                                       ``haproxy``
``UNIFY_HAPROXY_CERT_DIR``          directory of PEM bundles (certificate chain + key) for   (none)
                                    TLS
``UNIFY_HAPROXY_BIND``              address the frontends listen on                          ``0.0.0.0``
``UNIFY_HAPROXY_RUN_DIR``           directory for internal sockets                           (the config's)
``UNIFY_HAPROXY_MANAGE``            true: start and supervise HAProxy when no master         ``0``
                                    answers
``UNIFY_HAPROXY_MAXCONN``           global ``maxconn``                                       ``4000``
``UNIFY_HAPROXY_HARD_STOP_AFTER``   ``hard-stop-after`` for old workers                      ``30s``
``UNIFY_HAPROXY_SSL_CIPHERS``       OpenSSL cipher list for TLS binds                        (HAProxy's)
``UNIFY_HAPROXY_MIN_SLOTS``         server slots of a fresh backend (1-4096)                 ``4``
``UNIFY_HAPROXY_HOST_MAPS``         true: plain HTTP frontends route host-only vhosts        ``1``
                                    through a map file the runtime API can extend
``UNIFY_HAPROXY_SPARE_BACKENDS``    spare default-profile backends for new vhosts to serve   ``4``
                                    through before their reload (0-64; needs host maps)
``UNIFY_SWITCHBOARD_DEBOUNCE``      seconds of quiet after a catalog change before an        ``0.05``
                                    apply (0-1): a burst gives one apply
``UNIFY_SWITCHBOARD_MAX_WAIT``      longest delay of an apply under continuous change (at    ``1.0``
                                    least the debounce, at most 60)
``UNIFY_HEALTH_ADDR``               ``host:port`` of ``/livez``, ``/readyz`` and ``/metrics``  ``127.0.0.1:9102``
                                    (port 0: any free port)
``UNIFY_VERDICT_BUCKET``            NATS KV bucket of the per-vhost verdicts dns411 reads     ``unify-switchboard-verdicts``
                                    (created here when missing)
``UNIFY_SWITCHBOARD_VERDICT_TTL``   seconds a node's verdicts live without a rewrite (the     ``60``
                                    bucket's max age, 3-3600); rewritten every third
==================================  =======================================================  ==================

Booleans take the one dialect of :mod:`unify_common.settings`; an empty variable means its
default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import PrivateAttr, field_validator, model_validator

from unify_common.settings import CommonSettings, EnvSettings, HostPort, bucket_name, env_var

from .render import RenderOptions

__all__ = ["SwitchboardSettings"]

#: the fields that make up :attr:`SwitchboardSettings.render`
_RENDER_FIELDS = ("bind", "run_dir", "maxconn", "hard_stop_after", "ssl_ciphers", "host_maps")
#: where the render fields' defaults live (one place each)
_RENDER_DEFAULTS = RenderOptions()


class SwitchboardSettings(EnvSettings):
    """Everything switchboard needs; see the module doc for the variables.

    The constructor also takes ``render=RenderOptions(...)`` in place of the fields
    ``bind``, ``run_dir``, ``maxconn``, ``hard_stop_after``, ``ssl_ciphers`` and
    ``host_maps``; :attr:`render` is always built from those fields.

    :raises ValueError: ``UNIFY_HAPROXY_CONFIG`` is missing or a value is malformed (the
        message names the variable).
    """

    common: CommonSettings
    config_path: Path = env_var("UNIFY_HAPROXY_CONFIG")
    #: ``None`` given: ``<run_dir>/master.sock``; always a path once built
    master_socket: Path | None = env_var("UNIFY_HAPROXY_MASTER_SOCKET", None)
    haproxy_bin: str = env_var("UNIFY_HAPROXY_BIN", "haproxy")
    cert_dir: Path | None = env_var("UNIFY_HAPROXY_CERT_DIR", None)
    manage: bool = env_var("UNIFY_HAPROXY_MANAGE", False)
    bind: str = env_var("UNIFY_HAPROXY_BIND", _RENDER_DEFAULTS.bind)
    #: ``None`` given: the config's directory; always a path once built
    run_dir: Path | None = env_var("UNIFY_HAPROXY_RUN_DIR", None)
    maxconn: int = env_var("UNIFY_HAPROXY_MAXCONN", _RENDER_DEFAULTS.maxconn, ge=1)
    hard_stop_after: str = env_var("UNIFY_HAPROXY_HARD_STOP_AFTER",
                                   _RENDER_DEFAULTS.hard_stop_after)
    ssl_ciphers: str = env_var("UNIFY_HAPROXY_SSL_CIPHERS", _RENDER_DEFAULTS.ssl_ciphers)
    host_maps: bool = env_var("UNIFY_HAPROXY_HOST_MAPS", _RENDER_DEFAULTS.host_maps)
    min_slots: int = env_var("UNIFY_HAPROXY_MIN_SLOTS", 4, ge=1, le=4096)
    #: seconds a reload may take (no variable)
    reload_timeout: float = 30.0
    #: spare backends (``be_spare_<i>``, ``min_slots`` slots each); used with host maps only
    spare_backends: int = env_var("UNIFY_HAPROXY_SPARE_BACKENDS", 4, ge=0, le=64)
    #: debounce of the subscriber, seconds: quiet before an apply, longest delay under churn
    debounce: float = env_var("UNIFY_SWITCHBOARD_DEBOUNCE", 0.05, ge=0)
    max_wait: float = env_var("UNIFY_SWITCHBOARD_MAX_WAIT", 1.0)
    health_addr: HostPort = env_var("UNIFY_HEALTH_ADDR", ("127.0.0.1", 9102))
    #: the verdict bucket (:mod:`switchboard.verdicts`); dns411 reads the same variable
    verdict_bucket: str = env_var("UNIFY_VERDICT_BUCKET", "unify-switchboard-verdicts")
    #: seconds: the verdict bucket's max age; each node rewrites its document every third
    verdict_ttl: float = env_var("UNIFY_SWITCHBOARD_VERDICT_TTL", 60.0, ge=3, le=3600)
    _render_options: RenderOptions = PrivateAttr()
    _master_socket_path: Path = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _render_given(cls, data: Any) -> Any:
        """``render=RenderOptions(...)`` from the constructor: its fields."""
        if isinstance(data, dict) and isinstance(data.get("render"), RenderOptions):
            data = dict(data)
            render = data.pop("render")
            data.update({name: getattr(render, name) for name in _RENDER_FIELDS})
        return data

    @field_validator("config_path", "cert_dir", "run_dir")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return None if path is None else path.absolute()

    @field_validator("verdict_bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        return bucket_name(value, "UNIFY_VERDICT_BUCKET")

    @model_validator(mode="before")
    @classmethod
    def _operator_debounce(cls, data: Any) -> Any:
        """``UNIFY_SWITCHBOARD_DEBOUNCE`` (the environment, keyed by the variable) is bounded
        to 0-1 s; code (tests of the debounce itself) may pass a longer ``debounce=``."""
        raw = data.get("UNIFY_SWITCHBOARD_DEBOUNCE") if isinstance(data, dict) else None
        if isinstance(raw, str):
            try:
                value = float(raw)
            except ValueError:
                return data  # the field's own parsing reports it
            if not 0 <= value <= 1:
                raise ValueError(f"UNIFY_SWITCHBOARD_DEBOUNCE must be 0-1 seconds, got {value:g}")
        return data

    @model_validator(mode="after")
    def _derive(self) -> SwitchboardSettings:
        if not self.debounce <= self.max_wait <= 60:
            raise ValueError("UNIFY_SWITCHBOARD_MAX_WAIT must be at least the debounce and at "
                             f"most 60 seconds, got {self.max_wait:g}")
        run_dir = self.run_dir or self.config_path.parent
        master_socket = (self.master_socket or run_dir / "master.sock").absolute()
        if "," in str(master_socket) or len(str(master_socket)) > 107:
            raise ValueError("UNIFY_HAPROXY_MASTER_SOCKET must be a path without ',' of at "
                             "most 107 bytes (a UNIX socket address)")
        # frozen model: the derived values are set once, here
        self.__dict__.update(run_dir=run_dir, master_socket=master_socket)
        try:
            render = RenderOptions(bind=self.bind, run_dir=str(run_dir), maxconn=self.maxconn,
                                   hard_stop_after=self.hard_stop_after,
                                   ssl_ciphers=self.ssl_ciphers, host_maps=self.host_maps)
        except ValueError as err:
            raise ValueError(f"UNIFY_HAPROXY_* setting: {err}") from None
        self._render_options = render
        self._master_socket_path = master_socket
        return self

    @property
    def render(self) -> RenderOptions:
        """The node-level options printed into the configuration (built from the fields)."""
        return self._render_options

    @property
    def master_socket_path(self) -> Path:
        """:attr:`master_socket` as built (absolute; typed as never ``None``)."""
        return self._master_socket_path
