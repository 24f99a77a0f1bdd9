"""Parse the master CLI's ``show proc`` answer (HAProxy 2.6 management guide, 9.4) (pure)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProcInfo", "parse_show_proc"]


@dataclass(frozen=True)
class ProcInfo:
    """``master``: the master's PID; ``reloads`` and ``failed``: its reload counters; ``workers``: PIDs of the
    current workers; ``old_workers``: PIDs of workers still finishing after a reload."""

    master: int
    reloads: int
    failed: int
    workers: tuple[int, ...]
    old_workers: tuple[int, ...]


def parse_show_proc(text: str) -> ProcInfo:
    """Parse ``show proc``.

    The answer is a ``#<PID> <type> <reloads> ...`` table: the master line
    (``<pid> master <reloads> [failed: <n>] ...``), then ``# workers`` and ``# old workers``
    sections of ``<pid> worker <reloads> ...`` lines.

    :raises ValueError: no master line (not a master CLI answer).
    """
    master = reloads = failed = -1
    section = ""
    workers: list[int] = []
    old: list[int] = []
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.strip("# ").lower()
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        if fields[1] == "master":
            master = int(fields[0])
            reloads = int(fields[2])
            rest = " ".join(fields[3:])
            if rest.startswith("[failed:"):
                failed = int(rest.split()[1].rstrip("]"))
            else:
                failed = 0
        elif fields[1] == "worker":
            (old if section.startswith("old") else workers).append(int(fields[0]))
    if reloads < 0:
        raise ValueError("not a 'show proc' answer: no master line")
    return ProcInfo(master=master, reloads=reloads, failed=failed, workers=tuple(workers),
                    old_workers=tuple(old))
