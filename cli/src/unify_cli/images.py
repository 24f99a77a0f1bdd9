"""``unify images build``: every Unify image from the one Dockerfile in ``deploy/images/``.

The images are listed in ``deploy/images/components.toml`` (what each installs and runs). A
build has three steps:

1. **Wheelhouse.** Every third-party distribution the images need, as wheels built by ``pip
   wheel -c constraints.txt`` into ``<cache>/wheels/<key>`` (``key``: a digest of
   ``constraints.txt`` and every ``pyproject.toml``, so it is built again only when a pin or a
   dependency changes), plus the project's own packages, built afresh on every run.
2. **Context.** ``build/images/<component>/``: hard links to the wheelhouse, the files the
   component copies into ``/usr/local/bin``, and ``probe.py``. pip inside the build installs
   offline (``--no-index``), so a build needs no package index and no proxy certificate.
3. **Build** on the engine at ``DOCKER_HOST`` through the Docker SDK (``network_mode=host`` for
   the Debian mirror used by ``apt-get``), tagged ``<prefix>/<component>:<tag>`` (default
   ``unify-local/<component>:dev``: a name no registry serves, so nothing is ever pulled for it).

Each built image is reported as ``(component, tag, seconds, bytes)``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BuildResult", "Component", "EngineUnreachable", "build_images", "engine_client",
           "load_components", "repo_root"]

#: the project's own distributions and where their sources are
LOCAL_PACKAGES = ("libs/unify-common", "services/consul-bridge", "services/switchboard",
                  "services/dns411", "services/registrator", "services/registry-admin",
                  "services/wireline", "cli")
DEFAULT_BASE = "python:3.11-slim-bookworm"
PIP_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 900


def repo_root() -> Path:
    """The repository holding ``deploy/images`` (searched upwards from this file, then cwd).

    :raises FileNotFoundError: not run from a Unify checkout.
    """
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "deploy" / "images" / "components.toml").is_file():
                return folder
    raise FileNotFoundError("deploy/images/components.toml not found: run from a Unify checkout")


@dataclass(frozen=True)
class Component:
    """One entry of ``components.toml`` (see the comments at its top for each field)."""

    name: str
    command: str
    pip: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()
    setcap: tuple[str, ...] = ()
    user: str = "unify"
    health_port: int | None = None
    probe_url: str = ""
    bin: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    setup: str = ""


@dataclass(frozen=True)
class BuildResult:
    """A built image: ``seconds`` of build time, ``size`` in bytes as the engine reports it,
    ``revision`` the source revision in its labels."""

    component: str
    tag: str
    seconds: float
    size: int
    revision: str


def load_components(path: Path | None = None) -> dict[str, Component]:
    """``{name: Component}`` from ``components.toml``, in file order.

    :raises ValueError: an entry without ``command`` or with an unknown key.
    """
    path = path or repo_root() / "deploy" / "images" / "components.toml"
    raw = tomllib.loads(path.read_text())
    out: dict[str, Component] = {}
    known = set(Component.__dataclass_fields__) - {"name"}
    for name, entry in raw.items():
        unknown = set(entry) - known
        if unknown or "command" not in entry:
            raise ValueError(f"{path}: [{name}] needs 'command' and only {sorted(known)}; "
                             f"got {sorted(entry)}")
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in entry.items()}
        out[name] = Component(name=name, **fields)
    return out


def _consul_binary() -> Path:
    cache = Path(os.environ.get("UNIFY_CACHE_DIR", "") or Path.home() / ".cache" / "unify")
    return cache / "bin" / "consul"


def _wheelhouse_key(root: Path) -> str:
    digest = hashlib.sha256((root / "constraints.txt").read_bytes())
    for pkg in LOCAL_PACKAGES:
        pyproject = root / pkg / "pyproject.toml"
        if pyproject.exists():
            digest.update(pyproject.read_bytes())
    return digest.hexdigest()[:16]


def _run(cmd: list[str], *, cwd: Path, log: Callable[[str], None], timeout: float,
         env: dict[str, str] | None = None) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:4])} ... failed "
                           f"({proc.returncode}):\n{proc.stderr[-3000:]}")


def build_wheelhouse(root: Path, cache: Path, work: Path, *, extra: Iterable[str] = (),
                     log: Callable[[str], None] = print) -> Path:
    """Build (or reuse) the wheelhouse; returns a folder in ``work`` holding every wheel the
    images need: third-party wheels (cached by key) plus the project's own (rebuilt every
    time).

    :raises RuntimeError: pip failed (its stderr's end in the message).
    :raises subprocess.TimeoutExpired: pip took longer than ``PIP_TIMEOUT_S``.
    """
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check"]
    # the project's packages are built from fresh copies: setuptools keeps a build/ folder
    # beside the sources, and files left there by an earlier build would slip into a wheel
    sources = work / "sources"
    local = []
    for pkg in LOCAL_PACKAGES:
        if (root / pkg / "pyproject.toml").exists():
            shutil.copytree(root / pkg, sources / pkg, ignore=shutil.ignore_patterns(
                "build", "*.egg-info", "__pycache__", "tests", ".pytest_cache"))
            local.append(str(sources / pkg))
    deps = cache / "wheels" / _wheelhouse_key(root)
    if not (deps / ".complete").exists():
        log(f"wheelhouse: building third-party wheels into {deps}")
        deps.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f"{deps.name}.", dir=deps.parent))
        _run(pip + ["-c", str(root / "constraints.txt"), "-w", str(building), *local,
                    *extra], cwd=root, log=log, timeout=PIP_TIMEOUT_S)
        for own in building.glob("unify_*.whl"):
            own.unlink()  # the project's own wheels are rebuilt on every run, below
        (building / ".complete").write_text("ok\n")
        if deps.exists() and not (deps / ".complete").exists():
            shutil.rmtree(deps, ignore_errors=True)  # left by an interrupted older build
        try:  # another build may have finished the same key meanwhile: either is right
            building.rename(deps)
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
    own_dir = work / "own-wheels"
    own_dir.mkdir(parents=True)
    # a fixed timestamp inside the wheels: unchanged sources give the same bytes, so the
    # image layers that install them stay cached
    _run(pip + ["--no-deps", "-w", str(own_dir), *local], cwd=root, log=log,
         timeout=PIP_TIMEOUT_S, env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
    house = work / "wheels"
    house.mkdir(parents=True)
    for wheel in [*deps.glob("*.whl"), *own_dir.glob("*.whl")]:
        _link(wheel, house / wheel.name)
    return house


def _link(source: Path | str, target: Path | str) -> None:
    """Hard-link ``source`` as ``target`` (a copy when they are on different file systems)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _context(root: Path, house: Path, component: Component, work: Path) -> Path:
    ctx = work / "context" / component.name
    (ctx / "bin").mkdir(parents=True)
    shutil.copytree(house, ctx / "wheels", copy_function=_link)
    shutil.copy2(root / "deploy" / "images" / "Dockerfile", ctx / "Dockerfile")
    shutil.copy2(root / "deploy" / "images" / "probe.py", ctx / "probe.py")
    for name in component.bin:
        # "consul": the one scripts/build-consul.sh builds; an absolute path: that file
        source = _consul_binary() if name == "consul" else Path(name)
        if not source.is_absolute() or not source.exists():
            raise FileNotFoundError(f"{component.name}: {name} not found "
                                    f"(for consul: bash scripts/build-consul.sh)")
        _link(source.resolve(), ctx / "bin" / source.name)
    (ctx / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    return ctx


def _revision(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


class EngineUnreachable(Exception):
    """No container engine answers at ``DOCKER_HOST``; the message names it (masked)."""


def engine_client(timeout: float = BUILD_TIMEOUT_S):
    """A ``docker.DockerClient`` for the engine at ``DOCKER_HOST`` (the local socket when
    unset), checked with one ping.

    :raises EngineUnreachable: the engine does not answer, or ``DOCKER_HOST`` is malformed;
        one line naming ``DOCKER_HOST`` with secrets in it masked.
    """
    import docker  # imported here: the rest of the CLI does not need the Docker SDK

    from unify_common.logs import mask_secrets

    where = os.environ.get("DOCKER_HOST", "") or "unix:///var/run/docker.sock (the default)"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as err:
        cause = err.__cause__ or err.__context__
        why = (f"{type(cause).__name__}" if cause is not None else "") or str(err)
        if isinstance(cause, OSError) and cause.strerror:
            why = cause.strerror
        text = str(err)
        if "FileNotFoundError" in text or "No such file" in text:
            why = "no such socket"
        elif "Connection refused" in text or "ConnectionRefused" in text:
            why = "connection refused"
        elif "Permission denied" in text or "PermissionError" in text:
            why = "permission denied"
        raise EngineUnreachable(mask_secrets(
            f"no container engine at DOCKER_HOST={where} ({why}); set DOCKER_HOST to the "
            "engine's socket or tcp:// address")) from None
    return client


def build_images(names: Iterable[str] | None = None, *, base: str = DEFAULT_BASE,
                 prefix: str = "unify-local", tag: str = "dev", client=None,
                 nocache: bool = False,
                 log: Callable[[str], None] = print) -> list[BuildResult]:
    """Build the named images (all of ``components.toml`` when ``names`` is None).

    :param base: the base image (an official ``python:3.x-slim`` by default; on a machine
        that cannot pull, the local ``unify-local/debian:bookworm`` from setup-engine.sh).
    :param client: a ``docker.DockerClient`` (default ``docker.from_env()``).
    :param nocache: build every layer again (the benchmark's cold build).
    :raises KeyError: an unknown component name.
    :raises RuntimeError: a build failed (its last output lines in the message).
    """
    import docker  # imported here: the rest of the CLI does not need the Docker SDK

    root = repo_root()
    components = load_components()
    wanted = list(components) if names is None else list(names)
    for name in wanted:
        if name not in components:
            raise KeyError(f"unknown image {name!r}; known: {', '.join(components)}")
    client = client or docker.from_env(timeout=BUILD_TIMEOUT_S)
    cache = Path(os.environ.get("UNIFY_CACHE_DIR", "") or Path.home() / ".cache" / "unify")
    # every image's third-party packages, whichever are built now: one wheelhouse per key
    extra = sorted({p for c in components.values() for p in c.pip if not p.startswith("unify-")})
    # every build works in a folder of its own (two builds may run at once)
    (root / "build" / "images").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=root / "build" / "images"))
    try:
        return _build_all(root, cache, work, components, wanted, extra, base=base,
                          prefix=prefix, tag=tag, client=client, nocache=nocache, log=log)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build_all(root: Path, cache: Path, work: Path, components: dict[str, Component],
               wanted: list[str], extra: list[str], *, base: str, prefix: str, tag: str,
               client, nocache: bool, log: Callable[[str], None]) -> list[BuildResult]:
    house = build_wheelhouse(root, cache, work, extra=extra, log=log)
    revision = _revision(root)
    version = _project_version(root)
    results = []
    for name in wanted:
        comp = components[name]
        ctx = _context(root, house, comp, work)
        ref = f"{prefix}/{name}:{tag}"
        args = {
            "BASE": base, "COMPONENT": name, "COMMAND": comp.command,
            "PIP_PACKAGES": " ".join(comp.pip), "APT_PACKAGES": " ".join(comp.apt),
            "SETCAP": " ".join(comp.setcap), "RUN_AS": comp.user,
            "STATE_DIRS": " ".join(comp.dirs), "SETUP": comp.setup,
            "HEALTH_ADDR": f"0.0.0.0:{comp.health_port}" if comp.health_port else "",
            "PROBE_URL": comp.probe_url, "VERSION": version, "REVISION": revision,
        }
        started = time.monotonic()
        tail: list[str] = []
        for chunk in client.api.build(path=str(ctx), tag=ref, buildargs=args, rm=True,
                                      forcerm=True, network_mode="host", decode=True, nocache=nocache,
                                      timeout=BUILD_TIMEOUT_S):
            if "error" in chunk:
                raise RuntimeError(f"building {ref} failed: {chunk['error'].strip()}\n"
                                   + "".join(tail[-20:]))
            text = chunk.get("stream", "")
            if text:
                tail.append(text)
        seconds = time.monotonic() - started
        size = client.images.get(ref).attrs["Size"]
        results.append(BuildResult(name, ref, round(seconds, 1), size, revision))
        log(f"{ref}: {seconds:.1f} s, {size / 1e6:.0f} MB")
    return results


def _project_version(root: Path) -> str:
    data = tomllib.loads((root / "libs" / "unify-common" / "pyproject.toml").read_text())
    return data["project"]["version"]
