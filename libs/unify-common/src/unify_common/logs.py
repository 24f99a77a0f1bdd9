"""Structured logging: ``key=value`` text by default, one JSON object per line on request.

Use ``log.info("message", extra={"fields": {...}})``; field names that look like secrets
(``token``, ``password``, ``secret``, ``authorization``, ``creds``) are masked, whatever the
caller passes, and so are secrets inside URLs anywhere in a line (message, field values,
tracebacks): see :func:`mask_secrets`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

__all__ = ["configure_logging", "get_logger", "mask_secrets"]

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


def _clean(fields: dict) -> dict:
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


def configure_logging(*, fmt: str = "text", level: str = "INFO") -> None:
    """Send logs to stderr in ``fmt`` (``text`` or ``json``) at ``level``.

    :raises ValueError: unknown format or level.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("nats").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    """A standard library logger; pass structured data as ``extra={"fields": {...}}``."""
    return logging.getLogger(name)
