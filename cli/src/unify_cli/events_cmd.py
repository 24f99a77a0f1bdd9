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
from nats.js.errors import NotFoundError

from unify_common import subjects
from unify_common.events import decode_event
from unify_common.natsio import connect_nats, unreachable_message
from unify_common.settings import CommonSettings

__all__ = ["format_line", "parse_time", "replay", "tail"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """A point in time from ``10m``/``2h``/``30s`` (that long before ``now``) or RFC 3339.

    :raises ValueError: neither form.
    """
    now = now or dt.datetime.now(dt.UTC)
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


def _what_changed(before, after) -> str:
    """What an ``instance.updated`` changed, e.g. ``was 10.0.0.1:80; weight 1 -> 5``."""
    parts = []
    if (before.address, before.port) != (after.address, after.port):
        parts.append(f"was {before.address}:{before.port}")
    if before.weight != after.weight:
        parts.append(f"weight {before.weight} -> {after.weight}")
    if before.tags != after.tags:
        parts.append("tags changed")
    if before.meta != after.meta:
        parts.append("meta changed")
    return "; ".join(parts) or "no field Unify shows changed"


def _summary(event) -> str:
    kind = event.type
    if kind.startswith("instance."):
        inst = event.instance
        text = (f"{inst.service}/{inst.instance_id} node={inst.node} "
                f"{inst.address}:{inst.port} {inst.health}")
        if kind == "instance.updated":
            text += f" ({_what_changed(event.previous, inst)})"
        if kind == "instance.health":
            text += f" (was {event.previous_health})"
        return text
    if kind.startswith("kv."):
        # a value that is not UTF-8 is shown as its exact bytes, never as its lossy text form
        text = event.entry.text
        value = text if text is not None else event.entry.raw
        return f"{event.entry.key}={value[:60]!r}" + ("..." if len(value) > 60 else "")
    if kind == "error":
        where = f" {event.service}" if event.service else ""
        where += f"/{event.instance_id}" if event.service and event.instance_id else ""
        where += f" node={event.node}" if event.node else ""
        return f"{event.source} {event.reason}{where}: {event.message}"
    if kind == "applied":
        # a report without a hash is switchboard's runtime step ahead of the file: the
        # detail says what it did
        what = event.config_hash[:12] or f"({event.detail})"
        return f"{event.source} node={event.node} {event.method} {what}"
    if kind in ("registry.image.pushed", "registry.image.deleted"):
        ref = event.repository + (f":{event.tag}" if event.tag else "") + \
            (f"@{event.digest}" if event.digest else "")
        size = f" {event.size} bytes" if kind == "registry.image.pushed" and event.size else ""
        return ref + size + _fields(actor=event.actor, instance=event.instance)
    if kind == "registry.step":
        text = f"{event.source} {event.operation} run={event.run_id} {event.step} " \
            f"{event.status}" + _fields(instance=event.instance)
        return text + (f": {event.detail}" if event.detail else "")
    if kind == "release":
        rel = event.release
        what = f"{rel.kind} of {rel.rollback_of}" if rel.rollback_of else rel.kind
        text = f"{rel.app} release {rel.number} {what} {rel.outcome}" + \
            (f" {rel.sha[:12]}" if rel.sha else "") + (f" by {rel.pusher}" if rel.pusher else "")
        return text + (f": {rel.message}" if rel.message else "")
    if kind == "build.output":
        last = event.lines[-1] if event.lines else ""
        span = f"lines {event.first_line + 1}-{event.first_line + len(event.lines)}"
        return f"{event.app} release {event.number} {span}: " + \
            (last[:80] + ("..." if len(last) > 80 else ""))
    if kind == "deploy.failed":
        return (f"{event.app} release {event.number} {event.sha[:12]} stage={event.stage}"
                + (f" by {event.pusher}" if event.pusher else "") + f": {event.message}")
    return ""


def _fields(**values: str) -> str:
    """`` key=value`` for each non-empty value, in order (``""`` when all are empty)."""
    return "".join(f" {key}={value}" for key, value in values.items() if value)


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
    stamp = meta.timestamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    try:
        event = decode_event(msg.data)
        text = f"{event.type} {_summary(event)}"
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        text = f"undecodable: {err}"
    return _printable(f"{stamp} {meta.sequence.stream:>8} {msg.subject} {text}")


async def _connect(settings: CommonSettings, name: str, closed_cb=None):
    try:
        return await connect_nats(settings, name=name, fail_fast=True, closed_cb=closed_cb)
    except Exception as err:
        raise ConnectionError(unreachable_message(settings, err)) from None


async def tail(settings: CommonSettings, *, subject: str, as_json: bool,
               out: TextIO = sys.stdout, err: TextIO = sys.stderr,
               stop: asyncio.Event | None = None, retry_s: float = 1.0) -> None:
    """Print live events on ``subject`` until ``stop`` is set (or the task is cancelled).

    The first connection fails fast (:class:`ConnectionError` with the reason). When NATS goes
    away later, a line on ``err`` says so, and tail tries again every ``retry_s`` seconds;
    once back, it resumes right after the last stream sequence it had reached, so the
    events published meanwhile are printed, in order, none twice (as long as the stream
    still holds them). If the stream restarted from scratch (its last sequence is lower
    than where tail stood), tail prints it from its first event and says so.
    """
    stop = stop or asyncio.Event()
    next_seq: int | None = None  # the first stream sequence not yet printed
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    async def on_msg(msg) -> None:
        nonlocal next_seq
        next_seq = msg.metadata.sequence.stream + 1
        print(format_line(msg, as_json=as_json), file=out, flush=True)

    nc = await _connect(settings, "unify-cli-tail", on_closed)
    try:
        while True:
            js = nc.jetstream()
            try:
                last = (await js.stream_info(settings.stream)).state.last_seq
            except NotFoundError:
                raise ValueError(f"NATS has no stream {settings.stream!r} (consul-bridge "
                                 "creates it when it starts)") from None
            if next_seq is None:
                config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
                next_seq = last + 1
            elif last + 1 < next_seq:
                print(f"unify: the stream restarted (last sequence {last}, tail was at "
                      f"{next_seq - 1}); printing it from its first event", file=err,
                      flush=True)
                config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
            else:
                config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                        opt_start_seq=next_seq)
            await js.subscribe(subject, stream=settings.stream, cb=on_msg,
                               ordered_consumer=True, config=config)
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(closed.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
            if stop.is_set():
                return
            print(f"unify: lost the connection to NATS; trying again every {retry_s:g} s",
                  file=err, flush=True)
            nc = await _reconnect(settings, closed, on_closed, stop, retry_s)
            if nc is None:
                return
            print(f"unify: connected to NATS again; resuming after sequence "
                  f"{next_seq - 1}", file=err, flush=True)
    finally:
        if nc is not None and not nc.is_closed:
            await nc.close()


async def _reconnect(settings: CommonSettings, closed: asyncio.Event, on_closed,
                     stop: asyncio.Event, retry_s: float):
    """A new connection once NATS answers again and holds the stream (``None`` if ``stop``
    is set first), trying every ``retry_s`` seconds."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), retry_s)
            return None
        except TimeoutError:
            pass
        closed.clear()
        try:
            nc = await _connect(settings, "unify-cli-tail", on_closed)
        except ConnectionError:
            continue
        try:
            await nc.jetstream().stream_info(settings.stream)
        except Exception:  # not there (yet), or the server went again
            if not nc.is_closed:
                await nc.close()
            continue
        return nc
    return None


async def replay(settings: CommonSettings, *, subject: str = subjects.ALL,
                 since: dt.datetime | None = None, from_seq: int | None = None,
                 until: dt.datetime | None = None, as_json: bool = False,
                 out: TextIO = sys.stdout) -> int:
    """Print the events of a window in stream order; returns how many were printed.

    :param since: first event time (inclusive). Exactly one of ``since``/``from_seq``.
    :param from_seq: first stream sequence (inclusive).
    :param until: last event time (inclusive); default: the newest event at start.
    :raises ValueError: neither or both of ``since`` and ``from_seq``; ``until`` before
        ``since``.
    """
    if (since is None) == (from_seq is None):
        raise ValueError("give exactly one of --since or --from-seq")
    if since is not None and until is not None and until < since:
        raise ValueError(f"--until ({until.isoformat()}) is before --since "
                         f"({since.isoformat()}): the window is empty")
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
            assert since is not None, "exactly one of since and from_seq (checked above)"
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = since.astimezone(dt.UTC)
        psub = await js.pull_subscribe(subject, stream=settings.stream, config=config)
        printed = 0
        if (await psub.consumer_info()).num_pending == 0:
            await psub.unsubscribe()
            return 0
        while True:
            try:
                msgs = await psub.fetch(batch=256, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):
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
