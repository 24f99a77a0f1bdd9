"""switchboard's verdicts reach dns411: a vhost switchboard rejects gets no CNAME, and gets it
back once switchboard accepts it. Real nats-server, HAProxy (switchboard's master), dnsmasq
(dns411's child); the catalog written into NATS as consul-bridge does."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import msgspec
import nats
import pytest
from dns411_support import both, managed_settings
from nats.js.errors import NotFoundError

from dns411.service import Dns411
from switchboard.render import RenderOptions
from switchboard.service import SwitchboardService
from switchboard.settings import SwitchboardSettings
from tests.fixtures.catalog import make_instance, put_instance
from unify_common.events import decode_event
from unify_common.listeners import VerdictDocument, VhostVerdict
from unify_testkit import returns
from unify_testkit.aio import wait_until
from unify_testkit.devstack.haproxy import HAProxyServer
from unify_testkit.devstack.process import free_port

BUCKET = "h2-test-verdicts"
HEADER = "# Written by dns411 from the Unify catalog; edits are overwritten.\n"


@pytest.fixture
def haproxy_dir():
    path = Path(tempfile.mkdtemp(prefix="h2v-", dir="/tmp"))  # short: socket paths
    server = HAProxyServer(path, config=path / "haproxy.cfg").start()
    yield path
    server.stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(120)
async def test_a_rejected_vhost_has_no_cname_until_switchboard_accepts_it(
        tmp_path, dns_common, haproxy_dir):
    http_port, https_port = free_port(), free_port()
    haproxy = make_instance("haproxy", "hp-1", "127.0.0.1", 80, ["dns=example.com"])
    web = make_instance("web", "web-1", "127.0.0.1", 8080,
                        ["dns=example.com", "vhost=web", f"http={http_port}", "check=disabled"],
                        create_index=5)
    # https with no certificate at all (no cert dir): switchboard skips the route
    shop = make_instance("shop", "shop-1", "127.0.0.1", 8081,
                         ["dns=example.com", "vhost=shop", f"https={https_port}",
                          "check=disabled"], create_index=6)
    nc = await nats.connect(dns_common.nats_urls[0])
    errors = []

    async def collect(msg):
        errors.append(decode_event(msg.data))

    await nc.subscribe("unify.error.dns411", cb=collect)
    js = nc.jetstream()
    for inst in (haproxy, web, shop):
        await put_instance(js, dns_common, inst)

    switchboard = SwitchboardService(SwitchboardSettings(
        common=dns_common, config_path=haproxy_dir / "haproxy.cfg",
        master_socket=haproxy_dir / "master.sock", verdict_bucket=BUCKET,
        render=RenderOptions(bind="127.0.0.1", run_dir=str(haproxy_dir))))
    settings = managed_settings(tmp_path, verdict_bucket=BUCKET,
                                local_domains=("example.com",))
    dns411 = Dns411(settings, dns_common)
    await switchboard.start()
    await dns411.start()
    try:
        rejected = VhostVerdict(False, "missing-certificate", "no certificate covers "
                                "shop.example.com; https route skipped", "shop")

        async def document(expected):
            try:
                entry = await (await js.key_value(BUCKET)).get("test-node")
            except NotFoundError:  # not written yet (KeyNotFound, BucketNotFound)
                raise AssertionError("no verdict document yet") from None
            doc = msgspec.json.decode(entry.value, type=VerdictDocument)
            assert (doc.node, doc.vhosts) == ("test-node", expected)

        await wait_until(lambda: document({"shop.example.com": rejected,
                                           "web.example.com": VhostVerdict(True)}), returns)

        def without_shop():
            assert settings.conf_path.read_text() == (
                f"{HEADER}local-ttl=30\nlocal=/example.com/\n"
                "cname=web.example.com,haproxy.example.com,30\n")
        await wait_until(without_shop, returns)
        assert settings.hosts_path.read_text() == f"{HEADER}127.0.0.1 haproxy.example.com\n"

        def answers_without_shop():  # dnsmasq restarts after the file is written
            assert both(settings.port, "shop.example.com") == ("NXDOMAIN", [])
            assert both(settings.port, "web.example.com") == ("NOERROR", [
                ("haproxy.example.com.", "A", 30, "127.0.0.1"),
                ("web.example.com.", "CNAME", 30, "haproxy.example.com.")])
        await wait_until(answers_without_shop, returns)

        withheld = ("dns411", "vhost-rejected", "shop.example.com gets no CNAME: switchboard "
                    "on test-node rejects it (missing-certificate: no certificate covers "
                    "shop.example.com; https route skipped)", "shop", "", "test-node")

        def reported(count):
            assert [(e.source, e.reason, e.message, e.service, e.instance_id, e.node)
                    for e in errors] == [withheld] * count
        await wait_until(lambda: reported(1), returns)

        # a dns411 starting now reads the verdicts before its first reconcile: the rejected
        # name is never published, not even for a moment
        fresh_settings = managed_settings(tmp_path / "fresh", verdict_bucket=BUCKET,
                                          local_domains=("example.com",))
        fresh = Dns411(fresh_settings, dns_common)
        await fresh.start()
        try:
            await wait_until(lambda: _reconciled(fresh), returns)
            assert fresh_settings.conf_path.read_text() == (
                f"{HEADER}local-ttl=30\nlocal=/example.com/\n"
                "cname=web.example.com,haproxy.example.com,30\n")
            await wait_until(lambda: reported(2), returns)  # the new process reports it once too
        finally:
            await asyncio.wait_for(fresh.stop(), 20)

        # fixed: shop serves plain HTTP beside web; switchboard accepts, the CNAME comes back
        fixed = make_instance("shop", "shop-1", "127.0.0.1", 8081,
                              ["dns=example.com", "vhost=shop", f"http={http_port}",
                               "check=disabled"], create_index=6)
        await put_instance(js, dns_common, fixed)
        await wait_until(lambda: document({"shop.example.com": VhostVerdict(True),
                                           "web.example.com": VhostVerdict(True)}), returns)

        def with_shop():
            assert settings.conf_path.read_text() == (
                f"{HEADER}local-ttl=30\nlocal=/example.com/\n"
                "cname=shop.example.com,haproxy.example.com,30\n"
                "cname=web.example.com,haproxy.example.com,30\n")
        await wait_until(with_shop, returns)
        await wait_until(lambda: assert_shop_answers(settings.port), returns)
        reported(2)  # each process reported the rejection once, nothing since

        # a new vhost switchboard rejects, registered while both run: dns411 reconciles it
        # before switchboard has applied it, and must not publish its CNAME even for a moment
        # (it waits for the verdict); a new accepted vhost after it is the sentinel
        applied: list[str] = []

        async def on_applied(msg):
            applied.append(decode_event(msg.data).method)

        await nc.subscribe("unify.applied.dns411.>", cb=on_applied)
        await nc.flush()
        cart = make_instance("cart", "cart-1", "127.0.0.1", 8082,
                             ["dns=example.com", "vhost=cart", f"https={https_port}",
                              "check=disabled"], create_index=7)
        await put_instance(js, dns_common, cart)
        cart_withheld = ("dns411", "vhost-rejected", "cart.example.com gets no CNAME: "
                         "switchboard on test-node rejects it (missing-certificate: no "
                         "certificate covers cart.example.com; https route skipped)", "cart",
                         "", "test-node")

        def cart_reported():
            assert [(e.source, e.reason, e.message, e.service, e.instance_id, e.node)
                    for e in errors][2:] == [cart_withheld]
        await wait_until(cart_reported, returns)
        blog = make_instance("blog", "blog-1", "127.0.0.1", 8083,
                             ["dns=example.com", "vhost=blog", f"http={http_port}",
                              "check=disabled"], create_index=8)
        await put_instance(js, dns_common, blog)

        def with_blog():
            assert settings.conf_path.read_text() == (
                f"{HEADER}local-ttl=30\nlocal=/example.com/\n"
                "cname=blog.example.com,haproxy.example.com,30\n"
                "cname=shop.example.com,haproxy.example.com,30\n"
                "cname=web.example.com,haproxy.example.com,30\n")
        await wait_until(with_blog, returns)
        # only blog changed what dnsmasq serves (cart added then taken back would be two more)
        await wait_until(lambda: [m for m in applied if m != "unchanged"], what="blog applied")
        assert [m for m in applied if m != "unchanged"] == ["reload"]
    finally:
        await asyncio.wait_for(dns411.stop(), 20)
        await asyncio.wait_for(switchboard.stop(), 20)
        await nc.close()


def _reconciled(service: Dns411) -> None:
    assert service.subscriber.reconciles >= 1


def assert_shop_answers(port: int) -> None:
    assert both(port, "shop.example.com") == ("NOERROR", [
        ("haproxy.example.com.", "A", 30, "127.0.0.1"),
        ("shop.example.com.", "CNAME", 30, "haproxy.example.com.")])
