"""While NATS is unreachable, connect_nats logs one warning line, then debug lines, instead
of nats-py's traceback for every attempt. No server is started: the port has no listener."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket

import pytest

from unify_common.logs import configure_logging
from unify_common.natsio import connect_nats
from unify_common.settings import CommonSettings
from unify_testkit import returns
from unify_testkit.aio import wait_until


@pytest.mark.timeout(30)
async def test_one_warning_per_outage_then_debug_lines():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    settings = CommonSettings.from_env({"NATS_URL": f"nats://u:pw-h4@127.0.0.1:{port}"})
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(fmt="json", level="DEBUG", stream=stream)
    connecting = asyncio.create_task(connect_nats(settings, name="h4-outage"))
    try:
        def three_lines() -> None:
            if connecting.done():
                raise RuntimeError(f"connect_nats ended: {connecting!r}\n{stream.getvalue()}")
            assert len(stream.getvalue().splitlines()) >= 3, stream.getvalue()

        await wait_until(three_lines, returns, timeout=20,
                         what="three log lines from connect_nats retrying")
    finally:
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    refused = f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    assert [(e["level"], e["logger"], e["msg"], e["client"], e["error"])
            for e in lines[:3]] == [
        ("warning", "unify.nats", "NATS unreachable; retrying", "h4-outage", refused),
        ("debug", "unify.nats", "NATS still unreachable; retrying", "h4-outage", refused),
        ("debug", "unify.nats", "NATS still unreachable; retrying", "h4-outage", refused)]
    assert "Traceback" not in stream.getvalue() and "pw-h4" not in stream.getvalue()
