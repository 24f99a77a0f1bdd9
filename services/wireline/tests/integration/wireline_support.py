"""Helpers for wireline's integration tests: a registry process, a wireline service process
(with its sshd), pusher keys, app repositories and ``git push`` over ssh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import docker

from unify_testkit import NotReached, wait_until
from unify_testkit.devstack.process import ManagedProcess, free_port, tcp_open

DOCKER_HOST = os.environ.get("DOCKER_HOST") or "unix:///run/unify-docker.sock"
STACK_PREFIX = "wl-test-"
BASE_IMAGE = "unify-local/debian:bookworm"


class Registry:
    """Distribution (Debian ``docker-registry``) on 127.0.0.1, storage in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: ManagedProcess | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(json.dumps({
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.addr}}))
        self.process = ManagedProcess("registry", ["docker-registry", "serve", str(config)],
                                      log_path=self.workdir / "registry.log")
        self.process.start(lambda: tcp_open("127.0.0.1", self.port), timeout=30)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()


def run(argv: list[str], *, env: dict | None = None, cwd: Path | None = None,
        timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Pusher:
    """A test key: ``name``, private key ``path``, public key line."""

    name: str
    path: Path
    public: str


class WirelineContainer:
    """wireline's image running on the engine (see :func:`start_wireline_image`); ``stop()``
    like a :class:`ManagedProcess`."""

    def __init__(self, container, log_path: Path) -> None:
        self.container = container
        self.log_path = log_path
        self.exit_code: int | None = None

    def exec(self, command: str, *, user: str = "git") -> tuple[int, str]:
        """``sh -c command`` in the container as ``user``: (exit code, stdout+stderr)."""
        code, out = self.container.exec_run(["sh", "-c", command], user=user)
        return code, out.decode(errors="replace")

    def stop(self) -> None:
        """``docker stop`` (SIGTERM, 10 s), keep the exit code and the log, remove it."""
        try:
            self.container.stop(timeout=10)
            self.container.reload()
            self.exit_code = self.container.attrs["State"]["ExitCode"]
            self.log_path.write_bytes(self.container.logs())
        finally:
            self.container.remove(force=True)


@dataclass
class Wireline:
    """A running wireline (its sshd on ``port``): ``python -m wireline`` as a process (pushes
    log in as root), or its image (:class:`WirelineContainer`; pushes log in as ``git``, the
    image's production path). ``env`` is the environment of ``unify apps`` on this host."""

    env: dict
    data_dir: Path
    port: int
    process: ManagedProcess | WirelineContainer
    workdir: Path
    apps: set = field(default_factory=set)
    #: the SSH user pushes log in as
    user: str = "root"

    def restart(self) -> None:
        """Start the service again (same settings, data and port) after it was killed."""
        if self.process.proc is not None:
            self.process.proc.wait(timeout=20)
        self.process = ManagedProcess("wireline", [sys.executable, "-m", "wireline"],
                                      log_path=self.workdir / "wireline.log", env=self.env)
        def closed() -> bool:
            try:
                return not tcp_open("127.0.0.1", self.port)
            except OSError:
                return True
        wait_until(closed, timeout=20, what="the old sshd gone")
        self.process.start(lambda: tcp_open("127.0.0.1", self.port), timeout=30)

    def unify(self, *args: str, check: bool = True, timeout: float = 120
              ) -> subprocess.CompletedProcess:
        """``unify <args>`` with wireline's environment."""
        return run([str(Path(sys.executable).parent / "unify"), *args], env=self.env,
                   check=check, timeout=timeout)

    def new_key(self, name: str, *, apps: str | None = None) -> Pusher:
        """Generate an ed25519 key, add it with ``unify apps keys add`` and wait until the
        service wrote it to the ``AuthorizedKeysFile``."""
        path = self.workdir / f"key-{name}"
        if not path.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)])
        public = (self.workdir / f"key-{name}.pub").read_text().strip()
        scope = ["--all"] if apps is None else ["--apps", apps]
        self.unify("apps", "keys", "add", name, public, *scope)
        blob = public.split()[1]
        keys_file = self.data_dir / "sshd" / "authorized_keys"
        wait_until(lambda: any(f"--key {name} " in line and blob in line
                               for line in keys_file.read_text().splitlines())
                   if keys_file.exists() else False, timeout=20, what=f"key {name} written")
        return Pusher(name=name, path=path, public=public)

    def ssh_command(self, pusher: Pusher) -> str:
        return (f"ssh -i {pusher.path} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
                f"-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR "
                f"-p {self.port}")

    def ssh(self, pusher: Pusher, *args: str, timeout: float = 30
            ) -> subprocess.CompletedProcess:
        """``ssh <user>@127.0.0.1 <args>`` with the pusher's key."""
        return run(self.ssh_command(pusher).split() + [f"{self.user}@127.0.0.1", *args],
                   check=False, timeout=timeout)

    def url(self, app: str) -> str:
        self.apps.add(app)
        return f"ssh://{self.user}@127.0.0.1:{self.port}/{app}"

    def push(self, repo: Path, pusher: Pusher, app: str, *, ref: str = "main",
             timeout: float = 240) -> subprocess.CompletedProcess:
        """``git push <wireline>/<app> <ref>`` from ``repo``; stdout+stderr in ``.stderr``."""
        env = dict(os.environ, GIT_SSH_COMMAND=self.ssh_command(pusher))
        return run(["git", "push", "--porcelain", self.url(app), ref], env=env, cwd=repo,
                   check=False, timeout=timeout)

    def push_async(self, repo: Path, pusher: Pusher, app: str) -> subprocess.Popen:
        env = dict(os.environ, GIT_SSH_COMMAND=self.ssh_command(pusher))
        return subprocess.Popen(["git", "push", "--porcelain", self.url(app), "main"], env=env,
                                cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def releases(self, app: str) -> list[dict]:
        result = self.unify("apps", "releases", app, "--json", check=False)
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def start_wireline(workdir: Path, *, nats_url: str, registry: str, extra: dict | None = None
                   ) -> Wireline:
    data = workdir / "data"
    port = free_port()
    env = dict(os.environ)
    env.update({
        "NATS_URL": nats_url, "DOCKER_HOST": DOCKER_HOST, "UNIFY_NODE": "test-node",
        "UNIFY_WIRELINE_DATA_DIR": str(data), "UNIFY_WIRELINE_SSH_LISTEN": "127.0.0.1",
        "UNIFY_WIRELINE_SSH_PORT": str(port), "UNIFY_WIRELINE_SSH_USER": "root",
        "UNIFY_WIRELINE_REGISTRY": registry, "UNIFY_WIRELINE_STACK_PREFIX": STACK_PREFIX,
        "UNIFY_WIRELINE_UPDATE_MONITOR": "2", "UNIFY_WIRELINE_DEPLOY_TIMEOUT": "90",
        "UNIFY_WIRELINE_LOCK_TTL": "3", "UNIFY_WIRELINE_LOCK_WAIT": "60",
        "UNIFY_WIRELINE_BUILD_TIMEOUT": "120",
        "UNIFY_HEALTH_ADDR": f"127.0.0.1:{free_port()}",
    })
    env.update(extra or {})
    process = ManagedProcess("wireline", [sys.executable, "-m", "wireline"],
                             log_path=workdir / "wireline.log", env=env)
    process.start(lambda: tcp_open("127.0.0.1", port), timeout=30)
    return Wireline(env=env, data_dir=data, port=port, process=process, workdir=workdir)


def start_wireline_image(workdir: Path, *, image: str, nats_url: str, registry: str,
                         name: str, docker_host: str = DOCKER_HOST, extra: dict | None = None
                         ) -> Wireline:
    """wireline's image (``deploy/images``: sshd lets in only ``git``, the service runs as
    root) as container ``name`` on the engine at ``docker_host`` (a ``unix://`` socket, mounted
    as the container's ``/var/run/docker.sock``): host network, its sshd on a free port of
    127.0.0.1, ``<workdir>/data`` mounted as ``/var/lib/wireline``, label
    ``SERVICE_IGNORE=1`` (no registrator registers it). Settings as :func:`start_wireline`'s
    (no stack prefix), ``extra`` added. Returns once sshd answers; pushes log in as ``git``."""
    assert docker_host.startswith("unix://"), docker_host
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "NATS_URL": nats_url, "UNIFY_NODE": "test-node",
        "UNIFY_WIRELINE_SSH_LISTEN": "127.0.0.1", "UNIFY_WIRELINE_SSH_PORT": str(port),
        "UNIFY_WIRELINE_REGISTRY": registry, "UNIFY_WIRELINE_STACK_PREFIX": "",
        "UNIFY_WIRELINE_UPDATE_MONITOR": "2", "UNIFY_WIRELINE_DEPLOY_TIMEOUT": "90",
        "UNIFY_WIRELINE_LOCK_TTL": "3", "UNIFY_WIRELINE_LOCK_WAIT": "60",
        "UNIFY_WIRELINE_BUILD_TIMEOUT": "120", **(extra or {})}
    client = docker.DockerClient(base_url=docker_host, version="1.41", timeout=60)
    try:
        container = client.containers.run(
            image, name=name, detach=True, network_mode="host",
            labels={"SERVICE_IGNORE": "1"},
            environment={**settings, "DOCKER_HOST": "unix:///var/run/docker.sock",
                         "UNIFY_HEALTH_ADDR": f"127.0.0.1:{free_port()}"},
            volumes={docker_host[len("unix://"):]: {"bind": "/var/run/docker.sock",
                                                    "mode": "rw"},
                     str(data): {"bind": "/var/lib/wireline", "mode": "rw"}})
    finally:
        client.close()
    process = WirelineContainer(container, workdir / "wireline.log")
    try:
        wait_until(lambda: tcp_open("127.0.0.1", port), timeout=60, what="wireline's sshd")
    except AssertionError:
        process.stop()
        raise AssertionError(f"wireline did not start:\n{process.log_path.read_text()[-3000:]}"
                             ) from None
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UNIFY_", "NATS_"))}
    env.update(settings, DOCKER_HOST=docker_host)
    return Wireline(env=env, data_dir=data, port=port, process=process, workdir=workdir,
                    user="git")


DOCKERFILE = f"""FROM {BASE_IMAGE}
WORKDIR /srv
COPY site/ /srv/
CMD ["python3", "-m", "http.server", "8000"]
"""
HEALTH = ("python3 -c \"import urllib.request; "
          "urllib.request.urlopen('http://127.0.0.1:8000/health.txt', timeout=2)\"")


def make_app(path: Path, *, version: str, healthy: bool = True, ini: str = "",
             pair: bool = True) -> Path:
    """Write (or rewrite) a small app at ``path`` and commit it on ``main``."""
    if not (path / ".git").exists():
        path.mkdir(parents=True, exist_ok=True)
        run(["git", "init", "-q", "-b", "main", str(path)])
        run(["git", "-C", str(path), "config", "user.email", "t@example.test"])
        run(["git", "-C", str(path), "config", "user.name", "test"])
    site = path / "site"
    site.mkdir(exist_ok=True)
    (site / "index.html").write_text(f"version {version}\n")
    health = site / "health.txt"
    if healthy:
        health.write_text("ok\n")
    elif health.exists():
        health.unlink()
    (path / "Dockerfile").write_text(DOCKERFILE)
    service = {"init": True,  # docker-init as PID 1: SIGTERM stops the server at once
               "environment": {"SERVICE_NAME": "ticker",
                               "SERVICE_TAGS": "dns=unify.test,vhost=ticker,http=80"},
               "healthcheck": {"test": ["CMD-SHELL", HEALTH], "interval": "1s",
                               "timeout": "3s", "retries": 2}}
    if pair:
        (path / "deploy.yaml").write_text(json.dumps(
            {"version": "3.8", "services": {"web": service}}, indent=1))
        (path / "build.yaml").write_text(json.dumps(
            {"services": {"web": {"build": {"context": "."}}}}))
    else:
        (path / "compose.yaml").write_text(json.dumps(
            {"services": {"web": {**service, "build": "."}}}))
    if ini:
        (path / "wireline.ini").write_text(ini)
    elif (path / "wireline.ini").exists():
        (path / "wireline.ini").unlink()
    run(["git", "-C", str(path), "add", "-A"])
    run(["git", "-C", str(path), "commit", "-q", "--allow-empty", "-m", f"v{version}"])
    return path


def head(repo: Path) -> str:
    return run(["git", "-C", str(repo), "rev-parse", "HEAD"]).stdout.strip()


def service_state(app: str, service: str = "web") -> tuple[str, int]:
    """(the service's spec image, number of running tasks of that image)."""
    client = docker.APIClient(base_url=DOCKER_HOST, version="1.41")
    try:
        spec = client.inspect_service(f"{STACK_PREFIX}{app}_{service}")
        image = spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        tasks = client.tasks(filters={"service": spec["ID"], "desired-state": "running"})
        running = sum(1 for t in tasks if t["Status"]["State"] == "running"
                      and t["Spec"]["ContainerSpec"]["Image"] == image)
        return image, running
    finally:
        client.close()


def service_labels(app: str, service: str = "web") -> dict[str, str]:
    """The Swarm service's own labels (compose ``deploy.labels``)."""
    client = docker.APIClient(base_url=DOCKER_HOST, version="1.41")
    try:
        return client.inspect_service(f"{STACK_PREFIX}{app}_{service}")["Spec"]["Labels"]
    finally:
        client.close()


def stack_services(app: str) -> list[str]:
    client = docker.APIClient(base_url=DOCKER_HOST, version="1.41")
    try:
        return sorted(s["Spec"]["Name"] for s in client.services(
            filters={"label": f"com.docker.stack.namespace={STACK_PREFIX}{app}"}))
    finally:
        client.close()


def stack_networks(app: str) -> list[str]:
    client = docker.APIClient(base_url=DOCKER_HOST, version="1.41")
    try:
        return sorted(n["Name"] for n in client.networks(
            filters={"label": f"com.docker.stack.namespace={STACK_PREFIX}{app}"}))
    finally:
        client.close()


def remove_stacks(apps) -> None:
    """Remove the test stacks of ``apps`` (a list) and wait until their services and
    networks are gone (60 s at most; best effort, nothing is raised)."""
    env = dict(os.environ, DOCKER_HOST=DOCKER_HOST)
    for app in apps:
        if stack_services(app) or stack_networks(app):
            run(["docker", "stack", "rm", f"{STACK_PREFIX}{app}"], env=env, check=False)
    try:
        wait_until(lambda: [name for app in apps for name in
                            stack_services(app) + stack_networks(app)],
                   lambda left: left == [], timeout=60, interval=0.5,
                   what="the test stacks' services and networks gone")
    except NotReached:
        pass  # best effort, as before: anything left is named wl-test-*


def remove_images(prefix: str) -> None:
    """Untag every image the tests built for this session's registry (``prefix`` is
    ``127.0.0.1:<port>/``); layers no other image uses go with them."""
    client = docker.APIClient(base_url=DOCKER_HOST, version="1.41")
    try:
        for image in client.images():
            for tag in image.get("RepoTags") or ():
                if tag.startswith(prefix):
                    try:
                        client.remove_image(tag, force=True)
                    except docker.errors.APIError:
                        pass  # still used by a container being removed: left behind
    finally:
        client.close()
