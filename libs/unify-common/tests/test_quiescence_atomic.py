"""Quiescence timing rules and atomic writes."""

import os

import pytest

from unify_common.atomic import write_atomic
from unify_common.quiescence import Quiescence


def test_burst_gives_one_run_after_min_wait():
    q = Quiescence(min_wait=0.1, max_wait=1.0)
    assert q.due_at() is None
    q.touch(0.0)
    q.touch(0.05)
    q.touch(0.08)
    assert q.due_at() == pytest.approx(0.18)


def test_continuous_churn_runs_at_max_wait():
    q = Quiescence(min_wait=0.1, max_wait=1.0)
    for step in range(100):
        q.touch(step * 0.05)  # a change every 50 ms, forever
    assert q.due_at() == pytest.approx(1.0)
    q.reset()
    assert not q.pending
    q.touch(5.0)
    assert q.due_at() == pytest.approx(5.1)


def test_rejects_min_above_max():
    with pytest.raises(ValueError):
        Quiescence(min_wait=2, max_wait=1)


def test_write_atomic_reports_and_skips_identical(tmp_path):
    target = tmp_path / "haproxy.cfg"
    assert write_atomic(target, b"one") is True
    mtime = target.stat().st_mtime_ns
    assert write_atomic(target, b"one") is False
    assert target.stat().st_mtime_ns == mtime
    assert write_atomic(target, b"two", mode=0o600) is True
    assert target.read_bytes() == b"two"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(tmp_path)) == ["haproxy.cfg"]  # no temp files left


def test_write_atomic_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "sub" / "f"
    with pytest.raises(FileNotFoundError):
        write_atomic(target, b"x")
