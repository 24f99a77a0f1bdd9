"""wireline settings, read from the environment (``UNIFY_WIRELINE_*``), on pydantic-settings
(:class:`unify_common.settings.EnvSettings`).

=======================================  ===============================================  ======================
variable                                 meaning                                          default
=======================================  ===============================================  ======================
``UNIFY_WIRELINE_DATA_DIR``              bare repositories, sshd files, shell settings    ``/var/lib/wireline``
``UNIFY_WIRELINE_SSH_LISTEN``            sshd ``ListenAddress``                           ``0.0.0.0``
``UNIFY_WIRELINE_SSH_PORT``              sshd port                                        ``2222``
``UNIFY_WIRELINE_SSH_USER``              the one user sshd lets in (``AllowUsers``)       ``git``
``UNIFY_WIRELINE_SSHD_BIN``              OpenSSH server binary                            ``/usr/sbin/sshd``
``UNIFY_WIRELINE_HOST_KEY``              sshd host key (ed25519, created when missing)    (``<data>/sshd/host_ed25519``)
``UNIFY_WIRELINE_AUTHORIZED_KEYS``       the ``AuthorizedKeysFile`` wireline writes       (``<data>/sshd/authorized_keys``)
``UNIFY_WIRELINE_SHELL``                 forced command (``unify-wireline-shell``)        (next to python)
``UNIFY_WIRELINE_REGISTRY``              registry ``host[:port]`` images are pushed to;   (none)
                                         without it every push fails
``UNIFY_WIRELINE_REGISTRY_USER``         registry user                                    (anonymous)
``UNIFY_WIRELINE_REGISTRY_PASSWORD``     registry password (or ``_PASSWORD_FILE``)        (none)
``DOCKER_HOST``                          the Docker Engine, as the docker CLI reads it    (the CLI's)
``UNIFY_WIRELINE_BUILD_DOCKER_HOST``     engine that builds and pushes                    (``DOCKER_HOST``)
``UNIFY_WIRELINE_DEPLOY_DOCKER_HOST``    Swarm manager that deploys                       (``DOCKER_HOST``)
``UNIFY_WIRELINE_DOCKER_BIN``            docker CLI (``build``, ``stack deploy``)         ``docker``
``UNIFY_WIRELINE_DEPLOY_BRANCH``         the branch that deploys                          ``main``
``UNIFY_WIRELINE_STACK_PREFIX``          prefix of every stack name                       (none)
``UNIFY_WIRELINE_NETWORKS``              external networks apps may join (comma list)     (none)
``UNIFY_WIRELINE_BUILD_TIMEOUT``         seconds a build may take                         ``600``
``UNIFY_WIRELINE_DEPLOY_TIMEOUT``        seconds to wait for convergence                  ``300``
``UNIFY_WIRELINE_UPDATE_MONITOR``        Swarm ``update_config.monitor``, seconds         ``10``
``UNIFY_WIRELINE_LOCK_TTL``              app lock TTL, seconds (heartbeat every third)    ``15``
``UNIFY_WIRELINE_LOCK_WAIT``             seconds a push waits for the app lock            ``300``
``UNIFY_WIRELINE_MAX_REPO_MB``           largest pushed tree accepted, MiB                ``200``
``UNIFY_WIRELINE_BUCKET_PREFIX``         prefix of the KV buckets (``-keys``,             ``unify-wireline``
                                         ``-releases``, ``-logs``, ``-locks``)
``UNIFY_HEALTH_ADDR``                    ``host:port`` of ``/livez``, ``/readyz`` and     ``127.0.0.1:9106``
                                         ``/metrics`` (port 0: any free port)
=======================================  ===============================================  ======================

An empty variable means its default. The secret (the registry password) is a
:class:`pydantic.SecretStr`, also read from ``UNIFY_WIRELINE_REGISTRY_PASSWORD_FILE`` (a Swarm
secret). NATS and Consul use the common variables (:mod:`unify_common.settings`), read
separately as :class:`~unify_common.settings.CommonSettings`.

The forced command reads these settings from the file the service writes (:func:`shell_env`),
not from sshd's environment; that file holds no secret and names no secret file
(``NATS_CREDS`` passes: give the SSH user a credentials file it may read, if refusals should
reach NATS).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr, field_validator, model_validator

from unify_common.settings import CommaList, EnvSettings, HostPort, env_var

__all__ = ["WirelineSettings", "SHELL_ENV_PREFIXES", "shell_env"]

#: Variables the forced command needs, copied into the shell's settings file.
SHELL_ENV_PREFIXES = ("UNIFY_", "NATS_", "DOCKER_")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def _default_shell() -> str:
    return str(Path(sys.executable).parent / "unify-wireline-shell")


class WirelineSettings(EnvSettings):
    """Everything wireline's service, forced command and hook need; see the module doc for
    each field's variable and default. The constructor takes the field names (tests build
    settings by hand); :meth:`from_env` reads the environment.

    ``host_key``, ``authorized_keys``, ``build_docker_host`` and ``deploy_docker_host`` left
    out are derived (from ``data_dir`` and ``docker_host``); they are always set once built.

    :raises ValueError: a malformed value, or an unreadable ``*_FILE`` (the message names the
        variable, never a secret).
    """

    data_dir: Path = env_var("UNIFY_WIRELINE_DATA_DIR", Path("/var/lib/wireline"))
    ssh_listen: str = env_var("UNIFY_WIRELINE_SSH_LISTEN", "0.0.0.0")
    ssh_port: int = env_var("UNIFY_WIRELINE_SSH_PORT", 2222, ge=1, le=65535)
    ssh_user: str = env_var("UNIFY_WIRELINE_SSH_USER", "git")
    sshd_bin: str = env_var("UNIFY_WIRELINE_SSHD_BIN", "/usr/sbin/sshd")
    #: left out: ``<data_dir>/sshd/host_ed25519`` (the ``None`` default, not validated, never
    #: stays: see ``_derived``)
    host_key: Path = env_var("UNIFY_WIRELINE_HOST_KEY", None, validate_default=False)
    #: left out: ``<data_dir>/sshd/authorized_keys``
    authorized_keys: Path = env_var("UNIFY_WIRELINE_AUTHORIZED_KEYS", None,
                                    validate_default=False)
    shell: str = env_var("UNIFY_WIRELINE_SHELL", default_factory=_default_shell)
    registry: str = env_var("UNIFY_WIRELINE_REGISTRY", "")
    registry_user: str = env_var("UNIFY_WIRELINE_REGISTRY_USER", "")
    registry_password: SecretStr = env_var("UNIFY_WIRELINE_REGISTRY_PASSWORD", SecretStr(""))
    docker_host: str = env_var("DOCKER_HOST", "")
    #: left out: ``docker_host``
    build_docker_host: str = env_var("UNIFY_WIRELINE_BUILD_DOCKER_HOST", None,
                                     validate_default=False)
    #: left out: ``docker_host``
    deploy_docker_host: str = env_var("UNIFY_WIRELINE_DEPLOY_DOCKER_HOST", None,
                                      validate_default=False)
    docker_bin: str = env_var("UNIFY_WIRELINE_DOCKER_BIN", "docker")
    deploy_branch: str = env_var("UNIFY_WIRELINE_DEPLOY_BRANCH", "main")
    stack_prefix: str = env_var("UNIFY_WIRELINE_STACK_PREFIX", "")
    networks: CommaList = env_var("UNIFY_WIRELINE_NETWORKS", ())
    build_timeout_s: float = env_var("UNIFY_WIRELINE_BUILD_TIMEOUT", 600.0)
    deploy_timeout_s: float = env_var("UNIFY_WIRELINE_DEPLOY_TIMEOUT", 300.0)
    update_monitor_s: float = env_var("UNIFY_WIRELINE_UPDATE_MONITOR", 10.0)
    lock_ttl_s: float = env_var("UNIFY_WIRELINE_LOCK_TTL", 15.0)
    lock_wait_s: float = env_var("UNIFY_WIRELINE_LOCK_WAIT", 300.0)
    max_repo_mb: int = env_var("UNIFY_WIRELINE_MAX_REPO_MB", 200, ge=1)
    bucket_prefix: str = env_var("UNIFY_WIRELINE_BUCKET_PREFIX", "unify-wireline")
    health_addr: HostPort = env_var("UNIFY_HEALTH_ADDR", ("127.0.0.1", 9106))

    @field_validator("data_dir", "host_key", "authorized_keys")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.absolute()

    @field_validator("ssh_user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _USER_RE.match(value):
            raise ValueError(f"UNIFY_WIRELINE_SSH_USER must be a user name, got {value!r}")
        return value

    @field_validator("deploy_branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not _BRANCH_RE.match(value) or ".." in value or value.endswith((".lock", "/")):
            raise ValueError(f"UNIFY_WIRELINE_DEPLOY_BRANCH must be a branch name, got "
                             f"{value!r}")
        return value

    @field_validator("stack_prefix", "bucket_prefix")
    @classmethod
    def _name_part(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"may hold letters, digits, '-' and '_' only, got {value!r}")
        return value

    @field_validator("build_timeout_s", "deploy_timeout_s", "update_monitor_s", "lock_ttl_s",
                     "lock_wait_s", "max_repo_mb")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"must be more than 0, got {value:g}")
        return value

    @model_validator(mode="after")
    def _derived(self) -> WirelineSettings:
        # frozen model: the values derived from the data dir and DOCKER_HOST are set once, here
        self.__dict__.update(
            host_key=self.host_key or self.data_dir / "sshd" / "host_ed25519",
            authorized_keys=self.authorized_keys or self.data_dir / "sshd" / "authorized_keys",
            build_docker_host=self.docker_host if self.build_docker_host is None
            else self.build_docker_host,
            deploy_docker_host=self.docker_host if self.deploy_docker_host is None
            else self.deploy_docker_host)
        return self

    @property
    def repos_dir(self) -> Path:
        """Where the bare repositories live (``<app>.git``)."""
        return self.data_dir / "repos"

    @property
    def shell_settings_file(self) -> Path:
        """The JSON environment the forced command loads (see :func:`shell_env`)."""
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


def _secret_names() -> frozenset[str]:
    from unify_common.settings import CommonSettings

    names = {*WirelineSettings.secret_variables(), *CommonSettings.secret_variables()}
    return frozenset({*names, *(f"{name}_FILE" for name in names)})


def shell_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables the forced command needs (``UNIFY_*``, ``NATS_*``, ``DOCKER_*``, plus
    ``PATH``), without any secret: neither a secret's value nor its ``*_FILE`` (the SSH user
    could not read a root-only secret file, and never needs one: the service pushes to the
    registry). ``NATS_CREDS`` passes."""
    secrets = _secret_names()
    picked = {k: v for k, v in env.items()
              if k.startswith(SHELL_ENV_PREFIXES) and k not in secrets}
    picked["PATH"] = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return dict(sorted(picked.items()))
