"""DNS name rules shared by the pure core: validation, normalisation, hosted-zone matching.

Names are handled in presentation form, lower case, without the trailing dot
(``web.example.com``). DNS compares names case-insensitively (RFC 4343), so lower-casing
at the edge makes every later comparison exact.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

# the one host-name rule, shared with switchboard (see unify_common.hostnames)
from unify_common.hostnames import MAX_NAME_LEN, is_hostname, name_error, normalize_name

__all__ = ["is_hostname", "name_error", "normalize_name", "parse_address", "zone_for",
           "MAX_NAME_LEN"]


@functools.lru_cache(maxsize=65536)
def parse_address(text: str) -> tuple[str, str] | None:
    """(Cached: the catalog repeats the same addresses on every reconcile.) ``("A", "10.0.0.1")`` or ``("AAAA", "2001:db8::1")`` (compressed form), or ``None``
    when ``text`` is not an IP address. Zone indexes (``fe80::1%eth0``) are refused."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if getattr(addr, "scope_id", None):
        return None
    return ("A", str(addr)) if addr.version == 4 else ("AAAA", addr.compressed)


def zone_for(name: str, zone_names: Iterable[str]) -> str | None:
    """The zone name that is the longest *suffix* of ``name`` on a label boundary.

    ``zone_for("web.dev.example.com", ["example.com", "dev.example.com"])`` is
    ``"dev.example.com"``; ``"badexample.com"`` is never in zone ``"example.com"``
    (suffix, never substring). Inputs are compared after :func:`normalize_name`.
    Returns ``None`` when no zone matches.
    """
    name = normalize_name(name)
    best: str | None = None
    for zone in zone_names:
        z = normalize_name(zone)
        if name == z or name.endswith("." + z):
            if best is None or len(z) > len(best):
                best = z
    return best
