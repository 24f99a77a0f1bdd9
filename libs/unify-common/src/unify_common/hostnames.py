"""The one host-name rule of Unify: what DNS (dns411) and HAProxy (switchboard) both accept.

A name is judged in presentation form, lower case, without the trailing dot
(``web.example.com``): at most 253 characters in all (RFC 1035 section 2.3.4: 255 octets on
the wire), dot-separated labels of 1-63 characters (RFC 1035 section 2.3.4), each of letters,
digits and ``-`` and neither starting nor ending with ``-`` (RFC 1123 section 2.1). A name a
service serves, such as ``<vhost>.<domain>``, is judged whole, after joining: both parts may be
valid while the joined name is too long.

Both services report a refused name with the reason word ``invalid-name`` and the message
:func:`name_error` returns, so an operator reads the same words from either.
"""

from __future__ import annotations

import functools
import re

__all__ = ["CHARACTERS", "MAX_LABEL_LEN", "MAX_NAME_LEN", "hostname_problem", "is_hostname", "name_error",
           "normalize_name"]

#: Longest name in presentation form without the trailing dot (RFC 1035 section 2.3.4).
MAX_NAME_LEN = 253
#: Longest label (RFC 1035 section 2.3.4).
MAX_LABEL_LEN = 63
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
#: The problem word of a name made of characters outside the rule (see :func:`hostname_problem`).
CHARACTERS = "must be letters, digits and '-' in dot-separated labels"


def normalize_name(name: str) -> str:
    """Lower case, without surrounding blanks and a trailing dot. Does not validate."""
    return name.strip().rstrip(".").lower()


def hostname_problem(name: str) -> str | None:
    """What is wrong with ``name`` (already normalised, see :func:`normalize_name`), or ``None``
    when it is a valid host name. Lengths are checked first, so a huge hostile input costs
    nothing more.

    :returns: ``"is <n> characters long; at most 253 are allowed"``, ``"has a label of <n>
        characters; at most 63 are allowed"`` or :data:`CHARACTERS` (empty labels, other
        characters, a label starting or ending with ``-``).
    """
    if len(name) > MAX_NAME_LEN:
        return f"is {len(name)} characters long; at most {MAX_NAME_LEN} are allowed"
    return _bounded_problem(name)


@functools.lru_cache(maxsize=65536)  # the catalog repeats the same names on every reconcile
def _bounded_problem(name: str) -> str | None:
    longest = max(map(len, name.split(".")))
    if longest > MAX_LABEL_LEN:
        return f"has a label of {longest} characters; at most {MAX_LABEL_LEN} are allowed"
    if not _HOSTNAME_RE.match(name):
        return CHARACTERS
    return None


def is_hostname(name: str) -> bool:
    """True when ``name`` (already normalised) passes the rule (see :func:`hostname_problem`)."""
    return hostname_problem(name) is None


def name_error(name: str) -> str | None:
    """The message for an ``invalid-name`` problem about ``name`` (a name a service would
    serve, e.g. ``<vhost>.<domain>``), or ``None`` when the name is valid. The name is shown
    cut to 60 characters: ``name 'aaaa...' is 254 characters long; at most 253 are allowed``.
    """
    problem = hostname_problem(name)
    if problem is None:
        return None
    shown = name if len(name) <= 60 else name[:57] + "..."
    return f"name {shown!r} {problem}"
