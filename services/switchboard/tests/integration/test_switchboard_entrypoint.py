"""``python -m switchboard`` with ``UNIFY_HAPROXY_MANAGE=1``: starts and supervises its own
HAProxy from the environment settings, routes, and stops HAProxy when it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from sb_support import get_body

from switchboard.procinfo import parse_show_proc
from tests.fixtures.catalog import make_instance, put_instance
from unify_testkit import NOT_YET
from unify_testkit import wait_until as wait_until_blocking
from unify_testkit.aio import wait_until
from unify_testkit.devstack.haproxy import master_cli
from unify_testkit.devstack.process import free_port


async def test_module_entry_point_manages_haproxy(sb_common, nc, backends, run_dir, tmp_path):
    port = free_port()
    alpha = backends("alpha")
    await put_instance(nc.jetstream(), sb_common, make_instance(
        "web", "web-1", "127.0.0.1", alpha.port, ["dns=example.com", "vhost=web",
                                                   f"http={port}"]))
    env = dict(os.environ, NATS_URL=sb_common.nats_urls[0], UNIFY_NODE="entry-node",
               UNIFY_HAPROXY_CONFIG=str(run_dir / "haproxy.cfg"),
               UNIFY_HAPROXY_MASTER_SOCKET=str(run_dir / "master.sock"),
               UNIFY_HAPROXY_BIN="haproxy", UNIFY_HAPROXY_BIND="127.0.0.1",
               UNIFY_HAPROXY_MANAGE="1", UNIFY_HAPROXY_MAXCONN="1000",
               UNIFY_HAPROXY_CERT_DIR=str(tmp_path / "no-certs"))
    log = open(tmp_path / "switchboard.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "switchboard"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        async def served() -> bool:
            try:
                return await get_body(port, "web.example.com") == (200, "alpha")
            except Exception:
                return False

        await wait_until(served, timeout=30, what="switchboard-managed HAProxy serving")
        info = _show_proc(run_dir)  # the master may be re-executing for a reload
        assert len(info.workers) == 1
        master_pid = info.master
        # HAProxy dying is noticed and it is started again with the same configuration.
        os.kill(master_pid, signal.SIGTERM)
        await wait_until(lambda: _new_master(run_dir, master_pid), timeout=30,
                         what="HAProxy started again")
        await wait_until(served, timeout=30, what="serving again after the restart")
        master_pid = _show_proc(run_dir).master
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        log.close()
    # HAProxy went away with switchboard.
    await wait_until(lambda: not _alive(master_pid), timeout=10, what="HAProxy stopped")


def _show_proc(run_dir):
    """``show proc`` through the master CLI once it lists one worker, retried while the
    master re-executes (refused, or an answer that does not parse yet)."""
    return wait_until_blocking(
        lambda: parse_show_proc(master_cli(run_dir / "master.sock", "show proc")),
        lambda info: len(info.workers) == 1, timeout=10, retry_on=(*NOT_YET, ValueError),
        what="HAProxy's master listing one worker")


def _new_master(run_dir, old: int) -> bool:
    try:
        return parse_show_proc(master_cli(run_dir / "master.sock", "show proc")).master != old
    except (OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
