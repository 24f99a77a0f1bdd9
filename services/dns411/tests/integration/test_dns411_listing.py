"""``unify dns list`` from the state dns411 nodes publish on NATS: real nats-server, Consul
(the Route 53 writer lock), dnsmasq and moto; the CLI runs as a separate process that knows
only ``NATS_URL`` (no dnsmasq file, no AWS variable)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys

import msgspec
import nats
import pytest
from dns411_support import create_zone, managed_settings

from dns411.service import Dns411
from tests.fixtures.catalog import make_instance, put_instance
from unify_common.dnslisting import StateUnavailable, read_states
from unify_common.settings import CommonSettings
from unify_testkit import returns
from unify_testkit.aio import wait_until

WEB = make_instance("web", "web-1", "10.0.0.1", 80, ["dns=example.com"])
API = make_instance("api", "api-1", "10.0.0.2", 80, ["dns=dev.example.com"])
TAKEN = make_instance("taken", "taken-1", "10.0.0.3", 80, ["dns=example.com"])
NOTE = (r"# dns411 on {node}, catalog revision \d+, published \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
        r"\(\d+ s ago\){more}; 2 nodes publish \(--node to choose\)")
ROUTE53_TABLE = [
    "TYPE  NAME               VALUE     TTL  OWNER       ORIGIN   DRIFT",
    "A     hand.example.com   10.7.7.7  300  -           route53  foreign",
    "A     taken.example.com  10.0.0.3  30   -           catalog  missing",
    "A     taken.example.com  10.8.8.8  30   other       route53  foreign",
    "A     web.example.com    10.0.0.1  30   test-owner  route53  in-sync"]


def unify(nats_url: str, *args: str) -> subprocess.CompletedProcess:
    """``unify dns list ARGS`` in a process whose environment holds only PATH and NATS_URL."""
    env = {"PATH": os.environ["PATH"], "NATS_URL": nats_url}
    return subprocess.run([sys.executable, "-m", "unify_cli.main", "dns", "list", *args],
                          env=env, capture_output=True, text=True, timeout=60, cwd="/")


def by_hand(route53, zone_id: str, name: str, rtype: str, ttl: int, *values: str) -> None:
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "CREATE", "ResourceRecordSet": {
            "Name": name, "Type": rtype, "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values]}}]})


@pytest.mark.timeout(120)
async def test_unify_dns_list_reads_each_nodes_published_state(tmp_path, dns_common,
                                                              consul_http_addr, route53):
    top = create_zone(route53, "example.com")
    create_zone(route53, "dev.example.com")
    # drift dns411 leaves alone: a record someone made by hand, a name someone else owns
    by_hand(route53, top, "hand.example.com.", "A", 300, "10.7.7.7")
    by_hand(route53, top, "taken.example.com.", "A", 30, "10.8.8.8")
    by_hand(route53, top, "_dns411-a.taken.example.com.", "TXT", 30,
            '"heritage=unify-dns411,owner=other"')
    url = dns_common.nats_urls[0]
    nc = await nats.connect(url)
    for inst in (WEB, API, TAKEN):
        await put_instance(nc.jetstream(), dns_common, inst)
    await nc.close()

    def common(node: str) -> CommonSettings:
        return CommonSettings(nats_urls=(url,), node=node, consul_addr=consul_http_addr)

    lock = dict(route53_enabled=True, route53_lock=True, lock_key="h3/locks/listing")
    writer = Dns411(managed_settings(tmp_path / "a", **lock), common("edge-a"),
                    route53_client=route53)
    standby = Dns411(managed_settings(tmp_path / "b", dnsmasq_enabled=False, manage=False,
                                      **lock), common("edge-b"), route53_client=route53)
    async with contextlib.AsyncExitStack() as running:
        await writer.start()  # first: it wins the writer lock
        running.push_async_callback(writer.stop)

        async def published(node: str, route53_state: str):
            try:
                states = {s.node: s for s in (await read_states(dns_common))[0]}
            except StateUnavailable as err:  # not yet
                raise AssertionError(str(err)) from None
            assert node in states, sorted(states)
            state = states[node]
            assert (state.route53, len(state.desired)) == (route53_state, 3)
            if route53_state == "on":
                assert [r.drift for z in state.zones for r in z.rows if r.name == "web."
                        "example.com"] == ["in-sync"]

        await wait_until(lambda: published("edge-a", "on"), returns)
        await standby.start()
        running.push_async_callback(standby.stop)
        await wait_until(lambda: published("edge-b", "standby"), returns)

        # the newest state (the standby's) for the desired records
        listed = unify(url)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert re.fullmatch(NOTE.format(node="edge-b", more=""), lines[0]), lines[0]
        assert lines[1:] == [
            "TYPE  NAME                 VALUE     TTL  OWNER       ORIGIN   DRIFT",
            "A     api.dev.example.com  10.0.0.2  30   test-owner  catalog  -",
            "A     taken.example.com    10.0.0.3  30   test-owner  catalog  -",
            "A     web.example.com      10.0.0.1  30   test-owner  catalog  -"]
        # Route 53 from the node that writes it; the hosted zone example.com alone
        listed = unify(url, "--source", "route53", "--zone", "example.com")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert re.fullmatch(NOTE.format(node="edge-a", more=r"; Route 53 listed \d+ s ago"),
                            lines[0]), lines[0]
        assert lines[1:] == ROUTE53_TABLE
        # dnsmasq: what the writer's files hold (dnsmasq knows no owners), as JSON
        listed = unify(url, "--source", "dnsmasq", "--json")
        assert listed.returncode == 0, listed.stderr
        assert re.fullmatch(NOTE.format(node="edge-a", more="") + "\n", listed.stderr)
        assert json.loads(listed.stdout) == [
            {"type": "A", "name": n, "value": v, "ttl": 30, "owner": "test-owner",
             "origin": "dnsmasq", "drift": "in-sync"}
            for n, v in (("api.dev.example.com", "10.0.0.2"), ("taken.example.com", "10.0.0.3"),
                         ("web.example.com", "10.0.0.1"))]
        refused = unify(url, "--source", "dnsmasq", "--node", "edge-b")
        assert (refused.returncode, refused.stdout, refused.stderr) == (
            1, "", "unify dns list: dns411 on node edge-b writes no dnsmasq files\n")

    # both stopped: the last known state is still listed, with its age
    listed = unify(url, "--source", "route53", "--zone", "example.com")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1:] == ROUTE53_TABLE


async def test_a_nats_without_any_dns411_state_says_so(dns_common):
    listed = unify(dns_common.nats_urls[0])
    assert (listed.returncode, listed.stdout, listed.stderr) == (
        1, "", "unify dns list: no dns411 has published its records on this NATS yet (bucket "
        "unify-dns411 does not exist; dns411 creates it after its first reconcile)\n")


async def test_a_corrupt_document_is_skipped_with_a_warning(tmp_path, dns_common, route53):
    """A document that is not dns411's (another writer, a newer format) names its key on
    stderr; the others are listed."""
    settings = managed_settings(tmp_path, dnsmasq_enabled=False, manage=False)
    service = Dns411(settings, dns_common)
    nc = await nats.connect(dns_common.nats_urls[0])
    await put_instance(nc.jetstream(), dns_common, WEB)
    try:
        await service.start()
        try:
            await wait_until(lambda: _assert(service.states_published >= 1), returns)
            kv = await nc.jetstream().key_value("unify-dns411")
            await kv.put("intruder", msgspec.json.encode({"node": "x"}))
        finally:
            await service.stop()
    finally:
        await nc.close()
    listed = unify(dns_common.nats_urls[0], "--json")
    assert listed.returncode == 0, listed.stderr
    warning, note = listed.stderr.splitlines()
    assert warning.startswith("unify dns list: key 'intruder' skipped: not a dns411 state "
                              "document: "), warning
    assert note.startswith("# dns411 on test-node, catalog revision "), note
    assert json.loads(listed.stdout) == [{"type": "A", "name": "web.example.com",
                                          "value": "10.0.0.1", "ttl": 30,
                                          "owner": "test-owner", "origin": "catalog",
                                          "drift": ""}]


def _assert(condition: bool) -> None:
    assert condition


def test_unreachable_nats_gives_one_clear_error_at_once():
    """`unify dns list` with NATS down fails on the first try, with the same hint as the
    events commands (not after a 10 s wait, not with a bare exception name)."""
    result = unify("nats://127.0.0.1:1")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "unify dns list: cannot reach NATS at nats://127.0.0.1:1 (nats: no servers available "
        "for connection); set NATS_URL (for the dev stack: source .unify/dev/env)\n")


def test_dns411_list_subcommand_is_the_same_listing(dns_common):
    env = {"PATH": os.environ["PATH"], "NATS_URL": dns_common.nats_urls[0]}
    listed = subprocess.run([sys.executable, "-m", "dns411", "list", "--source", "route53"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert (listed.returncode, listed.stdout, listed.stderr) == (
        1, "", "unify-dns411 list: no dns411 has published its records on this NATS yet "
        "(bucket unify-dns411 does not exist; dns411 creates it after its first reconcile)\n")
