"""Backoff rules for transient Route 53 errors (pure: errors built in the test)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from dns411.apply.backoff import is_transient, with_backoff


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "ChangeResourceRecordSets")


@pytest.mark.parametrize(("err", "transient"), [
    pytest.param(client_error("Throttling"), True, id="throttling"),
    pytest.param(client_error("PriorRequestNotComplete"), True, id="prior-request"),
    pytest.param(client_error("Whatever", 503), True, id="5xx"),
    pytest.param(EndpointConnectionError(endpoint_url="http://x"), True, id="connection"),
    pytest.param(client_error("InvalidChangeBatch"), False, id="invalid-batch"),
    pytest.param(client_error("AccessDenied", 403), False, id="denied"),
    pytest.param(ValueError("x"), False, id="other"),
])
def test_is_transient(err, transient):
    assert is_transient(err) is transient


def failing(errors):
    calls = []

    def call():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "done"
    return call, calls


def test_delays_double_and_are_capped():
    call, calls = failing([client_error("Throttling")] * 5)
    sleeps: list[float] = []
    result = with_backoff(call, what="x", max_attempts=8, base=0.5, cap=3.0,
                          sleep=sleeps.append, rand=lambda low, high: high)
    assert result == "done" and len(calls) == 6
    assert sleeps == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_is_within_zero_and_the_bound():
    call, _ = failing([client_error("Throttling")] * 3)
    sleeps: list[float] = []
    with_backoff(call, what="x", max_attempts=8, base=0.5, cap=3.0, sleep=sleeps.append,
                 rand=lambda low, high: (low + high) / 2)
    assert sleeps == [0.5, 1.0, 1.5]


def test_gives_up_after_max_attempts_and_never_retries_permanent_errors():
    call, calls = failing([client_error("Throttling")] * 5)
    with pytest.raises(ClientError):
        with_backoff(call, what="x", max_attempts=3, sleep=lambda s: None)
    assert len(calls) == 3
    call, calls = failing([client_error("InvalidChangeBatch")])
    with pytest.raises(ClientError):
        with_backoff(call, what="x", max_attempts=3, sleep=lambda s: None)
    assert len(calls) == 1
