"""Desired state -> HAProxy configuration bytes, through the Jinja2 template
``templates/haproxy.cfg.j2`` (pure: no I/O beyond loading the packaged template once).

Same :class:`~switchboard.model.Desired` and :class:`RenderOptions` -> same bytes. Values are
printed as they are: :mod:`switchboard.desired` only builds a model out of validated names, and
:class:`RenderOptions` validates its own fields.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

import jinja2

from .model import Desired

__all__ = ["RenderOptions", "config_hash", "render"]

_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")
_CIPHERS_RE = re.compile(r"^[A-Za-z0-9:+_!.@=-]*$")
_DURATION_RE = re.compile(r"^[0-9]{1,6}(?:us|ms|s|m|h|d)?$")
_STATE_FLAGS = {"ready": "", "drain": " weight 0", "maint": " disabled"}


@dataclass(frozen=True, kw_only=True)
class RenderOptions:
    """Node-level settings printed into the configuration.

    :param bind: IPv4/IPv6 literal the frontends listen on (``0.0.0.0``).
    :param run_dir: absolute directory (``[A-Za-z0-9._/-]``) for HAProxy's internal UNIX
        sockets: ``status.sock`` (always answers ``ok``) and ``tls_<port>.sock`` (TLS
        termination behind an SNI pass-through port). Keep it short: socket paths are limited
        to 107 bytes.
    :param maxconn: global connection limit (keep it below half the file descriptor limit).
    :param hard_stop_after: longest life of an old worker after a reload (HAProxy time
        format, ``30s``).
    :param ssl_ciphers: OpenSSL cipher list for TLS binds (TLS 1.2 and below), or empty.
    :raises ValueError: a field is malformed (names the field).
    """

    bind: str = "0.0.0.0"
    run_dir: str = "/run/unify-switchboard"
    maxconn: int = 4000
    hard_stop_after: str = "30s"
    ssl_ciphers: str = ""

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.bind)
        except ValueError:
            raise ValueError(f"bind must be an IP address, got {self.bind!r}") from None
        if not _PATH_RE.match(self.run_dir) or len(self.run_dir) > 80:
            raise ValueError("run_dir must be an absolute path of [A-Za-z0-9._/-], "
                             f"at most 80 characters, got {self.run_dir!r}")
        if not 1 <= self.maxconn <= 1_000_000:
            raise ValueError(f"maxconn must be 1-1000000, got {self.maxconn}")
        if not _DURATION_RE.match(self.hard_stop_after):
            raise ValueError(f"hard_stop_after must look like 30s, got {self.hard_stop_after!r}")
        if not _CIPHERS_RE.match(self.ssl_ciphers):
            raise ValueError("ssl_ciphers may hold only an OpenSSL cipher list")


def _hostport(address: str, port: int) -> str:
    if ":" in address:
        return f"ipv6@{address}:{port}"
    return f"{address}:{port}"


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("switchboard", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_env.filters["hostport"] = _hostport


def render(desired: Desired, options: RenderOptions) -> bytes:
    """The complete HAProxy configuration file (UTF-8 bytes, ends with a newline)."""
    template = _env.get_template("haproxy.cfg.j2")
    text = template.render(desired=desired, options=options, state_flags=_STATE_FLAGS)
    return text.encode()


def config_hash(data: bytes) -> str:
    """SHA-256 of configuration bytes (hex), as carried by ``Applied.config_hash``."""
    return hashlib.sha256(data).hexdigest()
