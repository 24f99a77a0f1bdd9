"""One push, from received objects to a converged stack (run by the ``pre-receive`` hook).

For each updated ref: a branch other than the deploy branch (or a tag) is stored and not
deployed; the deploy branch goes through lock -> checkout -> ``wireline.ini`` -> compose
files -> build -> push -> stack -> convergence, and every outcome is a release. Any failure
exits non-zero, so ``git-receive-pack`` rejects the push: the git client exits non-zero and
the branch keeps pointing at the last deployed commit.

Output lines go to the pusher at once (git prints them as ``remote: ...``), into the
release's kept log, and out as ``build.output`` events.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from unify_common import subjects
from unify_common.events import DeployFailed, ErrorEvent, Release
from unify_common.logs import get_logger
from unify_common.settings import CommonSettings

from . import engine
from .appfiles import AppError, AppSpec, candidate_files, load_app
from .ini import IniError, WirelineIni, parse_ini
from .settings import WirelineSettings
from .stack import image_name, pinned, render_stack, rescale, stack_name
from .store import LockTimeout, Store, this_holder

__all__ = ["extract_tree", "Output", "PushContext", "deploy_stack_text", "run_push"]

log = get_logger("wireline.pipeline")
ZERO = "0" * 40


class Output:
    """Lines for the pusher (``stream``), kept for the release log and published in chunks."""

    def __init__(self, stream=None, *, store: Store | None = None, app: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.store = store
        self.app = app
        self.number = 0
        self.lines: list[str] = []
        self._published = 0

    async def line(self, text: str) -> None:
        """Show and keep one line; publish a chunk every 20 lines."""
        self.lines.append(text)
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (BrokenPipeError, OSError):
            pass  # the pusher went away; the deploy still completes and is recorded
        if self.number and len(self.lines) - self._published >= 20:
            await self.flush()

    async def flush(self) -> None:
        """Publish the lines not yet published (needs a release number)."""
        if self.store is None or not self.number or self._published >= len(self.lines):
            return
        chunk = self.lines[self._published:]
        first, self._published = self._published, len(self.lines)
        await self.store.publish_output(self.app, self.number, first, chunk)

    def text(self) -> str:
        """Everything shown so far."""
        return "\n".join(self.lines) + "\n"


@dataclass
class PushContext:
    """Who pushes what: ``app``, ``repo`` (bare repository path), ``pusher`` (key name),
    ``fingerprint``, ``started`` (epoch seconds the SSH session started), ``git_env`` (the
    hook's quarantine variables, see :func:`checkout`)."""

    app: str
    repo: Path
    pusher: str
    fingerprint: str
    started: float = field(default_factory=time.time)
    git_env: dict[str, str] = field(default_factory=dict)


def checkout(repo: Path, sha: str, dest: Path, *, max_bytes: int,
             git_env: dict[str, str] | None = None) -> None:
    """Extract the tree of ``sha`` into ``dest`` (``git archive``, then
    :func:`extract_tree`: no absolute paths, no links leaving ``dest``, no devices).
    ``git_env`` carries the hook's ``GIT_OBJECT_DIRECTORY``/``GIT_ALTERNATE_OBJECT_DIRECTORIES``
    (git's quarantine: the pushed objects are not in the repository yet).

    :raises AppError: the tree is larger than ``max_bytes``.
    """
    with tempfile.TemporaryFile() as tar_file:
        proc = subprocess.Popen(["git", "--git-dir", str(repo), "archive", "--format=tar", sha],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env={**os.environ, **(git_env or {})})
        assert proc.stdout is not None
        size = 0
        try:
            while chunk := proc.stdout.read(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    proc.kill()
                    raise AppError(f"the pushed tree is larger than {max_bytes >> 20} MiB")
                tar_file.write(chunk)
        finally:
            proc.stdout.close()
            proc.wait(timeout=60)
        if proc.returncode != 0:
            raise AppError(f"cannot read commit {sha[:12]}")
        tar_file.seek(0)
        extract_tree(tar_file, dest)


def extract_tree(tar_file, dest: Path) -> None:
    """Extract the tar stream ``tar_file`` (a binary file object) into the existing directory
    ``dest``, one member at a time, refusing what could reach outside ``dest``: absolute
    names, ``..``, a member whose parent resolves outside ``dest`` (through a link extracted
    earlier), symbolic links whose target resolves outside, hard links, and anything but
    files, directories and symbolic links; once all are out, every link is checked again
    (a later link can change where an earlier one leads). Modes keep only ``rwxr-xr-x``
    bits.

    The same rules as Python's ``data`` extraction filter (tarfile, "Extraction filters"),
    checked here because Debian bookworm's Python 3.11.2 (the image's) predates that filter.

    :raises AppError: a refused member (its name in the message); what was extracted before
        it stays in ``dest``, which the caller discards.
    """
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    with tarfile.open(fileobj=tar_file, mode="r:") as tar:
        for member in tar:
            name = member.name
            parts = name.split("/")
            if name.startswith("/") or ".." in parts:
                raise AppError(f"refused path {name!r} in the pushed tree")
            target = os.path.join(root, name)
            if not inside(os.path.dirname(target) or root):
                raise AppError(f"refused path {name!r}: it leads outside the tree")
            if member.issym():
                link = os.path.join(os.path.dirname(target), member.linkname)
                if member.linkname.startswith("/") or not inside(link):
                    raise AppError(f"refused link {name!r} -> {member.linkname!r}: it points "
                                   "outside the tree")
            elif not (member.isfile() or member.isdir()):
                raise AppError(f"refused {name!r}: only files, directories and symbolic "
                               "links are extracted")
            member.mode &= 0o755
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            if hasattr(tarfile, "fully_trusted_filter"):  # checked above, member by member
                tar.extract(member, root, filter="fully_trusted")
            else:
                tar.extract(member, root)
    # a link may resolve differently once later links exist (``a -> b/..``, then ``b -> .``)
    for folder, dirs, files in os.walk(root):
        for entry in (*dirs, *files):
            path = os.path.join(folder, entry)
            if os.path.islink(path) and not inside(path):
                raise AppError(f"refused link {os.path.relpath(path, root)!r}: it points "
                               "outside the tree")


def _read_files(root: Path, names: tuple[str, ...]) -> dict[str, str]:
    files = {}
    base = root.resolve()
    for name in dict.fromkeys(names):
        path = (root / name).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            continue
        if path.stat().st_size > 256 * 1024:
            raise AppError(f"{name}: larger than 256 KiB")
        files[name] = path.read_text(errors="replace")
    return files


def _current(repo: Path, ref: str) -> str:
    """The commit ``ref`` points at now, or 40 zeros when it does not exist."""
    result = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "--verify", "-q",
                             ref + "^{commit}"], capture_output=True, timeout=30, check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else ZERO


async def _settled_ref(store: Store, ctx: PushContext, ref: str, *,
                       wait_s: float = 10.0) -> str:
    """The value of ``ref`` once the previous lock holder's ref update has landed.

    git updates the ref only after the ``pre-receive`` hook (and so the lock) is done, so a
    push that waited for the lock may look before it lands: when the ref differs from the
    last successful push's commit, wait (bounded) for it to get there.
    """
    current = _current(ctx.repo, ref)
    pushed = [r for r in await store.list_releases(ctx.app)
              if r.kind in ("push", "remove") and r.ref == ref and r.outcome != "failed"]
    if not pushed or pushed[-1].sha == current:
        return current
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        current = _current(ctx.repo, ref)
        if current == pushed[-1].sha:
            break
    return current


def _ms(seconds: float | None = None) -> int:
    return int((time.time() if seconds is None else seconds) * 1000)


class _Failed(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


async def deploy_stack_text(store: Store, settings: WirelineSettings, *, app: str,
                            text: str, targets: list[engine.ServiceTarget],
                            out: Output) -> None:
    """Deploy a rendered stack text and wait for convergence.

    :raises engine.EngineError: / :class:`engine.DeployFailure`.
    """
    stack = stack_name(settings.stack_prefix, app)
    markers = await engine.update_markers(settings.deploy_docker_host,
                                          [t.name for t in targets])
    with tempfile.TemporaryDirectory(prefix="wireline-stack-") as tmp:
        path = Path(tmp) / "stack.yaml"
        path.write_text(text)
        await engine.stack_deploy(docker_bin=settings.docker_bin,
                                  docker_host=settings.deploy_docker_host, stack=stack,
                                  stack_file=str(path), emit=out.line)
    await engine.wait_converged(docker_host=settings.deploy_docker_host, targets=targets,
                                markers=markers, timeout_s=settings.deploy_timeout_s,
                                emit=out.line)


def targets_of(settings: WirelineSettings, app: str, images: dict[str, str],
               replicas: dict[str, int | None]) -> list[engine.ServiceTarget]:
    """The services a stack of ``app`` must converge to."""
    stack = stack_name(settings.stack_prefix, app)
    return [engine.ServiceTarget(name=f"{stack}_{svc}", image=images[svc],
                                 replicas=replicas.get(svc))
            for svc in sorted(images)]


async def _deploy_ref(store: Store, settings: WirelineSettings, ctx: PushContext,
                      old: str, new: str, ref: str, out: Output) -> bool:
    app = ctx.app
    hook_started = time.time()
    release = Release(app=app, number=0, kind="push", outcome="failed", sha=new, ref=ref,
                      pusher=ctx.pusher, fingerprint=ctx.fingerprint, node=store.common.node,
                      started_at=_ms(ctx.started), receive_s=round(hook_started - ctx.started, 3))
    lock = store.lock(app, this_holder(ctx.pusher, ctx.fingerprint))

    def waiting(holder) -> None:
        out.lines.append(f"waiting for {holder.describe() if holder else 'another deploy'}")
        out.stream.write(out.lines[-1] + "\n")
        out.stream.flush()

    try:
        await lock.acquire(wait_s=settings.lock_wait_s, on_wait=waiting)
    except LockTimeout as err:
        message = (f"deploy failed: {app} is locked by {err} (waited "
                   f"{settings.lock_wait_s:g} s); push again later")
        await out.line(message)
        await store.publish_failed(DeployFailed(app=app, number=0, sha=new, stage="lock",
                                                message=message, pusher=ctx.pusher,
                                                observed_at=_ms()))
        return False
    stage_times: dict[str, float] = {}
    try:
        current = await _settled_ref(store, ctx, ref)
        if current != old:
            await out.line(f"deploy failed: {ref} moved to {current[:12]} while this push "
                           "waited; fetch, merge and push again")
            return False
        number = await store.next_number(app)
        out.number = number
        release = msgspec.structs.replace(release, number=number)
        await out.line(f"release {number} of {app}: {new[:12]} by {ctx.pusher}")
        try:
            await _pipeline(store, settings, ctx, new, out, release, stage_times)
            return True
        except _Failed as err:
            await out.line(f"deploy failed: {err}")
            log.warning("deploy failed", app=app, release=number, sha=new, stage=err.stage,
                        reason=str(err), pusher=ctx.pusher)
            release = msgspec.structs.replace(
                release, outcome="failed", message=str(err), finished_at=_ms(),
                **{k: round(v, 3) for k, v in stage_times.items()})
            await out.flush()
            await store.save_release(release, out.text())
            await store.publish_failed(DeployFailed(app=app, number=number, sha=new,
                                                    stage=err.stage, message=str(err),
                                                    pusher=ctx.pusher, observed_at=_ms()))
            return False
    finally:
        await lock.release()


async def _pipeline(store: Store, settings: WirelineSettings, ctx: PushContext, sha: str,
                    out: Output, release: Release, times: dict[str, float]) -> None:
    app = ctx.app
    with tempfile.TemporaryDirectory(prefix=f"wireline-{app}-") as tmp:
        root = Path(tmp)
        try:
            await asyncio.to_thread(checkout, ctx.repo, sha, root,
                                    max_bytes=settings.max_repo_mb << 20, git_env=ctx.git_env)
            ini_files = _read_files(root, ("wireline.ini",))
            ini = parse_ini(ini_files.get("wireline.ini", ""))
            for warning in ini.warnings:
                await out.line(warning)
            if not ini.deploy:
                await _remove(store, settings, app, out, release)
                return
            files = _read_files(root, candidate_files(ini))
            spec = load_app(files, ini, registry=settings.registry,
                            allowed_networks=settings.networks)
        except (AppError, IniError) as err:
            await store.publish(subjects.error_subject("wireline"), ErrorEvent(
                source="wireline", reason="invalid-app", message=f"{app}: {err}",
                service=app, node=store.common.node, observed_at=_ms()),
                msg_id=f"invalid-app:{app}:{release.number}")
            raise _Failed("files", str(err)) from None
        for note in spec.notes:
            await out.line(note)
        if not settings.registry:
            raise _Failed("push", "wireline has no registry configured "
                                  "(UNIFY_WIRELINE_REGISTRY)")
        images = await _images(store, settings, ctx, sha, root, spec, ini, out, times)
        if images is None:
            release = msgspec.structs.replace(
                release, outcome="built", finished_at=_ms(),
                **{k: round(v, 3) for k, v in times.items()})
            await out.line("PUSH=N: built, nothing pushed or deployed")
            await out.flush()
            await store.save_release(release, out.text())
            return
    labels = {"unify.wireline.app": app, "unify.wireline.release": str(release.number),
              "unify.wireline.sha": sha}
    plan = render_stack(spec, images, app=app, scale=ini.scale,
                        monitor_s=settings.update_monitor_s, labels=labels)
    for svc, (order, reason) in sorted(plan.orders.items()):
        if order == "stop-first":
            await out.line(f"service {svc}: stop-first update, because it {reason}")
    replicas = {svc: (-1 if n is None else n) for svc, n in plan.replicas.items()}
    release = msgspec.structs.replace(release, images=images, replicas=replicas,
                                      stack=plan.text)
    started = time.monotonic()
    try:
        await out.line(f"deploying stack {stack_name(settings.stack_prefix, app)}")
        await deploy_stack_text(store, settings, app=app, text=plan.text,
                                targets=targets_of(settings, app, images, plan.replicas),
                                out=out)
    except engine.DeployFailure as err:
        times["deploy_s"] = time.monotonic() - started
        raise _Failed(err.stage, str(err)) from None
    except engine.EngineError as err:
        times["deploy_s"] = time.monotonic() - started
        raise _Failed("deploy", str(err)) from None
    times["deploy_s"] = time.monotonic() - started
    release = msgspec.structs.replace(release, outcome="deployed", finished_at=_ms(),
                                      **{k: round(v, 3) for k, v in times.items()})
    await out.line(f"deployed release {release.number} of {app} "
                   f"(build {times.get('build_s', 0):.1f} s, push {times.get('push_s', 0):.1f} s,"
                   f" deploy {times['deploy_s']:.1f} s)")
    await out.flush()
    await store.save_release(release, out.text())
    log.info("deployed", app=app, release=release.number, sha=sha, pusher=ctx.pusher)


async def _images(store: Store, settings: WirelineSettings, ctx: PushContext, sha: str,
                  root: Path, spec: AppSpec, ini: WirelineIni, out: Output,
                  times: dict[str, float]) -> dict[str, str] | None:
    """Build and push (or reuse) every service's image; ``None`` for ``PUSH=N``."""
    app = ctx.app
    previous = [r for r in await store.list_releases(app) if r.outcome == "deployed"]
    images: dict[str, str] = {}
    built: list[tuple[str, str]] = []
    started = time.monotonic()
    deadline = started + settings.build_timeout_s
    for name, service in sorted(spec.services.items()):
        if service.build is None:
            continue
        if not ini.build:
            old = previous[-1].images.get(name) if previous else None
            if not old:
                raise _Failed("build", f"BUILD=N but no deployed release has an image for "
                                       f"service {name}")
            images[name] = old
            continue
        context = (root / service.build.context).resolve()
        dockerfile = (root / service.build.dockerfile).resolve()
        if not context.is_relative_to(root.resolve()) or not dockerfile.is_relative_to(
                root.resolve()):
            raise _Failed("build", f"service {name}: build paths leave the repository")
        if not dockerfile.is_file():
            raise _Failed("build", f"service {name}: no {service.build.dockerfile} at "
                                   f"{sha[:12]}")
        repository = image_name(settings.registry, app, name)
        cache_from = ""
        if previous and name in previous[-1].images:
            cache_from = previous[-1].images[name].split("@", 1)[0]
        await out.line(f"building {name} -> {repository}:{sha}")
        try:
            await engine.build_image(
                docker_bin=settings.docker_bin, docker_host=settings.build_docker_host,
                context=str(context), dockerfile=str(dockerfile), tag=f"{repository}:{sha}",
                args=service.build.args, target=service.build.target, cache_from=cache_from,
                timeout_s=max(1.0, deadline - time.monotonic()), emit=out.line,
                limit_s=settings.build_timeout_s)
        except engine.EngineError as err:
            times["build_s"] = time.monotonic() - started
            raise _Failed("build", str(err)) from None
        built.append((name, repository))
    times["build_s"] = time.monotonic() - started
    if not ini.push:
        return None
    started = time.monotonic()
    try:
        for name, repository in built:
            digest = await engine.push_image(
                docker_host=settings.build_docker_host, repository=repository, tag=sha,
                user=settings.registry_user,
                password=settings.registry_password.get_secret_value())
            images[name] = pinned(repository, sha, digest)
            await out.line(f"pushed {repository}:{sha} {digest}")
        for name, service in sorted(spec.services.items()):
            if service.build is None:
                digest = await engine.resolve_digest(
                    docker_host=settings.deploy_docker_host, reference=service.image,
                    user=settings.registry_user,
                password=settings.registry_password.get_secret_value())
                repository, _, tag = service.image.partition("@")[0].rpartition(":")
                if "/" in tag:  # a port, not a tag
                    repository, tag = service.image.partition("@")[0], ""
                images[name] = pinned(repository, tag, digest)
                await out.line(f"pinned {service.image} {digest}")
    except engine.EngineError as err:
        times["push_s"] = time.monotonic() - started
        raise _Failed("push", str(err)) from None
    times["push_s"] = time.monotonic() - started
    return images


async def _remove(store: Store, settings: WirelineSettings, app: str, out: Output,
                  release: Release) -> None:
    stack = stack_name(settings.stack_prefix, app)
    started = time.monotonic()
    try:
        existed = await engine.remove_stack(docker_bin=settings.docker_bin,
                                            docker_host=settings.deploy_docker_host,
                                            stack=stack, emit=out.line)
    except (engine.EngineError, TimeoutError) as err:
        raise _Failed("deploy", f"removing stack {stack}: {err}") from None
    await out.line(f"DEPLOY=N: stack {stack} removed" if existed
                   else f"DEPLOY=N: stack {stack} was not deployed")
    release = msgspec.structs.replace(release, kind="remove", outcome="removed",
                                      finished_at=_ms(),
                                      deploy_s=round(time.monotonic() - started, 3))
    await out.flush()
    await store.save_release(release, out.text())


async def run_push(settings: WirelineSettings, common: CommonSettings, ctx: PushContext,
                   updates: list[tuple[str, str, str]], stream=None,
                   store: Store | None = None) -> int:
    """Handle the ``(old, new, ref)`` lines a ``pre-receive`` hook reads.

    ``store``: an open store to use (the service's); without it one is opened and closed.

    :returns: the hook's exit code (0: accept every ref; 1: reject the push).
    """
    out = Output(stream)
    deploy_ref = f"refs/heads/{settings.deploy_branch}"
    work = []
    for old, new, ref in updates:
        if ref != deploy_ref:
            what = "deleted" if new == ZERO else "stored"
            await out.line(f"{ref} {what}, not deployed (the deploy branch is "
                           f"{settings.deploy_branch})")
        elif new == ZERO:
            await out.line(f"refused: deleting {settings.deploy_branch} is not allowed; push "
                           "DEPLOY=N in wireline.ini to remove the app")
            return 1
        else:
            work.append((old, new, ref))
    if not work:
        return 0
    own = store is None
    if store is None:
        try:
            store = await Store.open(settings, common, name=f"wireline-push-{ctx.app}")
        except Exception as err:
            await out.line(f"deploy failed: wireline cannot reach NATS ({str(err)[:200]})")
            return 1
    out.store, out.app = store, ctx.app
    try:
        ok = True
        for old, new, ref in work:
            ok = await _deploy_ref(store, settings, ctx, old, new, ref, out) and ok
        return 0 if ok else 1
    finally:
        await out.flush()
        if own:
            await store.close()


async def redeploy(store: Store, settings: WirelineSettings, *, app: str, base: Release,
                   kind: str, text: str, replicas: dict[str, int | None], actor: str,
                   out: Output, rollback_of: int = 0) -> Release:
    """Deploy a stored stack again (rollback, scale) as a new release, under the app lock.

    :raises LockTimeout: the app is locked past ``lock_wait_s``.
    """
    lock = store.lock(app, this_holder(actor, purpose=kind))
    await lock.acquire(wait_s=settings.lock_wait_s)
    try:
        number = await store.next_number(app)
        out.store, out.app, out.number = store, app, number
        text, _ = rescale(text, {}, labels={"unify.wireline.release": str(number)})
        release = msgspec.structs.replace(
            base, number=number, kind=kind, outcome="failed", pusher=actor, fingerprint="",
            node=store.common.node, started_at=_ms(), rollback_of=rollback_of,
            replicas={s: (-1 if n is None else n) for s, n in replicas.items()}, stack=text,
            receive_s=0.0, build_s=0.0, push_s=0.0, message="")
        await out.line(f"release {number} of {app}: {kind} to {base.sha[:12]} "
                       f"(images of release {base.number})")
        started = time.monotonic()
        try:
            await deploy_stack_text(store, settings, app=app, text=text,
                                    targets=targets_of(settings, app, base.images, replicas),
                                    out=out)
            release = msgspec.structs.replace(release, outcome="deployed")
            await out.line(f"deployed release {number} of {app}")
        except engine.EngineError as err:
            release = msgspec.structs.replace(release, message=str(err))
            await out.line(f"deploy failed: {err}")
            await store.publish_failed(DeployFailed(
                app=app, number=number, sha=base.sha, stage=getattr(err, "stage", "deploy"),
                message=str(err), pusher=actor, observed_at=_ms()))
        release = msgspec.structs.replace(release, finished_at=_ms(),
                                          deploy_s=round(time.monotonic() - started, 3))
        await out.flush()
        await store.save_release(release, out.text())
        return release
    finally:
        await lock.release()


def rescaled(base: Release, scale: dict[str, int]) -> tuple[str, dict[str, int | None]]:
    """``base``'s stack with new replica counts (see :func:`wireline.stack.rescale`)."""
    return rescale(base.stack, scale)
