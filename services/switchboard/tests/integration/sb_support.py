"""Helpers shared by switchboard's integration tests."""

from __future__ import annotations

import httpx
import msgspec

from tests.fixtures.catalog import make_instance, put_instance
from unify_common.events import Applied, ErrorEvent, decode_event
from unify_common.natsio import ensure_catalog_bucket
from unify_testkit.aio import wait_until

__all__ = ["Events", "get_body", "settle", "start_with_web"]


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


async def settle(js, sb_common, events: Events) -> int:
    """Put a sentinel the routing ignores (an instance of service ``sb-sentinel`` without
    Unify tags) and wait for the ``Applied`` of the reconcile that takes it in (its detail
    names the bucket revision); returns that revision.

    What "nothing else follows" rests on: one reconcile at a time takes in every change and
    request before it, and reports are published in order on one connection. So a report an
    earlier change or a stray reconcile would still make comes before the sentinel's; or
    it is folded into the sentinel's reconcile, which then reports something other than
    ``unchanged`` (a reload still pending) or was started by another reason than ``change``
    (the subscriber counts them: ``Subscriber.reasons``).
    """
    await put_instance(js, sb_common, make_instance("sb-sentinel", "sb-sentinel-1",
                                                    "127.0.0.1", 9))
    bucket = await ensure_catalog_bucket(js, sb_common)
    revision = (await bucket.status()).stream_info.state.last_seq
    await wait_until(lambda: any(e.detail == f"revision {revision}" for e in events.applied),
                     what=f"the Applied of the sentinel's revision {revision}")
    return revision


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
