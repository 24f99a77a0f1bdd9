"""Backoff arithmetic and retry behaviour (no I/O)."""

import logging

import pytest

from unify_common.retry import backoff_delay, retry_forever


@pytest.mark.parametrize(("failures", "expected"), [
    pytest.param(1, 0.2, id="first"), pytest.param(3, 0.8, id="third"),
    pytest.param(10, 5.0, id="capped"), pytest.param(1000, 5.0, id="huge-count"),
])
def test_backoff_delay_without_jitter(failures, expected):
    assert backoff_delay(failures, base=0.1, cap=5.0, rng=lambda a, b: 1.0) == \
        pytest.approx(expected)


def test_backoff_jitter_halves_at_most():
    assert backoff_delay(3, base=0.1, cap=5.0, rng=lambda a, b: a) == pytest.approx(0.4)


async def test_retry_forever_returns_after_failures(caplog):
    attempts = []

    async def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("not yet")
        return "done"

    with caplog.at_level(logging.WARNING):
        assert await retry_forever(flaky, what="thing", log=logging.getLogger("t"),
                                   base=0.001, cap=0.002) == "done"
    assert len(attempts) == 3
    assert [r.getMessage() for r in caplog.records] == ["thing failed; retrying"] * 2
    assert [r.fields["attempt"] for r in caplog.records] == [1, 2]
