"""Replacing a dns411 container again and again (each time a new host name, as Swarm gives a
new task) leaves the NATS server with exactly the consumers it had: the subscriber follows
the catalog bucket through an ephemeral watch it deletes when it stops, and keeps nothing
per node on the server."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys

import nats
import pytest

from tests.fixtures.catalog import make_instance, put_instance
from unify_common.events import Applied, decode_event
from unify_testkit import returns
from unify_testkit.aio import wait_until

RESTARTS = 20


async def consumer_counts(js) -> tuple[int, dict[str, int]]:
    """(the account's consumer count, consumers by stream) as the server reports them."""
    account = await js.account_info()
    # (the state bucket dns411 writes after its first reconcile is left out: never consumed)
    return account.consumers, {s.config.name: s.state.consumer_count
                               for s in await js.streams_info()
                               if s.config.name != "KV_unify-dns411"}


@pytest.mark.timeout(240)
async def test_twenty_restarts_leave_the_consumer_count_unchanged(tmp_path, dns_common):
    nc = await nats.connect(dns_common.nats_urls[0])
    js = nc.jetstream()
    await put_instance(js, dns_common, make_instance("web", "web-1", "10.0.0.1", 8080,
                                                     ["dns=example.com"]))
    applied: list[str] = []  # the nodes that reported their first apply

    async def collect(msg) -> None:
        event = decode_event(msg.data)
        if isinstance(event, Applied):
            applied.append(event.node)

    await nc.subscribe("unify.applied.dns411.>", cb=collect)
    before = await consumer_counts(js)
    assert before == (0, {"UNIFY": 0, "KV_unify-catalog": 0})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "UNIFY_"))}
    env.update({"NATS_URL": dns_common.nats_urls[0], "UNIFY_DNSMASQ_ENABLED": "0",
                "UNIFY_ROUTE53_ENABLED": "0", "UNIFY_HEALTH_ADDR": "127.0.0.1:0"})
    try:
        for n in range(RESTARTS):
            node = secrets.token_hex(6)  # a container's host name: new on every replacement
            log_path = tmp_path / f"dns411-{n}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "dns411"],
                                        env={**env, "UNIFY_NODE": node}, stdout=log,
                                        stderr=subprocess.STDOUT)
            try:
                def reported(proc=proc, node=node, log_path=log_path) -> None:
                    if proc.poll() is not None:
                        raise RuntimeError(f"dns411 exited with {proc.returncode}:\n"
                                           f"{log_path.read_text()[-2000:]}")
                    assert node in applied, log_path.read_text()[-2000:]

                await wait_until(reported, returns, timeout=20,
                                 what=f"dns411 {node}'s first reconcile's Applied")
                # while it runs: its one bucket watch, nothing else
                assert await consumer_counts(js) == (1, {"UNIFY": 0, "KV_unify-catalog": 1})
            finally:
                proc.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(proc.wait, 20)
            assert code == 0, log_path.read_text()[-2000:]
            assert await consumer_counts(js) == before
        assert len(set(applied)) == RESTARTS
    finally:
        await nc.close()
