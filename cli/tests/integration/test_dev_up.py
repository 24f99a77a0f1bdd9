"""`unify dev up --demo` as a newcomer runs it: real processes, the demo answers, Ctrl-C
stops everything."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

from unify_testkit import returns, wait_until


def unify(*args: str) -> subprocess.CompletedProcess:
    """Run ``unify <args>`` to completion (output captured as text)."""
    return subprocess.run([sys.executable, "-m", "unify_cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_dev_up_with_demo_routes_and_resolves_then_stops(tmp_path):
    workdir = tmp_path / "dev"
    proc = subprocess.Popen([sys.executable, "-m", "unify_cli.main", "dev", "up", "--demo",
                             "--workdir", str(workdir)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    output = b""
    try:
        def running() -> None:
            """Read what dev up printed so far (the pipe never blocks the deadline)."""
            nonlocal output
            exited = proc.poll() is not None  # judged after reading what it wrote last
            if select.select([proc.stdout], [], [], 0.5)[0]:
                output += os.read(proc.stdout.fileno(), 65536)
            if exited:
                raise RuntimeError(f"unify dev up exited with {proc.returncode}:\n"
                                   f"{output.decode(errors='replace')}")
            assert b"Ctrl-C stops everything" in output, output.decode(errors="replace")

        wait_until(running, returns, timeout=120, interval=0.05,
                   what="unify dev up --demo printing 'running; Ctrl-C stops everything'")
        text = output.decode()
        lines = text.splitlines()
        assert "unify dev: running; Ctrl-C stops everything." in text, text
        assert "→  hello from hello-1" in text
        assert "    hello.unify.test. 30 IN CNAME haproxy.unify.test." in text
        assert "    haproxy.unify.test. 30 IN A 127.0.0.1" in text
        assert "    api.unify.test. 30 IN A 127.0.0.1" in text
        for name in ("consul", "nats", "route53 (moto)", "haproxy", "dnsmasq",
                     "consul-bridge", "switchboard", "dns411"):
            assert any(line.startswith(f"  {name} ") for line in lines), name
        assert (workdir / "env").read_text().count("export ") >= 5
        # a second demo on the same stack would take over hello-1 and api-1, then remove
        # them when it stops: refused
        second = unify("dev", "demo", "--workdir", str(workdir))
        assert (second.returncode, second.stdout) == (1, "")
        assert second.stderr == (
            f"unify dev demo: the demo already runs on the stack in {workdir} (started by "
            "`unify dev up --demo` or another `unify dev demo`); nothing to do\n")
        # a second stack in the same directory would wipe this one's files: refused
        env_before = (workdir / "env").read_text()
        third = unify("dev", "up", "--workdir", str(workdir))
        assert (third.returncode, third.stdout) == (1, "")
        assert third.stderr == (
            f"unify dev: another `unify dev up` runs in {workdir}; stop it first (Ctrl-C in "
            "its shell) or give this one another --workdir\n")
        assert (workdir / "env").read_text() == env_before
        assert (workdir / "dev.json").exists() and (workdir / "nats").is_dir()
        # a service of the stack that ends is reported once (the rest keeps running)
        dns411 = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "[-]m dns411$"],
                                capture_output=True, text=True, timeout=10).stdout.split()
        assert len(dns411) == 1, dns411
        os.kill(int(dns411[0]), signal.SIGTERM)
        told = (f"unify dev: dns411 exited (status 0); the rest keeps running; see "
                f"{workdir / 'logs' / 'dns411.log'}")

        def reported() -> None:
            nonlocal output
            if select.select([proc.stdout], [], [], 0.5)[0]:
                output += os.read(proc.stdout.fileno(), 65536)
            assert told in output.decode(errors="replace").splitlines()
        wait_until(reported, returns, timeout=30, what="dev up reporting dns411's exit")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    assert "unify dev: stopping ..." in rest
    assert rest.rstrip().endswith("unify dev: stopped.")
    # the addresses of the stopped stack are not left for other shells to source
    assert not (workdir / "env").exists() and not (workdir / "dev.json").exists()
    # every process of the stack is gone
    leftovers = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    assert leftovers.stdout == ""
