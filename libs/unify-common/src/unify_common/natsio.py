"""NATS and JetStream plumbing: connect with credentials/TLS, declare the stream and the
catalog bucket, wait for them, publish events with deterministic message ids.

Stream ``settings.stream`` (default ``UNIFY``) holds every subject under ``unify.``, on file
storage, with a 2-minute duplicate window (JetStream drops a second message with the same
``Nats-Msg-Id`` inside it) and a retention of ``UNIFY_STREAM_MAX_AGE`` seconds (default 7 days),
so operators can replay a window. The catalog bucket keeps one value per key.

One component owns both: consul-bridge declares them (:func:`ensure_stream`,
:func:`ensure_catalog_bucket`) and is the only one that sets the stream's retention. Every
other component only waits for them to exist (:func:`wait_for_catalog`), so restarting a
subscriber never rewrites the stream's configuration.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from . import subjects
from .events import Event, encode_event
from .logs import Logger, get_logger, mask_secrets
from .retry import retry_until
from .settings import CommonSettings

__all__ = ["connect_nats", "ensure_catalog_bucket", "ensure_stream", "publish_event",
           "unreachable_message", "wait_for_catalog", "CatalogMissing", "MSG_ID_HEADER"]

MSG_ID_HEADER = "Nats-Msg-Id"
log = get_logger("unify.nats")
DUPLICATE_WINDOW_S = 120.0


def unreachable_message(settings: CommonSettings, err: BaseException) -> str:
    """The one-line error a command prints when NATS cannot be reached: where it looked,
    why, and how to point it elsewhere. Secrets inside the URLs (and the error) are masked
    (:func:`~unify_common.logs.mask_secrets`): the line goes to terminals and CI logs."""
    why = ("no answer" if isinstance(err, TimeoutError)
           else str(err) or type(err).__name__)
    return mask_secrets(f"cannot reach NATS at {', '.join(settings.nats_urls)} ({why}); set "
                        "NATS_URL (for the dev stack: source .unify/dev/env)")


async def connect_nats(settings: CommonSettings, *, name: str, fail_fast: bool = False,
                       closed_cb: Callable[[], Awaitable[None]] | None = None) -> NATS:
    """Connect to ``settings.nats_urls`` as client ``name``, reconnecting forever — or, with
    ``fail_fast`` (one-shot commands), trying each server once and raising; the connection
    then closes for good when the server goes away, and ``closed_cb`` (if given) is awaited.

    Uses ``NATS_CREDS`` (a ``.creds`` file), or ``NATS_USER``/``NATS_PASSWORD``; TLS when
    ``NATS_CA`` or ``NATS_CERT``/``NATS_KEY`` are set or a URL is ``tls://``. While no
    server answers, the first failure is logged as one warning line (``unify.nats``), the
    retries at debug level, and the first success after them as one info line.

    :raises nats.errors.NoServersError: no server answered the first connection attempt.
    """
    outage = _OutageLog(name)
    options: dict[str, Any] = {"name": name, "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
                     "connect_timeout": 5, "error_cb": outage.error,
                     "reconnected_cb": outage.restored}
    if fail_fast:
        async def quiet(_err: Exception) -> None:  # the caller reports the failure once
            return None

        options.update(max_reconnect_attempts=1, allow_reconnect=False, connect_timeout=3,
                       error_cb=quiet)
    if closed_cb is not None:
        options["closed_cb"] = closed_cb
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    elif settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password.get_secret_value()
    if settings.nats_ca or settings.nats_cert:
        context = ssl.create_default_context(cafile=settings.nats_ca or None)
        if settings.nats_cert:
            context.load_cert_chain(settings.nats_cert, settings.nats_key or None)
        options["tls"] = context
    nc = await nats.connect(list(settings.nats_urls), **options)
    await outage.restored()
    return nc


class _OutageLog:
    """What a connection reports while its servers are unreachable. nats-py hands every
    failed attempt to ``error_cb`` (by default a traceback at error level, every half second
    while a server is down); here the first failure of an outage is one warning line, the
    repeats are debug lines, and the first success after it one info line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False

    async def error(self, err: Exception) -> None:
        reason = str(err) or type(err).__name__
        if self.down:
            log.debug("NATS still unreachable; retrying", client=self.name, error=reason)
            return
        self.down = True
        log.warning("NATS unreachable; retrying", client=self.name, error=reason)

    async def restored(self) -> None:
        if self.down:
            self.down = False
            log.info("NATS connection restored", client=self.name)


async def ensure_stream(js: JetStreamContext, settings: CommonSettings) -> None:
    """Create the events stream, or update it to the expected subjects and limits. Only the
    stream's owner (consul-bridge) calls this; everyone else :func:`wait_for_catalog`.

    :raises nats.js.errors.APIError: the server refused (e.g. no JetStream, no permission).
    """
    config = StreamConfig(
        name=settings.stream,
        subjects=[subjects.ALL],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=settings.stream_max_age,
        allow_direct=True,
    )
    try:
        await js.stream_info(settings.stream)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError:
            pass  # another component created it in between
    await js.update_stream(config)


async def ensure_catalog_bucket(js: JetStreamContext, settings: CommonSettings) -> KeyValue:
    """Open the catalog KV bucket, creating it (history 1, file storage) when missing. Only
    its writer (consul-bridge) calls this; readers :func:`wait_for_catalog`."""
    try:
        return await js.key_value(settings.catalog_bucket)
    except Exception:  # BucketNotFoundError, or a race with another creator
        return await js.create_key_value(
            KeyValueConfig(bucket=settings.catalog_bucket, history=1,
                           storage=StorageType.FILE, description="Unify catalog state"))


class CatalogMissing(RuntimeError):
    """The events stream or the catalog bucket still does not exist after the wait."""


async def wait_for_catalog(js: JetStreamContext, settings: CommonSettings, *,
                           timeout: float = 120.0, log: Logger | logging.Logger,
                           clock: Callable[[], float] = time.monotonic) -> KeyValue:
    """Wait until the events stream and the catalog bucket exist (consul-bridge declares
    both), then open the bucket. Nothing is created or changed: a subscriber that starts
    before the bridge waits for it, with a logged retry and capped backoff (0.2 s to 5 s).

    :param timeout: seconds to wait in all.
    :returns: the catalog bucket.
    :raises CatalogMissing: still missing after ``timeout`` seconds (the message names what
        and who declares it).
    """
    async def probe() -> KeyValue:
        try:
            await js.stream_info(settings.stream)
        except NotFoundError:
            raise CatalogMissing(f"stream {settings.stream} does not exist yet") from None
        try:
            return await js.key_value(settings.catalog_bucket)
        except NotFoundError:  # BucketNotFoundError is a NotFoundError
            raise CatalogMissing(
                f"catalog bucket {settings.catalog_bucket} does not exist yet") from None

    try:
        return await retry_until(probe, what="waiting for the catalog (consul-bridge "
                                 "declares it)", log=log, timeout=timeout, base=0.1, cap=5.0,
                                 retry_on=(CatalogMissing,), clock=clock)
    except CatalogMissing as err:
        raise CatalogMissing(f"{err} after {timeout:g} s: consul-bridge declares the stream "
                             "and the catalog bucket; is it running against this NATS?") from None


async def publish_event(js: JetStreamContext, subject: str, event: Event, *,
                        msg_id: str, headers: dict[str, str] | None = None) -> int:
    """Publish ``event`` on ``subject`` with ``Nats-Msg-Id: msg_id``.

    :returns: the stream sequence (the earlier one when JetStream saw it as a duplicate).
    :raises nats.errors.TimeoutError: JetStream did not acknowledge in time.
    """
    all_headers = {MSG_ID_HEADER: msg_id, "Unify-Schema": str(event.schema)}
    if headers:
        all_headers.update(headers)
    ack = await js.publish(subject, encode_event(event), headers=all_headers)
    return ack.seq
