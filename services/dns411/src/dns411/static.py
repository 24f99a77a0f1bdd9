"""Static records from Consul KV and from hosts-style files (pure parsing, no I/O).

Consul KV: every key under the prefix (default ``unify/dns/``) names one record:
``unify/dns/<fqdn>`` with a value of either one or more IP addresses (separated by commas
or white space: A and/or AAAA) or exactly one host name (CNAME). Anything else (a value that is not UTF-8 included) is an
``invalid-static`` problem for that key only.

Hosts-style files follow hosts(5): ``<address> <name> [<name>...]`` per line, ``#`` starts
a comment. Several lines may give one name several addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from unify_common.events import KvEntry
from unify_common.problems import Problem

from .model import RecordSet
from .names import is_hostname, normalize_name, parse_address

__all__ = ["records_from_hosts", "records_from_kv"]


def _collect(pairs: Iterable[tuple[str, str, str]], ttl: int, origin: str) -> list[RecordSet]:
    grouped: dict[tuple[str, str], set[str]] = {}
    for name, rtype, value in pairs:
        grouped.setdefault((name, rtype), set()).add(value)
    return [RecordSet(name=n, type=t, values=tuple(sorted(v)), ttl=ttl, origin=origin)
            for (n, t), v in sorted(grouped.items())]


def records_from_kv(kv: Mapping[str, KvEntry], prefix: str, ttl: int
                    ) -> tuple[list[RecordSet], list[Problem]]:
    """Parse the KV entries under ``prefix`` (other keys are ignored).

    :returns: (record sets with origin ``kv`` sorted by key, problems sorted).
    """
    pairs: list[tuple[str, str, str]] = []
    problems: list[Problem] = []
    for key in sorted(kv):
        if not key.startswith(prefix) or key == prefix:
            continue
        name = normalize_name(key[len(prefix):])
        shown = key if len(key) <= 120 else key[:117] + "..."
        if not is_hostname(name):
            problems.append(Problem("invalid-static", f"KV key {shown!r}: not a DNS name"))
            continue
        text = kv[key].text
        if text is None:
            problems.append(Problem("invalid-static", f"KV key {shown!r}: value is not UTF-8 "
                                    "text"))
            continue
        tokens = text.replace(",", " ").split()
        addresses = [parse_address(t) for t in tokens]
        if tokens and all(addresses):
            pairs.extend((name, rtype, value) for rtype, value in addresses)  # type: ignore[misc]
            continue
        target = normalize_name(tokens[0]) if len(tokens) == 1 else ""
        if target and is_hostname(target) and target != name:
            pairs.append((name, "CNAME", target))
            continue
        problems.append(Problem("invalid-static", f"KV key {shown!r}: value must be IP "
                                "addresses or exactly one host name"))
    return _collect(pairs, ttl, "kv"), sorted(problems)


def records_from_hosts(text: str, source: str, ttl: int
                       ) -> tuple[list[RecordSet], list[Problem]]:
    """Parse one hosts-style file's ``text``; ``source`` names it in problems.

    :returns: (A/AAAA record sets with origin ``file`` sorted by key, problems in line order).
    """
    pairs: list[tuple[str, str, str]] = []
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        parsed = parse_address(fields[0])
        names = [normalize_name(f) for f in fields[1:]]
        bad = [n for n in names if not is_hostname(n)]
        if parsed is None or not names or bad:
            problems.append(Problem("invalid-static",
                                    f"{source} line {number}: expected '<address> <name>...'"))
            continue
        pairs.extend((n, parsed[0], parsed[1]) for n in names)
    return _collect(pairs, ttl, "file"), problems
