"""Removal guard and blocking-index rules (pure, clock passed in)."""

import pytest

from consul_bridge.blocking import IndexStep, next_index
from consul_bridge.guard import RemovalGuard


@pytest.mark.parametrize(
    ("previous", "returned", "expected"),
    [
        pytest.param(0, 12, IndexStep(12, True, False), id="first-answer"),
        pytest.param(12, 12, IndexStep(12, False, False), id="timeout-no-change"),
        pytest.param(12, 15, IndexStep(15, True, False), id="advanced"),
        pytest.param(12, 3, IndexStep(0, True, True), id="went-backwards-reset"),
        pytest.param(0, 0, IndexStep(1, True, False), id="zero-never-blocks"),
        pytest.param(1, 0, IndexStep(0, True, True), id="zero-after-one-is-reset"),
    ],
)
def test_next_index(previous, returned, expected):
    assert next_index(previous, returned) == expected


def test_small_removal_goes_through_at_once():
    guard = RemovalGuard(confirm_s=10, max_ratio=0.5)
    assert guard.filter({"a"}, scope={"a", "b"}, known=10, now=0.0) == {"a"}
    assert guard.held() == 0


def test_mass_removal_is_held_until_confirmed():
    guard = RemovalGuard(confirm_s=10, max_ratio=0.5)
    everything = {"a", "b", "c", "d"}
    assert guard.filter(everything, scope=everything, known=4, now=0.0) == set()
    assert guard.held() == 4
    assert guard.next_check() == 10.0
    assert guard.filter(everything, scope=everything, known=4, now=9.9) == set()
    assert guard.filter(everything, scope=everything, known=4, now=10.0) == everything
    assert guard.held() == 0


def test_held_removal_is_forgotten_when_the_instance_comes_back():
    guard = RemovalGuard(confirm_s=10, max_ratio=0.5)
    everything = {"a", "b", "c", "d"}
    guard.filter(everything, scope=everything, known=4, now=0.0)
    assert guard.filter(set(), scope=everything, known=4, now=5.0) == set()
    assert guard.held() == 0


def test_removal_right_after_index_reset_is_held():
    guard = RemovalGuard(confirm_s=10, max_ratio=0.5)
    guard.index_reset(now=100.0)
    assert guard.filter({"a"}, scope={"a"}, known=50, now=101.0) == set()
    assert guard.filter({"a"}, scope={"a"}, known=50, now=111.0) == {"a"}
