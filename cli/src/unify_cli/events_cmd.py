"""``unify events tail`` and ``unify events replay``: read the event stream.

Replay reads exactly the events of a window, in stream order: from a start time (``--since
10m`` or an RFC 3339 time) or a stream sequence (``--from-seq``), up to ``--until`` (a time) or
up to the last event that existed when the command started. Nothing is consumed or acked:
it uses an ephemeral consumer with no acks, so replay never disturbs the services.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sys
from typing import TextIO

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from unify_common import subjects
from unify_common.events import decode_event
from unify_common.natsio import connect_nats
from unify_common.settings import CommonSettings

__all__ = ["format_line", "parse_time", "replay", "tail"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """A point in time from ``10m``/``2h``/``30s`` (that long before ``now``) or RFC 3339.

    :raises ValueError: neither form.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    match = _DURATION.match(text.strip())
    if match:
        try:
            return now - dt.timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
        except (OverflowError, ValueError):
            raise ValueError(f"duration too large: {text!r}") from None
    try:
        parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a duration (10m, 2h) or RFC 3339 time: {text!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"RFC 3339 time needs a zone offset or Z: {text!r}")
    return parsed


def _printable(text: str) -> str:
    """``text`` with every non-printable character (newline, escape, ...) shown as a Python
    escape, so hostile catalog data can neither split a line nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode()
                   for c in text)


def _summary(event) -> str:
    kind = event.type
    if kind.startswith("instance."):
        inst = event.instance
        text = (f"{inst.service}/{inst.instance_id} node={inst.node} "
                f"{inst.address}:{inst.port} {inst.health}")
        if kind == "instance.updated":
            text += f" (was {event.previous.address}:{event.previous.port})"
        if kind == "instance.health":
            text += f" (was {event.previous_health})"
        return text
    if kind.startswith("kv."):
        value = event.entry.value
        return f"{event.entry.key}={value[:60]!r}" + ("..." if len(value) > 60 else "")
    if kind == "error":
        where = f" {event.service}/{event.instance_id}" if event.service else ""
        return f"{event.source} {event.reason}{where}: {event.message}"
    if kind == "applied":
        return f"{event.source} node={event.node} {event.method} {event.config_hash[:12]}"
    return ""


def format_line(msg, *, as_json: bool) -> str:
    """One output line for a JetStream message: raw JSON, or ``time seq subject type summary``.
    Undecodable payloads are shown as such, never dropped."""
    meta = msg.metadata
    if as_json:
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = {"undecodable": msg.data.decode("utf-8", "replace")}
        return json.dumps({"seq": meta.sequence.stream, "subject": msg.subject,
                           "time": meta.timestamp.isoformat(), "event": body},
                          separators=(",", ":"))
    stamp = meta.timestamp.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    try:
        event = decode_event(msg.data)
        text = f"{event.type} {_summary(event)}"
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        text = f"undecodable: {err}"
    return _printable(f"{stamp} {meta.sequence.stream:>8} {msg.subject} {text}")


async def _connect(settings: CommonSettings, name: str):
    try:
        return await connect_nats(settings, name=name, fail_fast=True)
    except Exception as err:
        where = ", ".join(settings.nats_urls)
        why = str(err) or type(err).__name__
        raise ValueError(f"cannot reach NATS at {where} ({why}); set NATS_URL "
                         "(for the dev stack: source .unify/dev/env)") from None


async def tail(settings: CommonSettings, *, subject: str, as_json: bool,
               out: TextIO = sys.stdout, stop: asyncio.Event | None = None) -> None:
    """Print live events on ``subject`` until ``stop`` is set (or the task is cancelled)."""
    nc = await _connect(settings, "unify-cli-tail")
    try:
        js = nc.jetstream()

        async def on_msg(msg):
            print(format_line(msg, as_json=as_json), file=out, flush=True)

        await js.subscribe(subject, stream=settings.stream, cb=on_msg, ordered_consumer=True,
                           deliver_policy=DeliverPolicy.NEW)
        await (stop or asyncio.Event()).wait()
    finally:
        await nc.close()


async def replay(settings: CommonSettings, *, subject: str = subjects.ALL,
                 since: dt.datetime | None = None, from_seq: int | None = None,
                 until: dt.datetime | None = None, as_json: bool = False,
                 out: TextIO = sys.stdout) -> int:
    """Print the events of a window in stream order; returns how many were printed.

    :param since: first event time (inclusive). Exactly one of ``since``/``from_seq``.
    :param from_seq: first stream sequence (inclusive).
    :param until: last event time (inclusive); default: the newest event at start.
    :raises ValueError: neither or both of ``since`` and ``from_seq``.
    """
    if (since is None) == (from_seq is None):
        raise ValueError("give exactly one of --since or --from-seq")
    nc = await _connect(settings, "unify-cli-replay")
    try:
        js = nc.jetstream()
        info = await js.stream_info(settings.stream)
        last_seq = info.state.last_seq
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0,
                                filter_subject=subject, mem_storage=True)
        if from_seq is not None:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = max(1, from_seq)
        else:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = since.astimezone(dt.timezone.utc)
        psub = await js.pull_subscribe(subject, stream=settings.stream, config=config)
        printed = 0
        if (await psub.consumer_info()).num_pending == 0:
            await psub.unsubscribe()
            return 0
        while True:
            try:
                msgs = await psub.fetch(batch=256, timeout=1.0)
            except (NatsTimeoutError, asyncio.TimeoutError):
                break  # nothing more in the window
            done = False
            for msg in msgs:
                meta = msg.metadata
                if meta.sequence.stream > last_seq or (until and meta.timestamp > until):
                    done = True
                    break
                print(format_line(msg, as_json=as_json), file=out)
                printed += 1
                if meta.sequence.stream >= last_seq or meta.num_pending == 0:
                    done = True
                    break
            if done:
                break
        await psub.unsubscribe()
        return printed
    finally:
        await nc.close()
