"""switchboard's settings, read from the environment (plus :class:`CommonSettings`).

==================================  ==========================================================
variable                            meaning
==================================  ==========================================================
``UNIFY_HAPROXY_CONFIG``            path of the live HAProxy configuration file (required)
``UNIFY_HAPROXY_MASTER_SOCKET``     HAProxy master CLI socket (default: ``<run dir>/master.sock``)
``UNIFY_HAPROXY_BIN``               HAProxy executable (default ``haproxy``)
``UNIFY_HAPROXY_CERT_DIR``          directory of PEM bundles (certificate chain + key) for TLS
``UNIFY_HAPROXY_BIND``              address the frontends listen on (default ``0.0.0.0``)
``UNIFY_HAPROXY_RUN_DIR``           directory for internal sockets (default: the config's)
``UNIFY_HAPROXY_MANAGE``            ``1``: start and supervise HAProxy when no master answers
``UNIFY_HAPROXY_MAXCONN``           global ``maxconn`` (default 4000)
``UNIFY_HAPROXY_HARD_STOP_AFTER``   ``hard-stop-after`` for old workers (default ``30s``)
``UNIFY_HAPROXY_SSL_CIPHERS``       OpenSSL cipher list for TLS binds (default: HAProxy's)
``UNIFY_HAPROXY_MIN_SLOTS``         server slots of a fresh backend (default 4)
``UNIFY_HAPROXY_HOST_MAPS``         ``1`` (default): plain HTTP frontends route host-only
                                    vhosts through a map file the runtime API can extend
``UNIFY_HAPROXY_SPARE_BACKENDS``    spare default-profile backends for new vhosts to serve
                                    through before their reload (default 4; needs host maps)
``UNIFY_SWITCHBOARD_DEBOUNCE``      seconds of quiet after a catalog change before an apply
                                    (default 0.05, 0-1): a burst gives one apply
``UNIFY_SWITCHBOARD_MAX_WAIT``      longest delay of an apply under continuous change
                                    (default 1.0, at least the debounce, at most 60)
``UNIFY_HEALTH_ADDR``               ``host:port`` of ``/livez``, ``/readyz`` and ``/metrics``
                                    (default ``127.0.0.1:9102``; port 0: any free port)
==================================  ==========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from unify_common.health import health_addr
from unify_common.settings import CommonSettings, env_float, env_int

from .render import RenderOptions

__all__ = ["SwitchboardSettings"]


@dataclass(frozen=True, kw_only=True)
class SwitchboardSettings:
    """Everything switchboard needs; see the module doc for the variables."""

    common: CommonSettings
    config_path: Path
    master_socket: Path
    haproxy_bin: str = "haproxy"
    cert_dir: Path | None = None
    manage: bool = False
    render: RenderOptions = RenderOptions()
    min_slots: int = 4
    reload_timeout: float = 30.0
    #: spare backends (``be_spare_<i>``, ``min_slots`` slots each); used with host maps only
    spare_backends: int = 0
    #: debounce of the subscriber, seconds: quiet before an apply, longest delay under churn
    debounce: float = 0.05
    max_wait: float = 1.0
    #: where the health endpoints listen (``UNIFY_HEALTH_ADDR``)
    health_addr: tuple[str, int] = ("127.0.0.1", 9102)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SwitchboardSettings":
        """Read the settings.

        :raises ValueError: ``UNIFY_HAPROXY_CONFIG`` is missing or a value is malformed
            (the message names the variable).
        """
        env = os.environ if env is None else env
        raw_config = env.get("UNIFY_HAPROXY_CONFIG", "")
        if not raw_config:
            raise ValueError("UNIFY_HAPROXY_CONFIG (path of the HAProxy config) is required")
        config_path = Path(raw_config).absolute()
        run_dir = Path(env.get("UNIFY_HAPROXY_RUN_DIR", "") or config_path.parent).absolute()
        cert_dir = env.get("UNIFY_HAPROXY_CERT_DIR", "")
        manage = env.get("UNIFY_HAPROXY_MANAGE", "").lower()
        if manage not in ("", "0", "1", "true", "false"):
            raise ValueError(f"UNIFY_HAPROXY_MANAGE must be 0 or 1, got {manage!r}")
        host_maps = env.get("UNIFY_HAPROXY_HOST_MAPS", "").lower()
        if host_maps not in ("", "0", "1", "true", "false"):
            raise ValueError(f"UNIFY_HAPROXY_HOST_MAPS must be 0 or 1, got {host_maps!r}")
        spares = env_int(env, "UNIFY_HAPROXY_SPARE_BACKENDS", 4)
        if not 0 <= spares <= 64:
            raise ValueError(f"UNIFY_HAPROXY_SPARE_BACKENDS must be 0-64, got {spares}")
        try:
            render = RenderOptions(
                bind=env.get("UNIFY_HAPROXY_BIND", "") or "0.0.0.0",
                run_dir=str(run_dir),
                maxconn=env_int(env, "UNIFY_HAPROXY_MAXCONN", 4000),
                hard_stop_after=env.get("UNIFY_HAPROXY_HARD_STOP_AFTER", "") or "30s",
                ssl_ciphers=env.get("UNIFY_HAPROXY_SSL_CIPHERS", ""),
                host_maps=host_maps in ("", "1", "true"),
            )
        except ValueError as err:
            raise ValueError(f"UNIFY_HAPROXY_* setting: {err}") from None
        min_slots = env_int(env, "UNIFY_HAPROXY_MIN_SLOTS", 4)
        if not 1 <= min_slots <= 4096:
            raise ValueError(f"UNIFY_HAPROXY_MIN_SLOTS must be 1-4096, got {min_slots}")
        debounce = env_float(env, "UNIFY_SWITCHBOARD_DEBOUNCE", 0.05)
        max_wait = env_float(env, "UNIFY_SWITCHBOARD_MAX_WAIT", 1.0)
        if not 0 <= debounce <= 1:
            raise ValueError(f"UNIFY_SWITCHBOARD_DEBOUNCE must be 0-1 seconds, got {debounce:g}")
        if not debounce <= max_wait <= 60:
            raise ValueError("UNIFY_SWITCHBOARD_MAX_WAIT must be at least the debounce and at "
                             f"most 60 seconds, got {max_wait:g}")
        master_socket = Path(env.get("UNIFY_HAPROXY_MASTER_SOCKET", "")
                             or run_dir / "master.sock").absolute()
        if "," in str(master_socket) or len(str(master_socket)) > 107:
            raise ValueError("UNIFY_HAPROXY_MASTER_SOCKET must be a path without ',' of at "
                             "most 107 bytes (a UNIX socket address)")
        return cls(
            common=CommonSettings.from_env(env),
            config_path=config_path,
            master_socket=master_socket,
            haproxy_bin=env.get("UNIFY_HAPROXY_BIN", "") or "haproxy",
            cert_dir=Path(cert_dir).absolute() if cert_dir else None,
            manage=manage in ("1", "true"),
            render=render,
            min_slots=min_slots,
            spare_backends=spares,
            debounce=debounce,
            max_wait=max_wait,
            health_addr=health_addr(default_port=9102, env=env),
        )
