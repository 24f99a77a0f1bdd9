"""The record model of dns411: what a name should resolve to (the problems met building it are
:class:`unify_common.problems.Problem`, the one problem type of every service)."""

from __future__ import annotations

import msgspec

from unify_common.problems import Problem

__all__ = ["ADDRESS_TYPES", "RECORD_TYPES", "RecordSet", "Desired"]

#: Record types dns411 manages (Route 53 and dnsmasq both serve them).
RECORD_TYPES = ("A", "AAAA", "CNAME")
ADDRESS_TYPES = ("A", "AAAA")


class RecordSet(msgspec.Struct, frozen=True, order=True):
    """One record set (Route 53's term): every value of one ``type`` at one ``name``.

    ``name`` is normalised (lower case, no trailing dot); ``values`` are sorted and unique
    (IPv4/IPv6 text for A/AAAA, one normalised target name for CNAME); ``ttl`` is seconds.
    ``origin`` says where it came from: ``catalog``, ``kv`` (Consul KV), ``file`` (a
    hosts-style file) or ``route53`` (replica mode).
    """

    name: str
    type: str
    values: tuple[str, ...]
    ttl: int
    origin: str = "catalog"

    @property
    def key(self) -> tuple[str, str]:
        """``(name, type)``: the identity of a record set."""
        return (self.name, self.type)

    def same_data(self, other: RecordSet) -> bool:
        """Equal values and TTL (origin ignored)."""
        return self.values == other.values and self.ttl == other.ttl


class Desired(msgspec.Struct, frozen=True):
    """The desired records (sorted by ``(name, type)``) and the problems met building them;
    ``domains`` are the catalog's ``dns=`` domains (sorted), for reports per domain;
    ``pending`` the vhost names (sorted) whose CNAME waits for switchboard's verdict."""

    records: tuple[RecordSet, ...] = ()
    problems: tuple[Problem, ...] = ()
    domains: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    def by_key(self) -> dict[tuple[str, str], RecordSet]:
        """Records keyed by ``(name, type)``."""
        return {r.key: r for r in self.records}
