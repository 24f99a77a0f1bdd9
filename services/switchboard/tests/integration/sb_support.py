"""Helpers shared by switchboard's integration tests."""

from __future__ import annotations

import httpx
import msgspec

from tests.fixtures.catalog import make_instance, put_instance
from unify_common.events import Applied, ErrorEvent, decode_event
from unify_testkit.aio import wait_until

__all__ = ["Events", "get_body", "start_with_web"]


class Events:
    """Every ``unify.error.>`` and ``unify.applied.>`` event seen on NATS, in order."""

    def __init__(self) -> None:
        self.errors: list[ErrorEvent] = []
        self.applied: list[Applied] = []

    async def handle(self, msg) -> None:
        try:
            event = decode_event(msg.data)
        except msgspec.MsgspecError:
            return
        if isinstance(event, ErrorEvent):
            self.errors.append(event)
        elif isinstance(event, Applied):
            self.applied.append(event)


async def get_body(port: int, host: str, path: str = "/") -> tuple[int, str]:
    """GET ``http://127.0.0.1:<port><path>`` with ``Host: host``; ``(status, body)``."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        resp = await client.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
        return resp.status_code, resp.text


async def start_with_web(js, sb_common, backend_port: int, port: int, switchboard_factory,
                         events: Events, **factory_options):
    """Catalog: vhost ``web.example.com`` on ``port`` served by ``backend_port``; switchboard
    started (``factory_options`` go to the factory), returned once its first reload is
    applied."""
    await put_instance(js, sb_common, make_instance(
        "web", "web-1", "127.0.0.1", backend_port, ["dns=example.com", "vhost=web",
                                                     f"http={port}"]))
    service = await switchboard_factory(**factory_options)
    await wait_until(lambda: [e.method for e in events.applied] == ["reload"],
                     what="first reload")
    return service
