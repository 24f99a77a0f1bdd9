"""``unify``: one entry point for operators and developers.

* ``unify events tail [--subject S] [--json]`` — live events, one line each; survives NATS
  going away (a line on stderr, then it resumes after the last event it printed).
* ``unify events replay (--since 10m|<RFC3339> | --from-seq N) [--until T] [--subject S]``
  — exactly the events of a window, in stream order.
* ``unify dns list [--zone Z] [--source desired|dnsmasq|route53] [--node N] [--json]`` — the
  DNS records dns411 serves, with drift marks, from the state it publishes on NATS (see
  :mod:`unify_common.dnslisting`).
* ``unify dev up [--demo]`` — the whole local stack on real parts; Ctrl-C stops it.
* ``unify dev demo`` — register example services in a running ``dev up`` stack.
* ``unify apps keys|ls|releases|rollback|scale|logs|lock`` — wireline apps (see
  :mod:`unify_cli.apps_cmd`).
* ``unify registry ls [REPO] [--json]`` / ``unify registry gc [--dry-run]`` — the private
  registry cluster (see :mod:`unify_cli.registry_cmd`).
* ``unify images build [NAME ...] [--base IMAGE] [--prefix P] [--tag T]`` — the container
  images (``deploy/images/``).

Connection settings come from the environment (``NATS_URL``, ``CONSUL_HTTP_ADDR``, ...; see
:mod:`unify_common.settings`); ``unify dev up`` writes them to ``.unify/dev/env`` for other
shells.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys

from unify_common import subjects
from unify_common.settings import CommonSettings

from .errors import EXIT_FAILURE, EXIT_USAGE, line

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unify", description=__doc__.split("\n\n")[0].replace("``", ""),
                                     epilog="Exit status: 0 success; 1 a runtime failure (NATS, "
                                     "a registry or the engine unreachable, a refusal, a "
                                     "missing extra); 2 bad arguments or settings.")
    sub = parser.add_subparsers(dest="command", required=True)

    events = sub.add_parser("events", help="follow or replay the event stream")
    ev = events.add_subparsers(dest="action", required=True)
    tail = ev.add_parser("tail", help="print live events")
    tail.add_argument("--subject", default=subjects.ALL, help="subject filter (default unify.>)")
    tail.add_argument("--json", action="store_true", help="raw JSON, one object per line")
    replay = ev.add_parser("replay", help="print the events of a time window, in order")
    start = replay.add_mutually_exclusive_group(required=True)
    start.add_argument("--since", help="10m, 2h, 30s, or an RFC 3339 time")
    start.add_argument("--from-seq", type=int, help="first stream sequence")
    replay.add_argument("--until", help="last event time (RFC 3339 or a duration ago)")
    replay.add_argument("--subject", default=subjects.ALL, help="subject filter")
    replay.add_argument("--json", action="store_true", help="raw JSON, one object per line")

    dns = sub.add_parser("dns", help="DNS records")
    dns_sub = dns.add_subparsers(dest="action", required=True)
    dns_list = dns_sub.add_parser("list", help="records with drift marked",
                                  add_help=False)
    dns_list.add_argument("rest", nargs=argparse.REMAINDER)

    sub.add_parser("apps", help="wireline apps: keys, ls, releases, rollback, scale, logs, "
                   "lock (unify apps -h)", add_help=False)
    sub.add_parser("registry", help="private registry: ls, gc (unify registry -h)",
                   add_help=False)

    dev = sub.add_parser("dev", help="local stack on real components")
    dev_sub = dev.add_subparsers(dest="action", required=True)
    up = dev_sub.add_parser("up", help="start Consul, NATS, HAProxy, dnsmasq, moto, services")
    up.add_argument("--demo", action="store_true", help="also register the demo services")
    up.add_argument("--workdir", default=".unify/dev", help="state and logs (default .unify/dev)")
    demo = dev_sub.add_parser("demo", help="register demo services in a running stack")
    demo.add_argument("--workdir", default=".unify/dev",
                      help="the running stack's state (default .unify/dev)")

    images = sub.add_parser("images", help="container images (deploy/images)")
    img_sub = images.add_subparsers(dest="action", required=True)
    build = img_sub.add_parser("build", help="build images on the engine at DOCKER_HOST")
    build.add_argument("names", nargs="*", help="components (default: all)")
    build.add_argument("--base", default=os.environ.get("UNIFY_BASE_IMAGE", "")
                       or "python:3.11-slim-bookworm",
                       help="base image (default $UNIFY_BASE_IMAGE or python:3.11-slim-bookworm)")
    build.add_argument("--prefix", default="unify-local", help="repository prefix")
    build.add_argument("--tag", default="dev", help="image tag (default dev)")
    return parser


def _extra_installed(command: str, module: str) -> bool:
    """True when the service package ``unify <command>`` runs is importable; otherwise says
    which extra of unify-cli brings it (on stderr) and returns False."""
    if importlib.util.find_spec(module) is not None:
        return True
    print(f"unify {command}: needs the {module} package: pip install 'unify-cli[{command}]'",
          file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (1 for a runtime failure, 2 for usage or
    settings errors; see :mod:`unify_cli.errors`)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["dns", "list"]:
        # from the state each dns411 node publishes on NATS: no dns411 package needed
        from unify_common.dnslisting import list_command
        return list_command(argv[2:], prog="unify dns list")
    if argv[:1] == ["apps"]:
        if not _extra_installed("apps", "wireline"):
            return EXIT_FAILURE
        from .apps_cmd import main as apps_main  # wireline's apps, keys, releases
        return apps_main(argv[1:])
    if argv[:1] == ["registry"]:
        if not _extra_installed("registry", "registry_admin"):
            return EXIT_FAILURE
        from .registry_cmd import main as registry_main  # registry-admin's ls and gc
        return registry_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "events":
            from . import events_cmd
            settings = CommonSettings.from_env()
            if args.action == "tail":
                try:
                    asyncio.run(events_cmd.tail(settings, subject=args.subject,
                                                as_json=args.json))
                except KeyboardInterrupt:
                    pass
                return 0
            since = events_cmd.parse_time(args.since) if args.since else None
            until = events_cmd.parse_time(args.until) if args.until else None
            asyncio.run(events_cmd.replay(settings, subject=args.subject, since=since,
                                          from_seq=args.from_seq, until=until,
                                          as_json=args.json))
            return 0
        if args.command == "dns":  # only `dns list` exists; reached here with bad words
            print("unify: use `unify dns list [--zone Z] [--source S] [--node N] [--json]`",
                  file=sys.stderr)
            return 2
        if args.command == "images":
            from . import images
            known = images.load_components()
            unknown = [name for name in args.names if name not in known]
            if unknown:
                print(f"unify images build: unknown image {', '.join(unknown)}; known: "
                      f"{', '.join(known)}", file=sys.stderr)
                return EXIT_USAGE
            try:
                client = images.engine_client()
            except images.EngineUnreachable as err:
                print(line("unify images build", err), file=sys.stderr)
                return EXIT_FAILURE
            try:
                images.build_images(args.names or None, base=args.base, prefix=args.prefix,
                                    tag=args.tag, client=client,
                                    log=lambda text: print(text, file=sys.stderr))
            except RuntimeError as err:  # a build failed: its last output lines
                print(line("unify images build", err), file=sys.stderr)
                return EXIT_FAILURE
            return 0
        if args.command == "dev":
            from . import dev
            if args.action == "up":
                return dev.up(workdir=args.workdir, demo=args.demo)
            return dev.demo_from_workdir(args.workdir)
    except ValueError as err:
        print(line("unify", err), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # the reader went away (`unify events replay | head`): stop quietly; point stdout
        # at /dev/null so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ConnectionError as err:  # NATS (or another server) unreachable: a runtime failure
        print(line("unify", err), file=sys.stderr)
        return EXIT_FAILURE
    return 2


if __name__ == "__main__":
    sys.exit(main())
