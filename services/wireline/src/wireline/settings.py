"""wireline settings, read from the environment (``UNIFY_WIRELINE_*``).

==================================  ==============================================  ==============
variable                            meaning                                          default
==================================  ==============================================  ==============
``UNIFY_WIRELINE_DATA_DIR``         bare repositories, sshd files, shell settings    ``/var/lib/wireline``
``UNIFY_WIRELINE_SSH_LISTEN``       sshd ``ListenAddress``                           ``0.0.0.0``
``UNIFY_WIRELINE_SSH_PORT``         sshd port                                        ``2222``
``UNIFY_WIRELINE_SSH_USER``         the one user sshd lets in (``AllowUsers``)       ``git``
``UNIFY_WIRELINE_SSHD_BIN``         OpenSSH server binary                            ``/usr/sbin/sshd``
``UNIFY_WIRELINE_HOST_KEY``         sshd host key (ed25519, created when missing)    ``<data>/sshd/host_ed25519``
``UNIFY_WIRELINE_AUTHORIZED_KEYS``  the ``AuthorizedKeysFile`` wireline writes        ``<data>/sshd/authorized_keys``
``UNIFY_WIRELINE_SHELL``            forced command (``unify-wireline-shell``)        next to python
``UNIFY_WIRELINE_REGISTRY``         registry ``host[:port]`` images are pushed to    (required)
``UNIFY_WIRELINE_REGISTRY_USER``    registry user (``_PASSWORD_FILE`` holds the      (anonymous)
                                    password)
``UNIFY_WIRELINE_BUILD_DOCKER_HOST``  engine that builds and pushes                 ``$DOCKER_HOST``
``UNIFY_WIRELINE_DEPLOY_DOCKER_HOST`` Swarm manager that deploys                    ``$DOCKER_HOST``
``UNIFY_WIRELINE_DOCKER_BIN``       docker CLI (``build``, ``stack deploy``)         ``docker``
``UNIFY_WIRELINE_DEPLOY_BRANCH``    the branch that deploys                          ``main``
``UNIFY_WIRELINE_STACK_PREFIX``     prefix of every stack name                       (none)
``UNIFY_WIRELINE_NETWORKS``         external networks apps may join (comma list)     (none)
``UNIFY_WIRELINE_BUILD_TIMEOUT``    seconds a build may take                         ``600``
``UNIFY_WIRELINE_DEPLOY_TIMEOUT``   seconds to wait for convergence                  ``300``
``UNIFY_WIRELINE_UPDATE_MONITOR``   Swarm ``update_config.monitor``, seconds          ``10``
``UNIFY_WIRELINE_LOCK_TTL``         app lock TTL, seconds (heartbeat every third)    ``15``
``UNIFY_WIRELINE_LOCK_WAIT``        seconds a push waits for the app lock            ``300``
``UNIFY_WIRELINE_MAX_REPO_MB``      largest pushed tree accepted, MiB               ``200``
``UNIFY_WIRELINE_BUCKET_PREFIX``    prefix of the KV buckets (``-keys``,             ``unify-wireline``
                                    ``-releases``, ``-logs``, ``-locks``)
==================================  ==============================================  ==============

Secrets come from files: ``UNIFY_WIRELINE_REGISTRY_PASSWORD_FILE``. NATS and Consul use the
common variables (:mod:`unify_common.settings`); NATS secrets should be a ``NATS_CREDS``
file, since the shell's settings file (readable by the SSH user) never holds a password.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from unify_common.settings import env_float, env_int

__all__ = ["WirelineSettings", "SHELL_ENV_PREFIXES"]

#: Variables the forced command needs, copied into the shell's settings file.
SHELL_ENV_PREFIXES = ("UNIFY_", "NATS_", "DOCKER_")
_SECRET_NAMES = ("NATS_PASSWORD", "NATS_TOKEN", "CONSUL_HTTP_TOKEN",
                 "UNIFY_WIRELINE_REGISTRY_PASSWORD")


def _default_shell() -> str:
    return str(Path(sys.executable).parent / "unify-wireline-shell")


@dataclass(frozen=True, kw_only=True)
class WirelineSettings:
    """See the module doc for each field's variable and default."""

    data_dir: Path = Path("/var/lib/wireline")
    ssh_listen: str = "0.0.0.0"
    ssh_port: int = 2222
    ssh_user: str = "git"
    sshd_bin: str = "/usr/sbin/sshd"
    host_key: Path = Path("/var/lib/wireline/sshd/host_ed25519")
    authorized_keys: Path = Path("/var/lib/wireline/sshd/authorized_keys")
    shell: str = field(default_factory=_default_shell)
    registry: str = ""
    registry_user: str = ""
    registry_password: str = field(default="", repr=False)
    build_docker_host: str = ""
    deploy_docker_host: str = ""
    docker_bin: str = "docker"
    deploy_branch: str = "main"
    stack_prefix: str = ""
    networks: tuple[str, ...] = ()
    build_timeout_s: float = 600.0
    deploy_timeout_s: float = 300.0
    update_monitor_s: float = 10.0
    lock_ttl_s: float = 15.0
    lock_wait_s: float = 300.0
    max_repo_mb: int = 200
    bucket_prefix: str = "unify-wireline"

    @property
    def repos_dir(self) -> Path:
        """Where the bare repositories live (``<app>.git``)."""
        return self.data_dir / "repos"

    @property
    def shell_settings_file(self) -> Path:
        """The JSON environment the forced command loads (see :meth:`shell_env`)."""
        return self.data_dir / "shell.json"

    @property
    def socket_path(self) -> Path:
        """The service's unix socket the ``pre-receive`` hook hands pushes to."""
        return self.data_dir / "wireline.sock"

    @property
    def hooks_dir(self) -> Path:
        """``core.hooksPath`` given to ``git receive-pack`` (holds ``pre-receive``)."""
        return self.data_dir / "hooks"

    def bucket(self, kind: str) -> str:
        """KV bucket name of ``kind`` (``keys``, ``releases``, ``logs``, ``locks``)."""
        return f"{self.bucket_prefix}-{kind}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "WirelineSettings":
        """Read the settings. :raises ValueError: a malformed number, or an unreadable
        ``*_FILE``."""
        env = os.environ if env is None else env

        def get(name: str, default: str = "") -> str:
            return env.get(f"UNIFY_WIRELINE_{name}", "") or default

        data_dir = Path(get("DATA_DIR", "/var/lib/wireline"))
        password = get("REGISTRY_PASSWORD")
        password_file = get("REGISTRY_PASSWORD_FILE")
        if password_file:
            try:
                password = Path(password_file).read_text().strip()
            except OSError as err:
                raise ValueError(f"UNIFY_WIRELINE_REGISTRY_PASSWORD_FILE: {err}") from None
        docker_host = env.get("DOCKER_HOST", "")
        return cls(
            data_dir=data_dir,
            ssh_listen=get("SSH_LISTEN", "0.0.0.0"),
            ssh_port=env_int(env, "UNIFY_WIRELINE_SSH_PORT", 2222),
            ssh_user=get("SSH_USER", "git"),
            sshd_bin=get("SSHD_BIN", "/usr/sbin/sshd"),
            host_key=Path(get("HOST_KEY", str(data_dir / "sshd" / "host_ed25519"))),
            authorized_keys=Path(get("AUTHORIZED_KEYS",
                                     str(data_dir / "sshd" / "authorized_keys"))),
            shell=get("SHELL", _default_shell()),
            registry=get("REGISTRY"),
            registry_user=get("REGISTRY_USER"),
            registry_password=password,
            build_docker_host=get("BUILD_DOCKER_HOST", docker_host),
            deploy_docker_host=get("DEPLOY_DOCKER_HOST", docker_host),
            docker_bin=get("DOCKER_BIN", "docker"),
            deploy_branch=get("DEPLOY_BRANCH", "main"),
            stack_prefix=get("STACK_PREFIX"),
            networks=tuple(n.strip() for n in get("NETWORKS").split(",") if n.strip()),
            build_timeout_s=env_float(env, "UNIFY_WIRELINE_BUILD_TIMEOUT", 600.0),
            deploy_timeout_s=env_float(env, "UNIFY_WIRELINE_DEPLOY_TIMEOUT", 300.0),
            update_monitor_s=env_float(env, "UNIFY_WIRELINE_UPDATE_MONITOR", 10.0),
            lock_ttl_s=env_float(env, "UNIFY_WIRELINE_LOCK_TTL", 15.0),
            lock_wait_s=env_float(env, "UNIFY_WIRELINE_LOCK_WAIT", 300.0),
            max_repo_mb=env_int(env, "UNIFY_WIRELINE_MAX_REPO_MB", 200),
            bucket_prefix=get("BUCKET_PREFIX", "unify-wireline"),
        )


def shell_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables the forced command needs (``UNIFY_*``, ``NATS_*``, ``DOCKER_*``, plus
    ``PATH``), without secret values (``*_FILE`` and ``NATS_CREDS`` paths pass)."""
    picked = {k: v for k, v in env.items()
              if k.startswith(SHELL_ENV_PREFIXES) and k not in _SECRET_NAMES}
    picked["PATH"] = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return dict(sorted(picked.items()))
