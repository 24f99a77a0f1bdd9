"""``unify dev up`` and ``unify dev demo``.

The stack's launchers live in the test kit (:mod:`unify_testkit.devstack`), which the CLI
needs only for these commands: ``pip install 'unify-cli[dev]'`` (``scripts/setup.sh`` installs
it). Without it, ``unify dev`` says so and exits with status 1.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

try:
    from unify_testkit.devstack.process import ManagedProcess, free_port, tcp_open
    from unify_testkit.devstack.stack import DevStack, StackBusy, consul_put
except ModuleNotFoundError as missing:  # the [dev] extra is not installed
    if missing.name not in ("unify_testkit", "dns"):
        raise
    raise SystemExit(f"unify dev: needs the development extra ({missing.name} is missing): "
                     "pip install 'unify-cli[dev]'") from None

__all__ = ["Demo", "demo_from_workdir", "up"]


class Demo:
    """Example services on a running stack: a real HTTP backend exposed as the vhost
    ``hello.<domain>`` on HAProxy's ``http_port``, and ``api.<domain>`` as a plain A record.

    :param state: the stack's ``dev.json`` content.
    :param workdir: where the backend's log goes.
    """

    def __init__(self, state: dict, workdir: Path) -> None:
        self.state = state
        self.workdir = workdir
        self.backend: ManagedProcess | None = None

    def running(self) -> bool:
        """Whether the demo's services are already registered on this stack (by ``dev up
        --demo`` or another ``dev demo``)."""
        addr = self.state["CONSUL_HTTP_ADDR"]
        try:
            with urllib.request.urlopen(f"http://{addr}/v1/agent/service/hello-1",
                                        timeout=5):
                return True
        except OSError:  # 404 (HTTPError is an OSError) or no agent: not registered
            return False

    def start(self) -> None:
        """Start the backend and register both services in Consul."""
        port = free_port()
        self.backend = ManagedProcess(
            "demo-backend", [sys.executable, "-m", "unify_testkit.demo_backend", "--port",
                             str(port), "--name", "hello-1"],
            log_path=self.workdir / "logs" / "demo-backend.log")
        self.backend.start(lambda: tcp_open("127.0.0.1", port))
        domain, addr = self.state["domain"], self.state["CONSUL_HTTP_ADDR"]
        consul_put(addr, "/v1/agent/service/register", {
            "ID": "hello-1", "Name": "hello", "Address": "127.0.0.1", "Port": port,
            "Tags": [f"dns={domain}", "vhost=hello", f"http={self.state['http_port']}"],
            "Check": {"HTTP": f"http://127.0.0.1:{port}/", "Interval": "2s"}})
        consul_put(addr, "/v1/agent/service/register", {
            "ID": "api-1", "Name": "api", "Address": "127.0.0.1", "Port": port,
            "Tags": [f"dns={domain}"]})

    def wait_and_show(self, *, timeout: float = 30.0) -> bool:
        """Wait until HAProxy routes ``hello`` and dnsmasq answers; print what was seen.

        :returns: True when both answered within ``timeout`` seconds.
        """
        import dns.resolver

        domain, http_port = self.state["domain"], self.state["http_port"]
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.state["dns_port"]
        started = time.monotonic()
        body: str | None = None
        answers: tuple[str, ...] | None = None  # hello's A, api's A, then hello's whole answer
        while time.monotonic() - started < timeout and (body is None or answers is None):
            if body is None:
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/",
                                                 headers={"Host": f"hello.{domain}"})
                    with urllib.request.urlopen(req, timeout=1) as resp:
                        body = resp.read().decode().strip()
                        http_s = time.monotonic() - started
                except OSError:
                    pass
            if answers is None:
                try:
                    hello = resolver.resolve(f"hello.{domain}", "A", lifetime=1)
                    api = resolver.resolve(f"api.{domain}", "A", lifetime=1)
                    if hello.rrset is None or api.rrset is None:
                        raise LookupError("no answer yet")
                    answers = (hello.rrset.to_text(), api.rrset.to_text())
                    for rrset in hello.response.answer:
                        answers = (*answers, rrset.to_text())
                    dns_s = time.monotonic() - started
                except Exception:
                    pass
            time.sleep(0.1)
        if body is None or answers is None:
            print("demo: not served within the timeout; see the logs in "
                  f"{self.workdir / 'logs'}", file=sys.stderr)
            return False
        print(f"\nHAProxy routed hello.{domain} after {http_s:.2f}s:")
        print(f"  curl -H 'Host: hello.{domain}' http://127.0.0.1:{http_port}/  →  {body}")
        print(f"dnsmasq answered after {dns_s:.2f}s:")
        print(f"  dig @127.0.0.1 -p {self.state['dns_port']} hello.{domain}")
        for line in answers[2:]:
            print(f"    {line}")
        print(f"  dig @127.0.0.1 -p {self.state['dns_port']} api.{domain}")
        print(f"    {answers[1]}")
        return True

    def stop(self) -> None:
        """Deregister the demo services and stop the backend."""
        addr = self.state["CONSUL_HTTP_ADDR"]
        for service_id in ("hello-1", "api-1"):
            try:
                consul_put(addr, f"/v1/agent/service/deregister/{service_id}", {})
            except OSError:
                pass
        if self.backend:
            self.backend.stop()


def _interrupt_event() -> threading.Event:
    """An event set by Ctrl-C (SIGINT), SIGTERM or SIGHUP (the terminal closed); installed
    before anything is printed, so an early Ctrl-C still stops everything cleanly. (SIGKILL
    cannot be caught: the stack's processes then stop by themselves, see
    :func:`~unify_testkit.devstack.process.die_with_parent`.)"""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _say(text: str) -> None:
    """Print a progress line; a terminal that is gone (EIO after a hang-up) must not keep
    the stack from stopping."""
    try:
        print(text, flush=True)
    except OSError:
        pass


def up(*, workdir: str, demo: bool) -> int:
    """Start the stack (and the demo), print where each part listens, stop on Ctrl-C."""
    stop = _interrupt_event()
    stack = DevStack(Path(workdir).absolute())
    try:
        stack.claim()
    except StackBusy as err:  # before anything of the running stack is touched
        print(f"unify dev: {err}", file=sys.stderr)
        return 1
    print(f"unify dev: starting the stack in {stack.workdir} ...", flush=True)
    the_demo = None
    try:
        stack.start()
        print("\n  component       where")
        for name, where in stack.describe():
            print(f"  {name:<15} {where}")
        print(f"\n  other shells: source {stack.workdir / 'env'}")
        running = "unify dev: running; Ctrl-C stops everything."
        if demo:
            the_demo = Demo(json.loads((stack.workdir / "dev.json").read_text()),
                            stack.workdir)
            return _serve_demo(the_demo, running, stop, stack)
        print(f"\n{running}", flush=True)
        _watch(stack, stop)
        return 0
    finally:
        _say("unify dev: stopping ...")
        if the_demo:
            the_demo.stop()
        stack.stop()
        for name in ("env", "dev.json"):  # their addresses are gone
            (stack.workdir / name).unlink(missing_ok=True)
        _say("unify dev: stopped.")


def demo_from_workdir(workdir: str) -> int:
    """``unify dev demo``: register the demo on the stack of a running ``unify dev up``."""
    stop = _interrupt_event()
    path = Path(workdir).absolute()
    try:
        state = json.loads((path / "dev.json").read_text())
    except FileNotFoundError:
        print(f"unify dev demo: no running stack in {path} (start `unify dev up` first)",
              file=sys.stderr)
        return 1
    the_demo = Demo(state, path)
    if the_demo.running():
        print(f"unify dev demo: the demo already runs on the stack in {path} (started by "
              "`unify dev up --demo` or another `unify dev demo`); nothing to do",
              file=sys.stderr)
        return 1
    try:
        return _serve_demo(the_demo, "unify dev demo: running; Ctrl-C removes the demo "
                                     "services.", stop)
    finally:
        the_demo.stop()


def _serve_demo(the_demo: Demo, running: str, stop: threading.Event,
                stack: DevStack | None = None) -> int:
    """Start the demo, show that it answers, then wait for Ctrl-C; 1 when it never answered.
    The caller stops the demo."""
    the_demo.start()
    if not the_demo.wait_and_show():
        return 1
    print(f"\n{running}", flush=True)
    _watch(stack, stop)
    return 0


def _watch(stack: DevStack | None, stop: threading.Event, every: float = 1.0) -> None:
    """Wait for Ctrl-C; meanwhile say once on stderr when a service of ``stack`` exits (the
    rest keeps running, so its log can be read)."""
    told: set[str] = set()
    while not stop.wait(every):
        if stack is None:
            continue
        for name, status in stack.exited():
            if name not in told:
                told.add(name)
                print(f"unify dev: {name} exited (status {status}); the rest keeps running; "
                      f"see {stack.workdir / 'logs' / (name + '.log')}",
                      file=sys.stderr, flush=True)
