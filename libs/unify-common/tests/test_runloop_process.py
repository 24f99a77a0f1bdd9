"""The run loop in a real process whose start swallows its cancellation (as nats-py's connect
can while it retries an unreachable server): the first SIGTERM still ends the process within
the time limit, and a second signal ends it at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unify_testkit.poll import wait_until

# start() (argv[2] "start") or serve() ("serve") never ends and ignores every cancellation;
# stop() reports itself
STUBBORN = """
import asyncio, sys
from unify_common.logs import configure_logging
from unify_common.runloop import run_until_stopped

async def stubborn():
    print("running", flush=True)
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("cancellation swallowed", flush=True)

async def started():
    pass

async def stop():
    print("stop ran", flush=True)

configure_logging(fmt="text", level="INFO")
if sys.argv[2] == "start":
    asyncio.run(run_until_stopped(stubborn, stop, cancel_timeout=float(sys.argv[1])))
else:
    asyncio.run(run_until_stopped(started, stop, serve=stubborn,
                                  cancel_timeout=float(sys.argv[1])))
"""


def _spawn(tmp_path: Path, cancel_timeout: float, stubborn: str = "start"
           ) -> tuple[subprocess.Popen[str], Path]:
    err = tmp_path / "stderr"
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN, str(cancel_timeout), stubborn],
                            stdout=subprocess.PIPE, stderr=err.open("w"), text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "running\n"  # the signal handlers are in place
    return proc, err


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stubborn", ["start", "serve"])
def test_first_sigterm_ends_a_task_that_swallows_its_cancellation_within_the_limit(
        tmp_path, stubborn):
    proc, err = _spawn(tmp_path, 1.0, stubborn)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        status = proc.wait(timeout=10)
    finally:
        proc.kill()
    elapsed = time.monotonic() - sent
    assert status == 1
    assert 0.9 <= elapsed < 5.0, elapsed
    assert proc.stdout.read() == "cancellation swallowed\nstop ran\n"
    lines = err.read_text().splitlines()
    assert lines == [
        'info    unify_common.runloop: stop requested signal="SIGTERM"',
        f"error   unify_common.runloop: stop forced: {stubborn} did not end within 1 s of its "
        f'cancellation; stopping and exiting task="{stubborn}" limit_s=1.0',
    ]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("second", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_second_signal_exits_at_once(tmp_path, second, status):
    proc, err = _spawn(tmp_path, 60.0)  # the time limit alone would take a minute
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "stop requested" in err.read_text(), timeout=10,
               what="the first signal's log line")
    sent = time.monotonic()
    proc.send_signal(second)
    try:
        assert proc.wait(timeout=5) == status
    finally:
        proc.kill()
    assert time.monotonic() - sent < 3.0
    assert err.read_text().splitlines()[-1] == (
        f'error   unify_common.runloop: second stop signal: exiting at once signal="{second.name}"')
