"""Structured logging: ``key=value`` text by default, one JSON object per line on request.

Use ``log.info("message", extra={"fields": {...}})``; field names that look like secrets
(``token``, ``password``, ``secret``, ``authorization``, ``creds``) are masked, whatever the
caller passes.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["configure_logging", "get_logger"]

_SECRET_WORDS = ("token", "password", "secret", "authorization", "creds", "credential")


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
        return json.dumps(out, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _clean(getattr(record, "fields", {}) or {})
        extra = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


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
