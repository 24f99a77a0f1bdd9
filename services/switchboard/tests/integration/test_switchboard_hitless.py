"""Hitless reloads: keep-alive clients see no failed request while HAProxy reloads 50 times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fixtures.catalog import delete_instance, make_instance, put_instance
from unify_testkit.aio import wait_until
from unify_testkit.devstack.process import free_port

CLIENTS = 20
RELOADS = 50


async def test_keep_alive_clients_survive_reloads(
        sb_common, nc, haproxy, backends, events, switchboard_factory):
    js = nc.jetstream()
    port = free_port()
    web = backends("web")
    await put_instance(js, sb_common, make_instance(
        "web", "web-1", "127.0.0.1", web.port, ["dns=example.com", "vhost=web",
                                                 f"http={port}"], create_index=1))
    await switchboard_factory()
    await wait_until(lambda: [e.method for e in events.applied] == ["reload"],
                     what="first reload")

    clients = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("sb_keepalive_clients.py")), str(port),
         "web.example.com", str(CLIENTS), "web"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    # Each step adds or removes a frontend (a structural change): one reload each.
    flap = make_instance("flap", "flap-1", "127.0.0.1", web.port,
                         ["dns=example.com", "vhost=flap", f"http={free_port()}"],
                         create_index=2)
    try:
        for step in range(RELOADS):
            count = len(events.applied) + 1
            if step % 2 == 0:
                await put_instance(js, sb_common, flap)
            else:
                await delete_instance(js, sb_common, flap)
            await wait_until(lambda count=count: len(events.applied) >= count, timeout=30,
                             what=f"reload {step + 1}")
    finally:
        output, _ = clients.communicate("stop\n", timeout=60)
    results = json.loads(output)
    reloads = [e.method for e in events.applied].count("reload")
    assert reloads == RELOADS + 1
    assert results["failed"] == []
    assert results["ok"] > CLIENTS * RELOADS
    print(f"keep-alive requests: {results['ok']} ok, none failed, none resent")
