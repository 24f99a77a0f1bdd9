"""``unify apps ...``: wireline's keys, releases, rollback, scale, logs and locks.

* ``unify apps keys add NAME PUBKEY (--apps a,b | --all)`` — PUBKEY is an OpenSSH public key
  line or a ``.pub`` file; ``keys ls``; ``keys rm NAME``.
* ``unify apps ls`` — every app: current release, commit, outcome, when.
* ``unify apps releases APP [--json]`` — every release of an app.
* ``unify apps rollback APP [RELEASE]`` — deploy a deployed release's pinned images again
  (default: the deployed release before the current one); no rebuild.
* ``unify apps scale APP SERVICE=N ...`` — the current release's stack with new replica counts.
* ``unify apps logs APP [--release N]`` — the kept build/deploy output (default: latest).
* ``unify apps lock APP`` — who holds the app's deploy lock, since when.

State lives in NATS (``NATS_URL``...); rollback and scale also talk to the Swarm manager
(``UNIFY_WIRELINE_DEPLOY_DOCKER_HOST`` or ``DOCKER_HOST``) with the wireline settings of the
environment (``UNIFY_WIRELINE_STACK_PREFIX``...), like wireline itself.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from pathlib import Path

import msgspec

from unify_common.natsio import unreachable_message
from unify_common.settings import CommonSettings

from .errors import line

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unify apps", description="wireline apps")
    sub = parser.add_subparsers(dest="action", required=True)
    keys = sub.add_parser("keys", help="pusher keys")
    keys_sub = keys.add_subparsers(dest="keys_action", required=True)
    add = keys_sub.add_parser("add", help="add or replace a key")
    add.add_argument("name")
    add.add_argument("pubkey", help="an OpenSSH public key line, or a .pub file")
    scope = add.add_mutually_exclusive_group(required=True)
    scope.add_argument("--apps", help="comma-separated apps this key may push")
    scope.add_argument("--all", action="store_true", help="any app")
    keys_sub.add_parser("ls", help="list keys")
    rm = keys_sub.add_parser("rm", help="remove a key")
    rm.add_argument("name")
    sub.add_parser("ls", help="apps and their current release")
    releases = sub.add_parser("releases", help="releases of an app")
    releases.add_argument("app")
    releases.add_argument("--json", action="store_true")
    rollback = sub.add_parser("rollback", help="deploy an earlier release's images again")
    rollback.add_argument("app")
    rollback.add_argument("release", nargs="?", type=int)
    scale = sub.add_parser("scale", help="change replica counts")
    scale.add_argument("app")
    scale.add_argument("counts", nargs="+", metavar="SERVICE=N")
    logs = sub.add_parser("logs", help="a release's build and deploy output")
    logs.add_argument("app")
    logs.add_argument("--release", type=int)
    lock = sub.add_parser("lock", help="who holds an app's deploy lock")
    lock.add_argument("app")
    return parser


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000)) if ms else "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _release_rows(releases) -> list[list[str]]:
    rows = [["RELEASE", "KIND", "OUTCOME", "SHA", "PUSHER", "FINISHED", "BUILD", "DEPLOY",
             "MESSAGE"]]
    for r in releases:
        rows.append([str(r.number), r.kind + (f" of {r.rollback_of}" if r.rollback_of else ""),
                     r.outcome, r.sha[:12], r.pusher, _when(r.finished_at),
                     f"{r.build_s:.1f}s", f"{r.deploy_s:.1f}s", r.message[:60]])
    return rows


async def _run(args: argparse.Namespace) -> int:
    from wireline.access import AccessError, check_app_name, fingerprint, parse_public_key
    from wireline.ini import IniError, parse_scale
    from wireline.pipeline import Output, redeploy, rescaled
    from wireline.settings import WirelineSettings
    from wireline.store import LockTimeout, Store, StoredKey

    common = CommonSettings.from_env()
    settings = WirelineSettings.from_env()
    given: str | None = getattr(args, "app", None)
    app = given or ""  # the actions that take no app never read it
    if given is not None:
        try:
            check_app_name(given)
        except AccessError as err:
            print(line("unify apps", err), file=sys.stderr)
            return 2
    try:
        store = await Store.open(settings, common, name="unify-apps")
    except Exception as err:
        print(f"unify apps: {unreachable_message(common, err)}", file=sys.stderr)
        return 1
    try:
        if args.action == "keys":
            if args.keys_action == "add":
                from wireline.access import KEY_NAME_RE
                if not KEY_NAME_RE.match(args.name):
                    print(f"unify apps: invalid key name {args.name!r}: letters, digits, "
                          "'.', '_', '-' (up to 64)", file=sys.stderr)
                    return 2
                text = args.pubkey
                if not text.startswith(("ssh-", "ecdsa-", "sk-")) and Path(text).is_file():
                    text = Path(text).read_text()
                try:
                    key_type, blob, _ = parse_public_key(text)
                    apps = tuple(sorted({check_app_name(a.strip())
                                         for a in (args.apps or "").split(",") if a.strip()}))
                except AccessError as err:
                    print(line("unify apps", err), file=sys.stderr)
                    return 2
                if not args.all and not apps:
                    print("unify apps: --apps needs at least one app", file=sys.stderr)
                    return 2
                key = StoredKey(name=args.name, key_type=key_type, blob=blob,
                                fingerprint=fingerprint(blob), apps=apps, all_apps=args.all,
                                added_at=int(time.time() * 1000))
                await store.put_key(key)
                print(f"{key.name} {key.fingerprint} "
                      f"{'all apps' if key.all_apps else ','.join(key.apps)}")
                return 0
            if args.keys_action == "ls":
                keys = await store.list_keys()
                rows = [["NAME", "FINGERPRINT", "APPS", "ADDED"]]
                rows += [[k.name, k.fingerprint, "*" if k.all_apps else ",".join(k.apps),
                          _when(k.added_at)] for k in keys]
                print(_table(rows))
                return 0
            if not await store.delete_key(args.name):
                print(f"unify apps: no key {args.name!r}", file=sys.stderr)
                return 1
            print(f"removed {args.name}")
            return 0
        if args.action == "ls":
            rows = [["APP", "RELEASE", "OUTCOME", "SHA", "PUSHER", "FINISHED", "LOCK"]]
            for name, releases in (await store.apps()).items():
                last = releases[-1]
                holder = await store.lock_holder(name)
                rows.append([name, str(last.number), last.outcome, last.sha[:12], last.pusher,
                             _when(last.finished_at), holder.holder if holder else "-"])
            print(_table(rows))
            return 0
        if args.action == "releases":
            releases = await store.list_releases(app)
            if not releases:
                print(f"unify apps: no releases of {app}", file=sys.stderr)
                return 1
            if args.json:
                for r in releases:
                    print(msgspec.json.encode(r).decode())
            else:
                print(_table(_release_rows(releases)))
            return 0
        if args.action == "logs":
            releases = await store.list_releases(app)
            number = args.release or (releases[-1].number if releases else 0)
            text = await store.get_log(app, number) if number else None
            if text is None:
                print(f"unify apps: no log for release {number or '-'} of {app}",
                      file=sys.stderr)
                return 1
            sys.stdout.write(text)
            return 0
        if args.action == "lock":
            holder = await store.lock_holder(app)
            if holder is None:
                print(f"{app}: not locked")
            else:
                print(f"{app}: locked by {holder.describe()}")
            return 0
        actor = f"operator:{getpass.getuser()}"
        deployed = [r for r in await store.list_releases(app)
                    if r.outcome == "deployed" and r.stack]
        if not deployed:
            print(f"unify apps: {app} has no deployed release", file=sys.stderr)
            return 1
        out = Output(sys.stdout)
        if args.action == "rollback":
            if args.release is None:
                current = deployed[-1]
                earlier = [r for r in deployed if r.images != current.images]
                if not earlier:
                    print(f"unify apps: {app} has no earlier deployed release",
                          file=sys.stderr)
                    return 1
                target = earlier[-1]
            else:
                found = [r for r in deployed if r.number == args.release]
                if not found:
                    print(f"unify apps: release {args.release} of {app} was not deployed "
                          "(only deployed releases can be rolled back to)", file=sys.stderr)
                    return 1
                target = found[0]
            text, replicas = rescaled(target, {})
            kind, rollback_of = "rollback", target.number
        else:
            latest = (await store.list_releases(app))[-1]
            if latest.outcome == "removed":
                print(f"unify apps: {app} was removed (release {latest.number}); push it "
                      "again first", file=sys.stderr)
                return 1
            try:
                counts = parse_scale(" ".join(args.counts), where="scale")
                target = deployed[-1]
                text, replicas = rescaled(target, counts)
            except (IniError, ValueError) as err:
                print(line("unify apps", err), file=sys.stderr)
                return 2
            kind, rollback_of = "scale", 0
        try:
            release = await redeploy(store, settings, app=app, base=target, kind=kind,
                                     text=text, replicas=replicas, actor=actor, out=out,
                                     rollback_of=rollback_of)
        except LockTimeout as err:
            print(f"unify apps: {app} is locked by {err}", file=sys.stderr)
            return 1
        return 0 if release.outcome == "deployed" else 1
    finally:
        await store.close()


def main(argv: list[str]) -> int:
    """Run ``unify apps``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except ValueError as err:
        print(line("unify apps", err), file=sys.stderr)
        return 2
