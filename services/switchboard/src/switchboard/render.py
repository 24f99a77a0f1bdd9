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
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import jinja2

from .gcpause import gc_paused
from .model import Backend, Desired, Frontend

__all__ = ["RenderOptions", "Renderer", "clear_caches", "config_hash", "host_map_path", "render",
           "render_maps"]

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
    :param host_maps: plain HTTP frontends look host-only routes up in a map file,
        ``<run_dir>/<frontend name>.map`` (:func:`render_maps`), instead of one rule per
        host, so the runtime API can add a host without a reload (``add map``). The map
        files must exist before ``haproxy -c`` or a reload reads the configuration.
        False: one ``use_backend`` rule per host.
    :raises ValueError: a field is malformed (names the field).

    These defaults are the product's: :class:`~switchboard.settings.SwitchboardSettings`
    takes the defaults of its ``UNIFY_HAPROXY_BIND``, ``_MAXCONN``, ``_HARD_STOP_AFTER``,
    ``_SSL_CIPHERS`` and ``_HOST_MAPS`` from here (``run_dir`` there defaults to the
    configuration's directory instead).
    """

    bind: str = "0.0.0.0"
    run_dir: str = "/run/unify-switchboard"
    maxconn: int = 4000
    hard_stop_after: str = "30s"
    ssl_ciphers: str = ""
    host_maps: bool = True

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


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("switchboard", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
# Compiled once, when the module is imported (~20 ms), not on the first render.
# jinja2 sets a template's macros as attributes of its module object at run time, which its
# types cannot name: they are taken from the object's namespace, once.
_macros: dict[str, Callable[..., str]] = vars(_env.get_template("haproxy.cfg.j2").module)
_head_macro = _macros["head"]
_frontend_macro = _macros["frontend"]
_backend_options_macro = _macros["backend_options"]


class _ChunkCache:
    """Rendered text of one kind of chunk, keyed by the chunk's (immutable, hashable) inputs.

    Each render reads the previous render's entries and keeps only the ones it used, so the
    cache holds one configuration's worth of text however long switchboard runs. Keys are
    whole values (compared by ``==`` on a hash hit), so a hit returns exactly what rendering
    the same inputs again would.
    """

    __slots__ = ("previous", "current")

    def __init__(self) -> None:
        self.previous: dict = {}
        self.current: dict = {}

    def start(self) -> None:
        self.previous, self.current = self.current, {}

    def get(self, key, make):
        text = self.current.get(key)
        if text is None:
            text = self.previous.get(key)
            if text is None:
                text = make(key)
            self.current[key] = text
        return text


class _ChunkByIdentity(_ChunkCache):
    """Like :class:`_ChunkCache`, but keyed by the input *object* (its ``id``, the object held
    so the id stays its own): for backends, which :mod:`switchboard.desired` hands over as the
    same objects while their inputs are unchanged. A lookup costs no hash of the value (a
    backend's hash covers every server of it, at each lookup: three hashes of the whole
    catalog per render when keyed by value); an equal but new object is rendered again,
    which gives the same text."""

    __slots__ = ()

    def get(self, value, make):
        ident = id(value)
        seen = self.current.get(ident)
        if seen is None or seen[0] is not value:
            seen = self.previous.get(ident)
            if seen is None or seen[0] is not value:
                seen = (value, make(value))
            self.current[ident] = seen
        return seen[1]


@lru_cache(maxsize=4096)
def _free_lines(check: str, first: int, last: int) -> str:
    """The lines of free slots ``s<first>`` .. ``s<last>`` (inclusive; empty when
    ``first > last``)."""
    return "".join(f"    server s{index} 127.0.0.1:1{check} disabled\n"
                   for index in range(first, last + 1))


#: the end of a server line after ``<address>:<port>``, up to the key: by (check, state)
_TAILS = {check: {state: f"{check}{flags} # " for state, flags in _STATE_FLAGS.items()}
          for check in ("", " check")}
#: ``"    server s<i> "`` by ``i`` (index 0 unused), grown on demand
_PREFIXES: list[str] = [f"    server s{index} " for index in range(65)]


def _prefixes(count: int) -> list[str]:
    """:data:`_PREFIXES` holding at least indexes 1 .. ``count``."""
    if len(_PREFIXES) <= count:
        _PREFIXES.extend(f"    server s{index} " for index in range(len(_PREFIXES), count + 1))
    return _PREFIXES


@lru_cache(maxsize=1024)
def _ready_format(check: str, count: int) -> str:
    """A ``%`` format of the lines of slots ``s1`` .. ``s<count>`` all holding a server at
    an IPv4 address, ``ready`` at weight 1: three values a line, address, port and key."""
    return "".join(f"    server s{index} %s:%s{check} # %s\n" for index in range(1, count + 1))


def _server_lines(backend: Backend, lines: list[str]) -> None:
    """Append the ``server s<i>`` lines of ``backend`` to ``lines``, one per slot (format in
    the template's header comment)."""
    check = " check" if backend.check else ""
    tails = _TAILS[check]
    slots = backend.slots
    used = len(slots)
    while used and slots[used - 1] is None:
        used -= 1
    # the common case (each used slot an IPv4 server, ready, weight 1) in one format
    values: list = []
    add = values.extend
    for slot in slots[:used]:
        if (slot is None or slot.state != "ready" or slot.weight != 1
                or ":" in slot.address):
            break
        add((slot.address, slot.port, slot.key))
    else:
        lines.append(_ready_format(check, used) % tuple(values))
        lines.append(_free_lines(check, used + 1, len(slots)))
        return
    prefixes = _prefixes(used)
    append = lines.append
    index = 0
    for slot in slots[:used]:
        index += 1
        if slot is None:
            append(_free_lines(check, index, index))
            continue
        state = slot.state
        if state == "ready" and slot.weight != 1:
            tail = f"{check} weight {slot.weight} # "
        else:
            tail = tails[state]
        address = slot.address
        if ":" in address:
            address = "ipv6@" + address
        append(f"{prefixes[index]}{address}:{slot.port}{tail}{slot.key}\n")
    append(_free_lines(check, used + 1, len(slots)))


def _backend_options(key: tuple) -> str:
    return str(_backend_options_macro(*key))


class Renderer:
    """Renders configurations (:meth:`render`), caching each chunk's text across its calls.

    Chunks are cached by their inputs (the previous call's chunks are reused when their
    inputs are equal; a backend's when it is the same object), which makes a re-render after
    a small change cheap; the bytes are the same with or without the cache. Each renderer
    keeps one configuration's worth of chunks, its own: the reconciler owns one.
    """

    __slots__ = ("_heads", "_frontends", "_options", "_backends", "_backend_text")

    def __init__(self) -> None:
        self._heads, self._frontends, self._options = _ChunkCache(), _ChunkCache(), _ChunkCache()
        self._backends = _ChunkByIdentity()
        options_cache = self._options

        def backend_text(backend: Backend) -> bytes:
            options = options_cache.get(
                (backend.mode, backend.balance, backend.check, backend.server_ssl),
                _backend_options)
            lines = [f"\nbackend {backend.name}\n{options}"]
            _server_lines(backend, lines)
            return "".join(lines).encode()

        self._backend_text = backend_text

    def clear(self) -> None:
        """Forget every cached chunk (the next render starts from nothing)."""
        for cache in (self._heads, self._frontends, self._options, self._backends):
            cache.previous, cache.current = {}, {}

    def render(self, desired: Desired, options: RenderOptions) -> bytes:
        """The complete HAProxy configuration file (UTF-8 bytes, ends with a newline).

        Renders the template's ``head`` macro, one ``frontend`` chunk per frontend and one
        chunk per backend, in the order of ``desired``. Chunks are kept encoded, so the file
        is joined once, as bytes.
        """
        with gc_paused():
            for cache in (self._heads, self._frontends, self._options, self._backends):
                cache.start()
            parts = [self._heads.get(options, lambda o: str(_head_macro(o)).encode())]
            frontends = self._frontends
            for fe in desired.frontends:
                parts.append(frontends.get((fe, options, host_map_path(fe, options)),
                                           lambda k: str(_frontend_macro(*k)).encode()))
            backends, backend_text = self._backends, self._backend_text
            for backend in desired.backends:
                parts.append(backends.get(backend, backend_text))
            return b"".join(parts)


#: the renderer of :func:`render` (callers without one of their own: tests, benchmarks)
_shared = Renderer()


def clear_caches() -> None:
    """Forget every chunk :func:`render` cached (the bytes never depend on it; benchmarks
    and tests use it to render from nothing)."""
    _shared.clear()


def render(desired: Desired, options: RenderOptions) -> bytes:
    """The complete HAProxy configuration file of ``desired`` (see :meth:`Renderer.render`),
    through one renderer shared by every caller of this function; a service holds a
    :class:`Renderer` of its own."""
    return _shared.render(desired, options)


def host_map_path(frontend: Frontend, options: RenderOptions) -> str:
    """The host map file of ``frontend`` (absolute path, as written in the configuration and
    as the runtime API names the map), or ``""`` when it routes by rules only: only plain
    HTTP frontends have one, and only with ``options.host_maps``."""
    if not options.host_maps or frontend.kind != "http":
        return ""
    return f"{options.run_dir}/{frontend.name}.map"


def render_maps(desired: Desired, options: RenderOptions) -> dict[str, bytes]:
    """The content of every host map file the configuration of ``desired`` reads.

    :returns: absolute path (:func:`host_map_path`) -> bytes: one ``<host> <backend>`` line
        per host-only route of the frontend, sorted by host (HAProxy's map format: key, one
        space, value); an empty file when the frontend has none. Empty dict when
        ``options.host_maps`` is off.
    """
    maps: dict[str, bytes] = {}
    for fe in desired.frontends:
        path = host_map_path(fe, options)
        if path:
            lines = sorted(f"{r.host} {r.backend}\n" for r in fe.routes if r.prefix is None)
            maps[path] = "".join(lines).encode()
    return maps


def config_hash(data: bytes, maps: dict[str, bytes] | None = None) -> str:
    """SHA-256 (hex) of configuration bytes and the map files it reads, as carried by
    ``Applied.config_hash``; without maps it is the SHA-256 of ``data`` alone."""
    digest = hashlib.sha256(data)
    for path, text in sorted((maps or {}).items()):
        digest.update(b"\0" + path.encode() + b"\0" + text)
    return digest.hexdigest()
