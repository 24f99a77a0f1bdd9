"""Benchmark: Consul change → HAProxy serving it, switchboard vs consul-template, side by side.

One real Consul (``-dev``) holds the catalog; two pipelines watch it at the same time and each
drives its own HAProxy 2.6 (master-worker, master CLI socket):

* Unify: consul-bridge → nats-server (JetStream) → switchboard, whose HAProxy binds 127.0.0.1
  (started exactly as ``unify_testkit.devstack.stack.DevStack`` starts them, without dns411/moto).
* consul-template (built by ``scripts/build-consul-template.sh``) renders
  ``bench/consul_template/haproxy.cfg.ctmpl`` — the same frontends, Host routing and backends
  for the same catalog, from ``services``/``service`` (healthy instances only) — and runs as its
  command ``haproxy -c -f <file>`` then ``reload`` on the master CLI socket of a second HAProxy,
  which binds 127.0.0.2 on the same ports. ``wait`` is 50 ms / 1 s like switchboard's debounce;
  de-duplication mode is off (its default).

The catalog: services of 10 instances, nodes of 20 instances, each node with one stable address
(the per-instance address is ``Service.Address``, so a registration never rewrites its node);
every service a vhost ``dns=bench.test vhost=svc-k http=<port> check=disabled``. Instances point
at loopback addresses where nothing listens. The first few services ("targets") have every
instance registered with a critical Consul check, so both tools keep them out of rotation
(switchboard: server in maint; consul-template: ``service`` leaves them out).

Each measured change registers one instance pointing at a real HTTP backend on 127.0.0.1, of
three kinds, reported separately:

* ``join``: a new (passing) instance of an existing target vhost service — the only instance of
  that service that can answer;
* ``new``: a new vhost service (``check=disabled``, like the catalog);
* ``new-checked``: a new vhost service without a check tag (switchboard's default profile,
  an HTTP check of ``GET /``; consul-template's template renders the same check).

The clock runs from the registration's PUT to the first HTTP 200 for that Host from each
HAProxy; two threads poll both HAProxies concurrently every ~2 ms. After each change the instance
is deregistered and both HAProxies are awaited to stop serving it, so the catalog keeps its size;
each change starts when both pipelines' processes (HAProxy included) are idle again.
Only loopback addresses are used. Prints p50/p99 per size and kind for both tools, the ratio of
the p99s (switchboard / consul-template; the goal of issue 3 is ≤ 0.5), and CPU per round of
changes as a rough comparison.

    bash scripts/build-consul-template.sh      # once; ~30 s, cached in ~/.cache/unify/bin
    .venv/bin/python bench/consul_template_compare.py [--sizes 100,1000] [--changes 30]

The reload command uses ``socat`` when it is on PATH (``apt-get install socat``), else a
stdlib-only Python helper (``bench/consul_template/master_reload.py``, ~30 ms more per reload).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unify_testkit.devstack.consul import ConsulAgent
from unify_testkit.devstack.haproxy import HAProxyServer, haproxy_binary
from unify_testkit.devstack.nats import NatsServer
from unify_testkit.devstack.process import ManagedProcess, free_port, reserved_port, tcp_open
from unify_testkit.devstack.stack import consul_put

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TEMPLATE = HERE / "consul_template" / "haproxy.cfg.ctmpl"
RELOAD_HELPER = HERE / "consul_template" / "master_reload.py"
PER_SERVICE = 10
PER_NODE = 20
TARGETS = 5  # services whose instances are all critical: the "join" kind adds to these
DOMAIN = "bench.test"
UNIFY_BIND, CT_BIND = "127.0.0.1", "127.0.0.2"
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.002
CHANGE_TIMEOUT_S = 60.0


def consul_template_binary() -> str:
    """``$UNIFY_CONSUL_TEMPLATE_BIN``, the cache, or build it with the script."""
    if os.environ.get("UNIFY_CONSUL_TEMPLATE_BIN"):
        return os.environ["UNIFY_CONSUL_TEMPLATE_BIN"]
    cached = Path(os.environ.get("UNIFY_CACHE_DIR", Path.home() / ".cache/unify")) \
        / "bin/consul-template"
    if cached.exists():
        return str(cached)
    out = subprocess.run(["bash", str(REPO / "scripts/build-consul-template.sh")],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def node_of(i: int, size: int) -> tuple[str, str]:
    """(node name, its one stable loopback address) for instance ``i``."""
    n = i % max(1, size // PER_NODE)
    return f"bench-node-{n}", f"127.0.{1 + (n >> 8)}.{n & 255}"


def dead_address(i: int) -> str:
    """A loopback address where nothing listens (127.64.0.0 and up)."""
    return f"127.{64 + ((i >> 16) & 63)}.{(i >> 8) & 255}.{i & 255}"


def tags(name: str, http_port: int, check: bool = False) -> list[str]:
    """The vhost tags; ``check``: no check tag, so the default HTTP check of ``GET /``."""
    return [f"dns={DOMAIN}", f"vhost={name}", f"http={http_port}"] + (
        [] if check else ["check=disabled"])


def register_catalog(addr: str, i: int, size: int, http_port: int) -> None:
    node, node_addr = node_of(i, size)
    svc = i // PER_SERVICE
    body = {"Node": node, "Address": node_addr,
            "Service": {"ID": f"inst-{i}", "Service": f"svc-{svc}", "Address": dead_address(i),
                        "Port": 8080, "Tags": tags(f"svc-{svc}", http_port)}}
    if svc < TARGETS:  # nothing listens there, and Consul says so
        body["Check"] = {"Node": node, "CheckID": f"dead-{i}", "Name": "nothing listens",
                         "Status": "critical", "ServiceID": f"inst-{i}"}
    consul_put(addr, "/v1/catalog/register", body)


def status(bind: str, port: int, host: str) -> int:
    """HTTP status for ``Host: host`` from the HAProxy on ``bind:port`` (0: no answer).
    A fresh connection each time, so an old worker's keep-alive never answers."""
    conn = http.client.HTTPConnection(bind, port, timeout=0.5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def wait_status(bind: str, port: int, host: str, want_200: bool, since: float) -> float | None:
    """Poll until the answer is 200 (``want_200``) or is not 200; returns seconds after
    ``since``, or None on timeout."""
    deadline = since + CHANGE_TIMEOUT_S
    while time.perf_counter() < deadline:
        if (status(bind, port, host) == 200) == want_200:
            return time.perf_counter() - since
        time.sleep(POLL_S)
    return None


def cpu_seconds(pid: int, children: bool = True) -> float:
    """utime + stime (+ cutime + cstime of waited-for children) of ``pid``, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def reload_command(config: Path, master_socket: Path) -> tuple[list[str], str]:
    """consul-template's command: check the rendered file, then reload through the master CLI."""
    check = f"{shlex.quote(haproxy_binary())} -c -q -f {shlex.quote(str(config))}"
    if shutil.which("socat"):
        reload = (f"echo reload | {shlex.quote(shutil.which('socat'))} - "
                  f"UNIX-CONNECT:{shlex.quote(str(master_socket))}")
        how = "socat"
    else:
        reload = (f"{shlex.quote(sys.executable)} -I -S {shlex.quote(str(RELOAD_HELPER))} "
                  f"{shlex.quote(str(master_socket))}")
        how = "python helper"
    return ["/bin/sh", "-c", f"{check} && {reload} >/dev/null"], how


#: debounce of both tools in milliseconds (``--wait-min``): consul-template's ``wait`` min and
#: switchboard's ``UNIFY_SWITCHBOARD_DEBOUNCE``; the max is 1 s for both
WAIT_MIN_MS = 50


def consul_template_config(consul_addr: str, source: Path, dest: Path, command: list[str]) -> str:
    """HCL (JSON is valid HCL) for consul-template."""
    wait = {"min": f"{WAIT_MIN_MS}ms", "max": "1s"}
    return json.dumps({
        "consul": {"address": consul_addr},
        "log_level": "warn",
        "wait": wait,
        "deduplicate": {"enabled": False},
        "template": [{"source": str(source), "destination": str(dest),
                      "command": command, "command_timeout": "60s", "wait": wait}],
    }, indent=2)


def session_cpu(sessions: set[int]) -> float:
    """CPU seconds of every live process in ``sessions`` or in a session led by a child of a
    session leader (each ManagedProcess starts its own session, and so does switchboard for its
    HAProxy): HAProxy masters, workers and running ``haproxy -c`` children included."""
    stats: list[tuple[int, int, float]] = []  # (ppid, session, cpu)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats.append((int(fields[1]), int(fields[3]),
                      (int(fields[11]) + int(fields[12])) / CLK_TCK))
    led = {sid for ppid, sid, _ in stats if ppid in sessions} | sessions
    return sum(cpu for _, sid, cpu in stats if sid in led)


class Side:
    """One pipeline: the pids whose CPU we count, its process sessions, where it binds."""

    def __init__(self, name: str, bind: str, pids: list[int], sessions: set[int]) -> None:
        self.name, self.bind, self.pids, self.sessions = name, bind, pids, sessions

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)


def wait_idle(sides: list[Side], *, window_s: float = 0.3, limit_s: float = 30.0) -> None:
    """Until both pipelines' whole process trees used ≤ 15 ms CPU in ``window_s`` (the last
    change's reloads, checks and old workers done), so each change starts from quiet."""
    sessions = set().union(*(s.sessions for s in sides))
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = session_cpu(sessions)
        time.sleep(window_s)
        if session_cpu(sessions) - before <= 0.015:
            return


def wait_quiet(sides: list[Side], *, limit_s: float = 180.0) -> None:
    """Until every counted process used ≤ 40 ms of CPU in 2 s (initial load digested)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = [s.cpu() for s in sides]
        time.sleep(2.0)
        if all(s.cpu() - b <= 0.04 for s, b in zip(sides, before)):
            return


def run_size(size: int, changes: int, workdir: Path, ct_bin: str) -> dict:
    workdir.mkdir(parents=True)
    procs: list = []
    try:
        consul = ConsulAgent(workdir / "consul").start()
        procs.append(consul)
        nats_server = NatsServer(workdir / "nats").start()
        procs.append(nats_server)
        http_port = reserved_port()
        backend_port = free_port()
        backend = ManagedProcess("backend", [sys.executable, "-m", "unify_testkit.demo_backend",
                                             "--port", str(backend_port), "--name", "bench"],
                                 log_path=workdir / "backend.log")
        backend.start(lambda: tcp_open("127.0.0.1", backend_port))
        procs.append(backend)
        addr = consul.http_addr
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: register_catalog(addr, i, size, http_port), range(size)))

        # (a) Unify, as DevStack starts it
        base = {**os.environ, "CONSUL_HTTP_ADDR": addr, "NATS_URL": nats_server.url,
                "UNIFY_NODE": "bench", "UNIFY_LOG_FORMAT": "json"}
        bridge = ManagedProcess("consul-bridge", [sys.executable, "-m", "consul_bridge"],
                                log_path=workdir / "logs/consul-bridge.log", env=base)
        bridge.start()
        procs.append(bridge)
        sb_dir = workdir / "sb"
        sb_dir.mkdir()
        sb_env = {**base, "UNIFY_HAPROXY_CONFIG": str(sb_dir / "haproxy.cfg"),
                  "UNIFY_HAPROXY_MANAGE": "1", "UNIFY_HAPROXY_BIND": UNIFY_BIND}
        switchboard = ManagedProcess("switchboard", [sys.executable, "-m", "switchboard"],
                                     log_path=workdir / "logs/switchboard.log", env=sb_env)
        switchboard.start()
        procs.append(switchboard)

        # (b) consul-template with its own HAProxy
        ct_dir = workdir / "ct"
        ct_haproxy = HAProxyServer(ct_dir).start()
        procs.append(ct_haproxy)
        command, reload_how = reload_command(ct_haproxy.config, ct_haproxy.master_socket)
        ct_conf = ct_dir / "consul-template.hcl"
        ct_conf.write_text(consul_template_config(addr, TEMPLATE, ct_haproxy.config, command))
        ct = ManagedProcess("consul-template", [ct_bin, "-config", str(ct_conf)],
                            log_path=workdir / "logs/consul-template.log",
                            env={**os.environ, "CT_HAPROXY_BIND": CT_BIND})
        ct.start()
        procs.append(ct)

        sides = [Side("switchboard", UNIFY_BIND, [bridge.pid, switchboard.pid],
                      {bridge.pid, switchboard.pid}),
                 Side("consul-template", CT_BIND, [ct.pid], {ct.pid, ct_haproxy.process.pid})]
        started = time.perf_counter()
        # a target service: no server in rotation, so 503 at once once it is routed (a
        # request to a passing instance at a dead address takes HAProxy's 3 retries × 1 s)
        last_host = f"svc-{min(TARGETS, size // PER_SERVICE) - 1}.{DOMAIN}"
        for side in sides:  # the catalog is routed (503: no server can answer)
            deadline = time.perf_counter() + 900
            while status(side.bind, http_port, last_host) in (0, 404):
                for p in (bridge, switchboard, ct):
                    if not p.alive():
                        raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{side.name} never routed {last_host}")
                time.sleep(0.1)
        load_s = time.perf_counter() - started
        wait_quiet(sides)
        idle0, t_idle = [s.cpu() for s in sides], time.perf_counter()
        time.sleep(5.0)  # idle CPU rate (periodic resyncs, keep-alives), subtracted below
        idle_rate = [(s.cpu() - c) / (time.perf_counter() - t_idle) for s, c in zip(sides, idle0)]

        results: dict[tuple[str, str], list[float]] = {}
        timeouts: dict[tuple[str, str], int] = {}
        cpu0, t0 = [s.cpu() for s in sides], time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(sides)) as pool:
            def measure(kind: str, body: dict, host: str, dereg: dict) -> None:
                wait_idle(sides)
                sent = time.perf_counter()
                consul_put(addr, "/v1/catalog/register", body)
                futures = [pool.submit(wait_status, s.bind, http_port, host, True, sent)
                           for s in sides]
                for side, fut in zip(sides, futures):
                    took = fut.result()
                    if took is None:
                        timeouts[(kind, side.name)] = timeouts.get((kind, side.name), 0) + 1
                    else:
                        results.setdefault((kind, side.name), []).append(took * 1000)
                # put the catalog back, and wait until both HAProxies have forgotten it
                gone = time.perf_counter()
                consul_put(addr, "/v1/catalog/deregister", dereg)
                for fut in [pool.submit(wait_status, s.bind, http_port, host, False, gone)
                            for s in sides]:
                    fut.result()

            for n in range(changes):
                i = size + n
                node, node_addr = node_of(i, size)
                target = n % min(TARGETS, size // PER_SERVICE)
                join_id = f"join-{n}"
                measure("join", {
                    "Node": node, "Address": node_addr,
                    "Service": {"ID": join_id, "Service": f"svc-{target}", "Address": "127.0.0.1",
                                "Port": backend_port, "Tags": tags(f"svc-{target}", http_port)}},
                    f"svc-{target}.{DOMAIN}", {"Node": node, "ServiceID": join_id})
                for kind, checked in (("new", False), ("new-checked", True)):
                    name = f"{kind}-{n}"
                    measure(kind, {
                        "Node": node, "Address": node_addr,
                        "Service": {"ID": name, "Service": name, "Address": "127.0.0.1",
                                    "Port": backend_port,
                                    "Tags": tags(name, http_port, checked)}},
                        f"{name}.{DOMAIN}", {"Node": node, "ServiceID": name})
                print(f"  size={size} change {n + 1}/{changes}: " + ", ".join(
                    f"{k}/{s}={v[-1]:.0f}ms" for (k, s), v in sorted(results.items()) if v),
                    flush=True)
        wall = time.perf_counter() - t0
        cpu = [max(0.0, s.cpu() - c0 - idle * wall) * 1000 / changes
               for s, c0, idle in zip(sides, cpu0, idle_rate)]
        return {"size": size, "results": results, "timeouts": timeouts, "load_s": load_s,
                "cpu_ms": dict(zip([s.name for s in sides], cpu)), "reload_how": reload_how}
    finally:
        for p in reversed(procs):
            p.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--changes", type=int, default=30, help="changes per kind per size")
    parser.add_argument("--workdir", help="keep logs and rendered configurations here "
                        "(default: a temporary directory, removed at the end)")
    parser.add_argument("--wait-min", type=int, default=50,
                        help="debounce of both tools, ms (default 50, switchboard's default)")
    args = parser.parse_args()
    global WAIT_MIN_MS
    WAIT_MIN_MS = args.wait_min
    os.environ["UNIFY_SWITCHBOARD_DEBOUNCE"] = str(args.wait_min / 1000)
    ct_bin = consul_template_binary()
    version = subprocess.run([ct_bin, "-version"], capture_output=True, text=True)
    print(f"{(version.stdout + version.stderr).strip()}; debounce {WAIT_MIN_MS} ms; load average "
          f"{os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="unify-ctcmp-") as tmp:
        if args.workdir:
            tmp = tempfile.mkdtemp(prefix="run-", dir=Path(args.workdir).absolute())
            print(f"logs in {tmp}", flush=True)
        for size in [int(s) for s in args.sizes.split(",")]:
            r = run_size(size, args.changes, Path(tmp) / f"size-{size}", ct_bin)
            rows.append(r)
            print(f"size={size}: initial load routed by both in {r['load_s']:.1f} s; "
                  f"reload via {r['reload_how']}; timeouts {r['timeouts'] or 'none'}; "
                  f"load average now {os.getloadavg()[0]:.2f}", flush=True)
    print("\n| instances | change | switchboard p50 | switchboard p99 | consul-template p50 "
          "| consul-template p99 | p99 ratio (sb / ct) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for kind, label in (("join", "instance joins an existing vhost"),
                            ("new", "new vhost, `check=disabled`"),
                            ("new-checked", "new vhost, default check")):
            sb = r["results"].get((kind, "switchboard"), [])
            ct = r["results"].get((kind, "consul-template"), [])
            if not sb or not ct:
                print(f"| {r['size']:,} | {label} | (no data) |||||")
                continue
            print(f"| {r['size']:,} | {label} | {pct(sb, .5):.1f} ms | {pct(sb, .99):.1f} ms | "
                  f"{pct(ct, .5):.1f} ms | {pct(ct, .99):.1f} ms | "
                  f"{pct(sb, .99) / pct(ct, .99):.2f} |")
    print("\nCPU per measured round (one change of each kind, each followed by its "
          "deregistration: 6 catalog writes), idle rate subtracted:")
    for r in rows:
        print(f"  {r['size']:,}: consul-bridge + switchboard {r['cpu_ms']['switchboard']:.1f} ms; "
              f"consul-template (+ haproxy -c, reload) {r['cpu_ms']['consul-template']:.1f} ms")


def _stop_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


if __name__ == "__main__":
    _stop_on_sigterm()
    main()
