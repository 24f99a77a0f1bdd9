"""The Docker Engine side: build, push, deploy, wait for convergence, remove.

Builds and ``docker stack deploy``/``rm`` run the ``docker`` CLI (the build output is what the
pusher reads; a stack file is what the CLI deploys); pushes, digest look-ups and convergence
checks use the Engine API through the ``docker`` SDK (Engine API reference v1.41: ``/images/
{name}/push``, ``/distribution/{name}/json``, ``/services``, ``/tasks``). Every subprocess is
bounded by a deadline and killed with its process group when it passes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import docker

__all__ = ["DeployFailure", "EngineError", "ServiceTarget", "build_image", "push_image",
           "remove_stack", "resolve_digest", "run_streamed", "stack_deploy",
           "update_markers", "wait_converged"]

Emit = Callable[[str], Awaitable[None]]
_FAILED_UPDATE = {"rollback_started": "Swarm is rolling the update back",
                  "rollback_paused": "Swarm paused the rollback",
                  "rollback_completed": "Swarm rolled the update back",
                  "paused": "Swarm paused the update"}


class EngineError(RuntimeError):
    """A build, push or deploy step failed; the message is for the pusher."""


class DeployFailure(EngineError):
    """The stack did not converge: ``stage`` is ``health``, ``rollback`` or ``deploy``."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def _env(docker_host: str) -> dict[str, str]:
    env = dict(os.environ)
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    env["DOCKER_BUILDKIT"] = "0"  # classic builder: plain line output, local layer cache
    return env


async def run_streamed(argv: list[str], *, env: dict[str, str], timeout_s: float,
                       emit: Emit, cwd: str | None = None) -> int:
    """Run ``argv``, handing each output line (stdout and stderr merged) to ``emit`` as it
    comes. :returns: the exit code. :raises TimeoutError: still running after ``timeout_s``
    (the process group was killed)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)

    async def pump() -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            await emit(line.decode(errors="replace").rstrip("\r\n"))

    try:
        await asyncio.wait_for(pump(), timeout_s)
        return await asyncio.wait_for(proc.wait(), max(1.0, timeout_s))
    except (TimeoutError, asyncio.CancelledError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        raise TimeoutError(f"{argv[0]} {argv[1]} still running after {timeout_s:g} s") from None


async def build_image(*, docker_bin: str, docker_host: str, context: str, dockerfile: str,
                      tag: str, args: tuple[tuple[str, str], ...], target: str,
                      cache_from: str, timeout_s: float, emit: Emit,
                      limit_s: float | None = None) -> None:
    """``docker build`` ``context`` into ``tag``, streaming its output.

    ``cache_from`` (the previous release's image, may be empty) adds ``--cache-from``; the
    engine's own layer cache is kept between builds anyway. ``timeout_s`` is what is left of
    the push's build time limit ``limit_s`` (the one named in the error).

    :raises EngineError: the build failed or ran past ``timeout_s``.
    """
    argv = [docker_bin, "build", "--pull=false", "--rm", "--force-rm", "-t", tag,
            "-f", dockerfile]
    for key, value in args:
        argv += ["--build-arg", f"{key}={value}"]
    if target:
        argv += ["--target", target]
    if cache_from:
        argv += ["--cache-from", cache_from]
    argv.append(context)
    try:
        code = await run_streamed(argv, env=_env(docker_host), timeout_s=timeout_s, emit=emit)
    except TimeoutError:
        raise EngineError(f"build time limit of {limit_s or timeout_s:g} s reached") from None
    if code != 0:
        raise EngineError(f"docker build exited with {code}")


def _client(docker_host: str) -> docker.APIClient:
    return docker.APIClient(base_url=docker_host or "unix:///var/run/docker.sock",
                            version="1.41", timeout=120)


def _auth(user: str, password: str) -> dict | None:
    return {"username": user, "password": password} if user else None


def _push_sync(docker_host: str, repository: str, tag: str, auth: dict | None) -> str:
    client = _client(docker_host)
    try:
        digest = ""
        for item in client.push(repository, tag=tag, stream=True, decode=True,
                                auth_config=auth):
            if "error" in item:
                raise EngineError(f"push of {repository}:{tag} failed: "
                                  f"{str(item['error'])[:300]}")
            aux = item.get("aux") or {}
            if aux.get("Digest"):
                digest = aux["Digest"]
        if not digest:
            raise EngineError(f"push of {repository}:{tag} returned no digest")
        return digest
    except docker.errors.APIError as err:
        raise EngineError(f"push of {repository}:{tag} failed: {err.explanation}") from None
    finally:
        client.close()


async def push_image(*, docker_host: str, repository: str, tag: str, user: str = "",
                     password: str = "", timeout_s: float = 300.0) -> str:
    """Push ``repository:tag`` and return the manifest digest the registry stored
    (``sha256:...``, from the push's final ``aux`` message).

    :raises EngineError: refused, unreachable, or slower than ``timeout_s``.
    """
    try:
        return await asyncio.wait_for(asyncio.to_thread(
            _push_sync, docker_host, repository, tag, _auth(user, password)), timeout_s)
    except TimeoutError:
        raise EngineError(f"push of {repository}:{tag} took longer than {timeout_s:g} s") \
            from None


async def resolve_digest(*, docker_host: str, reference: str, user: str = "",
                         password: str = "") -> str:
    """The registry's manifest digest of ``reference`` (``GET /distribution/{name}/json``).

    :raises EngineError: unknown image or registry unreachable.
    """
    def call() -> str:
        client = _client(docker_host)
        try:
            return client.inspect_distribution(
                reference, auth_config=_auth(user, password))["Descriptor"]["digest"]
        except docker.errors.APIError as err:
            raise EngineError(f"cannot resolve {reference}: {err.explanation}") from None
        finally:
            client.close()
    return await asyncio.wait_for(asyncio.to_thread(call), 60)


@dataclass(frozen=True)
class ServiceTarget:
    """What a deployed service must reach: ``name`` (``<stack>_<service>``), ``image`` (the
    pinned reference), ``replicas`` (``None``: global)."""

    name: str
    image: str
    replicas: int | None


def _inspect(client: docker.APIClient, name: str) -> dict | None:
    try:
        return client.inspect_service(name)
    except docker.errors.NotFound:
        return None


async def update_markers(docker_host: str, names: list[str]) -> dict[str, str]:
    """``UpdateStatus.StartedAt`` of each existing service (empty when none): an update
    status with another start time after a deploy belongs to that deploy."""
    def call() -> dict[str, str]:
        client = _client(docker_host)
        try:
            result = {}
            for name in names:
                service = _inspect(client, name)
                result[name] = ((service or {}).get("UpdateStatus") or {}).get("StartedAt", "")
            return result
        finally:
            client.close()
    return await asyncio.to_thread(call)


async def stack_deploy(*, docker_bin: str, docker_host: str, stack: str, stack_file: str,
                       emit: Emit, timeout_s: float = 120.0) -> None:
    """``docker stack deploy --prune --resolve-image never -c <file> <stack>`` (images are
    already pinned). :raises EngineError: the CLI failed."""
    argv = [docker_bin, "stack", "deploy", "--prune", "--resolve-image", "never",
            "-c", stack_file, stack]
    try:
        code = await run_streamed(argv, env=_env(docker_host), timeout_s=timeout_s, emit=emit)
    except TimeoutError as err:
        raise EngineError(str(err)) from None
    if code != 0:
        raise EngineError(f"docker stack deploy exited with {code}")


def _task_error(task: dict) -> str:
    status = task.get("Status") or {}
    return str(status.get("Err") or status.get("Message") or status.get("State") or "")


def _check_once(client: docker.APIClient, target: ServiceTarget, marker: str,
                max_failures: int) -> tuple[bool, str]:
    """(converged, detail). :raises DeployFailure: rolled back or failing tasks."""
    service = _inspect(client, target.name)
    if service is None:
        return False, "service not created yet"
    update = service.get("UpdateStatus") or {}
    fresh = bool(update) and update.get("StartedAt", "") != marker
    tasks = client.tasks(filters={"service": service["ID"]})
    mine = [t for t in tasks
            if ((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") == target.image]
    failed = sorted((t for t in mine if (t.get("Status") or {}).get("State") in
                     ("failed", "rejected")), key=lambda t: t.get("UpdatedAt", ""))
    if fresh and update.get("State") in _FAILED_UPDATE:
        why = _FAILED_UPDATE[update["State"]]
        if update["State"] == "rollback_started":
            return False, why  # wait for the old release to be back before failing
        detail = _task_error(failed[-1]) if failed else ""
        stage = "health" if "unhealthy" in detail else "rollback"
        raise DeployFailure(stage, f"{why}: {update.get('Message', '')}"
                            + (f" (task: {detail})" if detail else ""))
    if fresh and update.get("State") != "completed":
        return False, f"update {update.get('State', '')}"
    running = [t for t in mine if (t.get("Status") or {}).get("State") == "running"
               and t.get("DesiredState") == "running"]
    wanted = target.replicas
    if wanted is None:
        wanted = max(1, len([t for t in mine if t.get("DesiredState") == "running"]))
    if not fresh and len(failed) >= max_failures:
        detail = _task_error(failed[-1])
        stage = "health" if "unhealthy" in detail else "deploy"
        raise DeployFailure(stage, f"{target.name}: {len(failed)} tasks failed (last: {detail})")
    stale = [t for t in tasks if t.get("DesiredState") == "running" and t not in mine]
    if len(running) == wanted and not stale:
        return True, f"{len(running)}/{wanted} running"
    return False, f"{len(running)}/{wanted} running"


async def wait_converged(*, docker_host: str, targets: list[ServiceTarget],
                         markers: dict[str, str], timeout_s: float, emit: Emit,
                         max_failures: int = 2, poll_s: float = 0.5) -> None:
    """Wait until every target runs its image with the wanted replicas, healthy (Swarm
    reports a task ``running`` only once its healthcheck passed).

    :raises DeployFailure: Swarm rolled back or paused the update, tasks of a new service
        failed ``max_failures`` times, or ``timeout_s`` passed.
    """
    client = await asyncio.to_thread(_client, docker_host)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {t.name: t for t in targets}
    last: dict[str, str] = {}
    try:
        while pending:
            for name, target in list(pending.items()):
                done, detail = await asyncio.to_thread(
                    _check_once, client, target, markers.get(name, ""), max_failures)
                if detail != last.get(name):
                    last[name] = detail
                    await emit(f"{name}: {detail}")
                if done:
                    del pending[name]
            if not pending:
                return
            if loop.time() > deadline:
                names = ", ".join(f"{n} ({last.get(n, '')})" for n in pending)
                raise DeployFailure("deploy", f"not converged after {timeout_s:g} s: {names}")
            await asyncio.sleep(poll_s)
    finally:
        client.close()


async def remove_stack(*, docker_bin: str, docker_host: str, stack: str, emit: Emit,
                       timeout_s: float = 120.0) -> bool:
    """``docker stack rm`` and wait until its services and networks are gone (a deploy
    right after would otherwise find a network that is about to vanish).

    ``docker stack rm`` removes the services, then the networks at once: a network whose
    tasks are still shutting down is refused ("in use by task") and the command exits 1 with
    the services gone or going. So its status alone decides nothing: the stack is gone when
    its services and networks are, and networks left behind are removed here once the
    services are gone.

    :returns: whether the stack existed. :raises EngineError: not gone in ``timeout_s``.
    """
    label = f"com.docker.stack.namespace={stack}"

    def remaining(remove_networks: bool) -> tuple[list, list]:
        """The stack's services and networks; with ``remove_networks``, the networks of a
        stack without services are removed first (a refusal is retried by the caller)."""
        client = _client(docker_host)
        try:
            services = client.services(filters={"label": label})
            networks = client.networks(filters={"label": label})
            if remove_networks and not services:
                for network in networks:
                    try:
                        client.remove_network(network["Id"])
                    except docker.errors.APIError:  # still in use, or gone meanwhile
                        pass
                networks = client.networks(filters={"label": label})
            return services, networks
        finally:
            client.close()

    if not any(await asyncio.to_thread(remaining, False)):
        return False
    argv = [docker_bin, "stack", "rm", stack]
    code = await run_streamed(argv, env=_env(docker_host), timeout_s=timeout_s, emit=emit)
    deadline = time.monotonic() + timeout_s
    while any(await asyncio.to_thread(remaining, code != 0)):
        if time.monotonic() > deadline:
            raise EngineError(f"stack {stack} still has services or networks after "
                              f"{timeout_s:g} s (docker stack rm exited with {code})")
        await asyncio.sleep(0.5)
    return True
