"""`unify dev up` ended by its terminal closing (SIGHUP) or by SIGKILL takes its whole stack
with it: Consul, NATS, moto, the three services, HAProxy and dnsmasq (real processes)."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from unify_testkit import returns, wait_until

#: the programs a running stack is made of, as /proc/<pid>/cmdline shows them
PARTS = ("consul", "nats-server", "moto", "consul_bridge", "switchboard", "dns411", "haproxy",
         "dnsmasq")


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state letter, start time) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(root: int) -> dict[tuple[int, int], str]:
    """Every live process under ``root``: (pid, start time) -> command line."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None and info[1] != "Z":
            children.setdefault(info[0], []).append((int(entry), info[2]))
    found: dict[tuple[int, int], str] = {}
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            found[(pid, start)] = _cmdline(pid)
            todo.append(pid)
    return found


def part_of(cmdline: str) -> str | None:
    """Which part of the stack a command line runs (``python -m <part>`` for the services,
    ``python .../moto_server`` for moto), or None."""
    args = cmdline.split()
    if not args:
        return None
    program = args[0].rsplit("/", 1)[-1]
    if program.startswith("python") and len(args) > 1:
        program = args[2] if args[1] == "-m" and len(args) > 2 else args[1].rsplit("/", 1)[-1]
    program = "moto" if program == "moto_server" else program
    return program if program in PARTS else None


def wait_for_stack(pid: int, timeout: float = 120.0) -> dict[tuple[int, int], str]:
    """The stack's processes once every part of it runs under ``pid``."""
    return wait_until(lambda: descendants(pid),
                      lambda procs: {part_of(c) for c in procs.values()} >= set(PARTS),
                      timeout=timeout, interval=0.2, what=f"every part of the stack under {pid}")


def alive(procs: dict[tuple[int, int], str]) -> list[str]:
    """Command lines of ``procs`` still running (a zombie or a reused pid is gone)."""
    left = []
    for (pid, start), cmdline in procs.items():
        info = _stat(pid)
        if info is not None and info[1] != "Z" and info[2] == start:
            left.append(cmdline)
    return sorted(left)


def wait_gone(procs: dict[tuple[int, int], str], timeout: float = 45.0) -> None:
    """Wait until none of ``procs`` runs any more."""
    wait_until(lambda: alive(procs), lambda left: left == [], timeout=timeout, interval=0.1,
               what="every process of the stack gone")


@pytest.mark.timeout(240)
def test_sigkill_of_dev_up_stops_every_process_of_the_stack(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "unify_cli.main", "dev", "up",
                             "--workdir", str(tmp_path / "dev")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        stack = wait_for_stack(proc.pid)
    except BaseException:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        raise
    proc.kill()
    proc.wait(10)
    wait_gone(stack)


def _controlling_tty() -> None:
    """In the child (after setsid): make stdin, the pty's slave side, its terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.timeout(240)
def test_terminal_closing_stops_dev_up_and_every_process_of_the_stack(tmp_path):
    master, slave = os.openpty()
    workdir = tmp_path / "dev"
    proc = subprocess.Popen([sys.executable, "-m", "unify_cli.main", "dev", "up",
                             "--workdir", str(workdir)], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True, preexec_fn=_controlling_tty)
    os.close(slave)
    output = b""

    def running() -> None:
        """Read what dev up wrote to its terminal so far."""
        nonlocal output
        exited = proc.poll() is not None  # judged after reading what it wrote last
        if select.select([master], [], [], 0.5)[0]:
            try:
                output += os.read(master, 65536)
            except OSError:  # EIO once nothing holds the terminal: nothing more to read
                if not exited:
                    raise
        if exited:
            raise RuntimeError(f"unify dev up exited with {proc.returncode}:\n"
                               f"{output.decode(errors='replace')}")
        assert b"Ctrl-C stops everything" in output, output.decode(errors="replace")

    try:
        wait_until(running, returns, timeout=120, interval=0.05,
                   what="unify dev up printing 'Ctrl-C stops everything' on its terminal")
        stack = wait_for_stack(proc.pid)
    except BaseException:
        os.close(master)
        proc.wait(60)
        raise
    os.close(master)  # the terminal goes away: the kernel sends SIGHUP to dev up
    assert proc.wait(60) == 0
    wait_gone(stack)
    # it stopped the way Ctrl-C stops it: the stack's addresses are removed
    assert not (workdir / "env").exists() and not (workdir / "dev.json").exists()
