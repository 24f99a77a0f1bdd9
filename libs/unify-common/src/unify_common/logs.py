"""Structured logging: ``key=value`` text by default, one JSON object per line on request.

Log with fields as keyword arguments::

    log = get_logger("consul_bridge")
    log.info("instance skipped", service=name, instance=instance_id, reason=why)
    log.error("bridge failed; restarting", exc_info=err)

The standard keywords (``exc_info``, ``stack_info``, ``stacklevel``, ``extra``) keep their
meaning; every other keyword is a field. Unify's own code logs only this way; the formatters
read the record's ``fields`` dict, so a plain :mod:`logging` logger given
``extra={"fields": {...}}`` writes the same line (and the adapter merges such fields too).
A field named like a secret (``token``, ``password``, ``secret``, ``authorization``, ``creds``,
``credential``) is masked, whatever the caller passes, and so are secrets inside URLs anywhere
in a written line (message, field values, tracebacks): see :func:`mask_secrets`.

Why an adapter over the standard library and not structlog: the libraries Unify runs on
(nats-py, botocore, aiohttp, py-consul) log through :mod:`logging`, so their records and ours
have to go through one pipeline anyway; a :class:`logging.LoggerAdapter` of a few lines gives
keyword fields on top of it with one pair of formatters, one place for masking, records that
tests read as ``record.fields``, and no second configuration or dependency.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "Logger", "configure_logging", "get_logger",
           "log_format", "log_level", "mask_secrets"]

#: the values of ``UNIFY_LOG_FORMAT``
LOG_FORMATS = ("text", "json")
#: the values of ``UNIFY_LOG_LEVEL`` (any case): the standard library's level names
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def log_format(value: str) -> str:
    """``value`` as a log format (one of :data:`LOG_FORMATS`; case and spaces ignored).

    :raises ValueError: any other value, with a message naming ``UNIFY_LOG_FORMAT``.
    """
    fmt = value.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"UNIFY_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}; "
                         f"got {value!r}")
    return fmt


def log_level(value: str) -> str:
    """``value`` as an upper-case :mod:`logging` level name (one of :data:`LOG_LEVELS`, in
    any case).

    :raises ValueError: any other value, with a message naming ``UNIFY_LOG_LEVEL``.
    """
    level = value.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"UNIFY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}; "
                         f"got {value!r}")
    return level.upper()

_SECRET_WORDS = ("token", "password", "secret", "authorization", "creds", "credential")
#: ``scheme://user:password@`` (RFC 3986 section 3.2.1 userinfo): the password goes
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/@:\"']*):[^\s/@\"']*@")
#: ``nats://token@`` (and tls, ws, wss): NATS's token form, where the user part is the secret
_URL_TOKEN = re.compile(r"((?:nats|tls|ws|wss)://)[^\s/@:\"']+@", re.IGNORECASE)
#: ``?token=...`` / ``&password=...``: query parameters named like secrets
_QUERY_SECRET = re.compile(
    r"([?&][^\s=&#\"']*(?:" + "|".join(_SECRET_WORDS) + r"|key|signature)[^\s=&#\"']*=)"
    r"[^\s&#\"']*", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with the secrets inside URLs replaced by ``***``: the password of a
    ``scheme://user:password@host`` URL, the token of ``nats://token@host`` (NATS's token
    form, also ``tls``/``ws``/``wss``) and query parameters named like secrets
    (``?token=``, ``&password=``, ``X-Amz-Signature=``...).

    >>> mask_secrets("nats://u:secret@host:4222")
    'nats://u:***@host:4222'
    """
    if "://" not in text and "=" not in text:
        return text
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    text = _URL_TOKEN.sub(r"\1***@", text)
    return _QUERY_SECRET.sub(r"\1***", text)


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v)
            for k, v in fields.items()}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_clean(getattr(record, "fields", {}) or {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return mask_secrets(json.dumps(out, default=str, ensure_ascii=False))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _clean(getattr(record, "fields", {}) or {})
        extra = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return mask_secrets(line)


def configure_logging(*, fmt: str = "text", level: str = "INFO",
                      stream: TextIO | None = None) -> None:
    """Send logs to ``stream`` (default: stderr) in ``fmt`` (``text`` or ``json``) at
    ``level``, replacing the root logger's handlers.

    :raises ValueError: unknown format or level (:func:`log_format`, :func:`log_level`).
    """
    fmt, level = log_format(fmt), log_level(level)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("nats").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)


#: keywords that keep their :mod:`logging` meaning; every other keyword is a field
_LOGGING_KEYWORDS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})


class Logger(logging.LoggerAdapter[logging.Logger]):
    """A standard library logger that takes fields as keyword arguments:
    ``log.info("registered", id=service_id)``. The fields reach the handlers as the record's
    ``fields`` dict (what the formatters of :func:`configure_logging` write). Fields bound with
    :meth:`bind` come first; ``extra={"fields": {...}}`` (the older form) and keywords are
    merged over them, keywords last. A field cannot be named ``msg`` (nor ``level`` for
    :meth:`log`), which are the methods' own parameters.
    """

    def __init__(self, logger: logging.Logger, fields: dict[str, Any] | None = None) -> None:
        super().__init__(logger, dict(fields or {}))

    def bind(self, **fields: Any) -> Logger:
        """A logger for the same name that adds ``fields`` to every record."""
        return Logger(self.logger, {**(self.extra or {}), **fields})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]
                ) -> tuple[Any, MutableMapping[str, Any]]:
        fields = dict(self.extra or {})
        extra = kwargs.get("extra")
        if extra:
            fields.update(extra.get("fields") or {})
        for key in [k for k in kwargs if k not in _LOGGING_KEYWORDS]:
            fields[key] = kwargs.pop(key)
        if fields:
            kwargs["extra"] = {**(extra or {}), "fields": fields}
        return msg, kwargs


def get_logger(name: str | logging.Logger | Logger) -> Logger:
    """The :class:`Logger` for ``name`` (a logger name; an existing standard library logger
    is wrapped, a :class:`Logger` returned as it is)."""
    if isinstance(name, Logger):
        return name
    return Logger(name if isinstance(name, logging.Logger) else logging.getLogger(name))
