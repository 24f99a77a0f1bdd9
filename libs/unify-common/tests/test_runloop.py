"""The shared run loop: a stop request during start cancels it; stop always runs."""

from __future__ import annotations

import asyncio

import pytest

from unify_common.runloop import run_until_stopped


async def test_stop_during_a_start_that_never_ends_cancels_it_and_stops():
    calls: list[str] = []
    event = asyncio.Event()

    async def start():
        calls.append("start")
        event.set()  # the signal arrives while start is still waiting
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            calls.append("start cancelled")
            raise

    async def stop():
        calls.append("stop")

    assert await asyncio.wait_for(run_until_stopped(start, stop, stop_event=event), 5) is False
    assert calls == ["start", "start cancelled", "stop"]


async def test_started_service_runs_until_the_event_then_stops():
    calls: list[str] = []
    event = asyncio.Event()

    async def start():
        calls.append("start")

    async def stop():
        calls.append("stop")

    def started():
        calls.append("started")
        event.set()

    assert await asyncio.wait_for(run_until_stopped(start, stop, stop_event=event,
                                                    on_started=started), 5) is True
    assert calls == ["start", "started", "stop"]


async def test_a_failed_start_still_stops_and_raises():
    calls: list[str] = []

    async def start():
        raise OSError("nats unreachable")

    async def stop():
        calls.append("stop")

    with pytest.raises(OSError, match="^nats unreachable$"):
        await asyncio.wait_for(run_until_stopped(start, stop, stop_event=asyncio.Event()), 5)
    assert calls == ["stop"]


async def test_serve_is_cancelled_by_the_stop_request_before_stop_runs():
    calls: list[str] = []
    event = asyncio.Event()

    async def start():
        calls.append("start")

    async def serve():
        calls.append("serving")
        event.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            calls.append("serve cancelled")
            raise

    async def stop():
        calls.append("stop")

    assert await asyncio.wait_for(run_until_stopped(start, stop, stop_event=event,
                                                    serve=serve), 5) is True
    assert calls == ["start", "serving", "serve cancelled", "stop"]


async def test_serve_that_fails_by_itself_stops_the_service_with_its_error():
    calls: list[str] = []

    async def start():
        calls.append("start")

    async def serve():
        raise RuntimeError("leader loop broke")

    async def stop():
        calls.append("stop")

    with pytest.raises(RuntimeError, match="^leader loop broke$"):
        await asyncio.wait_for(run_until_stopped(start, stop, stop_event=asyncio.Event(),
                                                 serve=serve), 5)
    assert calls == ["start", "stop"]
