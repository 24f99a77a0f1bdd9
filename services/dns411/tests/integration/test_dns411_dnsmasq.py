"""The dnsmasq sink against a real dnsmasq: validation, reload vs restart, pid-file mode,
``.consul`` forwarding, TTL."""

from __future__ import annotations

import time

import pytest
from dns411_support import Collected, both, managed_settings, state

from dns411.apply.dnsmasq import DnsmasqConfigError, DnsmasqSink
from dns411.apply.dnsmasq_process import ManagedDnsmasq, PidFileDnsmasq
from dns411.reconciler import ApplyFailed, Reconciler
from tests.fixtures.catalog import make_instance
from unify_testkit import returns
from unify_testkit.aio import wait_until
from unify_testkit.devstack.dnsmasq import Dnsmasq

WEB = make_instance("web", "web-1", "10.0.0.1", 80, ["dns=example.com"])
WEB2 = make_instance("web", "web-2", "10.0.0.2", 80, ["dns=example.com"], node="n2")
SHOP = make_instance("shop", "shop-1", "10.0.1.1", 80, ["dns=example.com", "vhost=shop"])
HAPROXY = make_instance("haproxy", "hp-1", "10.0.9.1", 80, ["dns=example.com"])


def answers(port, name, rows):
    """dnsmasq answers ``rows`` for ``name`` (SIGHUP is asynchronous: callers wait)."""
    assert both(port, name) == ("NOERROR", rows)




@pytest.fixture
def managed(tmp_path):
    settings = managed_settings(tmp_path)
    control = ManagedDnsmasq(settings)
    publish = Collected()
    reconciler = Reconciler(settings, node="n1", dnsmasq=DnsmasqSink(settings, control),
                            publish=publish)
    yield settings, control, reconciler, publish
    control.stop()


async def test_hosts_change_reloads_conf_change_restarts(managed):
    settings, control, reconciler, publish = managed
    await reconciler(state(WEB))
    first_pid = control.pid
    assert both(settings.port, "web.example.com") == (
        "NOERROR", [("web.example.com.", "A", 30, "10.0.0.1")])

    await reconciler(state(WEB, WEB2))  # hosts only: SIGHUP, same process
    assert control.pid == first_pid
    await wait_until(lambda: answers(settings.port, "web.example.com", [
        ("web.example.com.", "A", 30, "10.0.0.1"), ("web.example.com.", "A", 30, "10.0.0.2")]), returns)

    await reconciler(state(WEB, WEB2, SHOP, HAPROXY))  # new cname= line: restart
    assert control.pid != first_pid
    assert both(settings.port, "shop.example.com") == ("NOERROR", [
        ("haproxy.example.com.", "A", 30, "10.0.9.1"),
        ("shop.example.com.", "CNAME", 30, "haproxy.example.com.")])
    assert [e.detail for _, e in publish.events] == [
        "dnsmasq=restart route53_changes=0", "dnsmasq=reload route53_changes=0",
        "dnsmasq=restart route53_changes=0"]

    pid = control.pid
    await reconciler(state(WEB, WEB2, SHOP, HAPROXY))  # same state: nothing touched
    assert control.pid == pid
    assert publish.events[-1][1].method == "unchanged"
    # again (a quiet tick): the same "unchanged" is not reported twice in a row
    await reconciler(state(WEB, WEB2, SHOP, HAPROXY))
    assert [e.method for _, e in publish.events] == ["reload", "reload", "reload",
                                                     "unchanged"]


async def test_failed_validation_keeps_old_files_and_reports(managed):
    settings, control, reconciler, publish = managed
    await reconciler(state(WEB))
    hosts_before = settings.hosts_path.read_bytes()
    conf_before = settings.conf_path.read_bytes()
    # an operator's broken file in the shared conf-dir makes every candidate fail the check
    (settings.conf_dir / "operator.conf").write_text("no-such-option=1\n")

    with pytest.raises(ApplyFailed, match="dnsmasq config check"):
        await reconciler(state(WEB, SHOP, HAPROXY))
    assert settings.hosts_path.read_bytes() == hosts_before
    assert settings.conf_path.read_bytes() == conf_before
    errors = [e for s, e in publish.events if s == "unify.error.dns411"]
    assert [e.reason for e in errors] == ["config-check-failed"]
    assert "bad option at line 1 of operator.conf" in errors[0].message
    # the running dnsmasq still serves the last good state
    assert both(settings.port, "web.example.com") == (
        "NOERROR", [("web.example.com.", "A", 30, "10.0.0.1")])

    (settings.conf_dir / "operator.conf").unlink()
    await reconciler(state(WEB, SHOP, HAPROXY))
    assert both(settings.port, "shop.example.com")[0] == "NOERROR"


def test_validate_rejects_what_dnsmasq_rejects(tmp_path):
    settings = managed_settings(tmp_path)
    sink = DnsmasqSink(settings, ManagedDnsmasq(settings))
    sink.validate(b"10.0.0.1 a.example.com\n", b"cname=b.example.com,a.example.com\n")
    with pytest.raises(DnsmasqConfigError) as caught:
        sink.validate(b"", b"cname=\n")
    assert str(caught.value) == "dnsmasq --test failed: dnsmasq: bad CNAME at line 1 of dns411.conf"


async def test_pid_file_mode_signals_external_dnsmasq(tmp_path):
    server = Dnsmasq(tmp_path / "external").start()
    try:
        settings = managed_settings(tmp_path, manage=False, hosts_path=server.hosts_path,
                                    conf_dir=server.conf_dir, pid_file=server.pid_path,
                                    port=server.port)
        publish = Collected()
        reconciler = Reconciler(settings, node="n1", publish=publish,
                                dnsmasq=DnsmasqSink(settings, PidFileDnsmasq(server.pid_path)))
        pid = server.process.pid
        # first apply writes the conf file: no restart command -> hosts re-read, restart asked
        await reconciler(state(WEB))
        # hosts re-read; local-ttl=30 from the conf file waits for the restart (TTL 0 now)
        await wait_until(lambda: answers(settings.port, "web.example.com", [
            ("web.example.com.", "A", 0, "10.0.0.1")]), returns)
        assert [(e.reason, e.message) for s, e in publish.events if s.startswith("unify.error")] \
            == [("restart-needed", "dnsmasq conf changed but UNIFY_DNSMASQ_RESTART_CMD is not "
                 "set; hosts were re-read, restart dnsmasq for the conf file")]
        await reconciler(state(WEB, WEB2))  # hosts only: SIGHUP
        await wait_until(lambda: answers(settings.port, "web.example.com", [
            ("web.example.com.", "A", 0, "10.0.0.1"), ("web.example.com.", "A", 0, "10.0.0.2")]), returns)
        assert server.process.pid == pid
        server.restart()  # the operator restarts: the conf file now counts
        assert both(settings.port, "web.example.com")[1][0] == (
            "web.example.com.", "A", 30, "10.0.0.1")
    finally:
        server.stop()


async def test_hosts_only_change_needs_no_check_conf_change_does(managed):
    """``dnsmasq --test`` never reads addn-hosts files and SIGHUP reads no conf file, so a
    hosts-only change is applied without the check even while another conf file in the
    conf-dir is broken; a conf change is still refused then."""
    settings, control, reconciler, publish = managed
    await reconciler(state(WEB))
    (settings.conf_dir / "operator.conf").write_text("no-such-option=1\n")
    sink = reconciler.dnsmasq
    with pytest.raises(DnsmasqConfigError):
        sink.validate(settings.hosts_path.read_bytes(), settings.conf_path.read_bytes())

    result = sink.apply(*reconciler.render(reconciler.desired(state(WEB, WEB2))))
    assert (result.method, result.did_write, sorted(result.steps_ms)) == (
        "reload", True, ["signal", "validate", "write"])
    await wait_until(lambda: answers(settings.port, "web.example.com", [
        ("web.example.com.", "A", 30, "10.0.0.1"), ("web.example.com.", "A", 30, "10.0.0.2")]), returns)

    conf_before = settings.conf_path.read_bytes()
    with pytest.raises(DnsmasqConfigError, match="bad option at line 1 of operator.conf"):
        sink.apply(*reconciler.render(reconciler.desired(state(WEB, WEB2, SHOP, HAPROXY))))
    assert settings.conf_path.read_bytes() == conf_before


def test_answers_is_refused_at_once_on_a_closed_port(tmp_path):
    """The readiness probe uses a connected UDP socket: with nothing bound, the kernel's
    port-unreachable ends it at once instead of after its timeout."""
    settings = managed_settings(tmp_path)
    settings.conf_dir.mkdir(parents=True)
    control = ManagedDnsmasq(settings)
    started = time.monotonic()
    assert control.answers(timeout=5.0) is False
    assert time.monotonic() - started < 1.0
    control.start()
    try:
        assert control.answers() is True
    finally:
        control.stop()
    assert control.answers() is False


async def test_bad_hosts_candidate_keeps_the_old_files(managed):
    settings, control, reconciler, publish = managed
    await reconciler(state(WEB))
    hosts_before = settings.hosts_path.read_bytes()
    pid = control.pid
    with pytest.raises(DnsmasqConfigError) as caught:
        reconciler.dnsmasq.apply(hosts_before + b"10.0.0.9\n", settings.conf_path.read_bytes())
    assert str(caught.value) == "hosts file line 3 is not '<address> <name>': '10.0.0.9'"
    assert settings.hosts_path.read_bytes() == hosts_before
    assert control.pid == pid
    assert both(settings.port, "web.example.com") == (
        "NOERROR", [("web.example.com.", "A", 30, "10.0.0.1")])
