"""The catalog state as plain data (no I/O): what every reconciler's pure core takes.

:class:`CatalogState` is built by :class:`unify_common.catalog.CatalogMirror` from the catalog
KV bucket; pure modules import it from here so they pull in no NATS or asyncio code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import Instance, KvEntry

__all__ = ["CatalogState"]


@dataclass(frozen=True)
class CatalogState:
    """A consistent snapshot of the catalog.

    ``instances`` maps catalog key → instance; ``kv`` maps the *Consul* key → entry;
    ``revision`` is the bucket's stream sequence the snapshot includes (0 = empty bucket).
    """

    instances: dict[str, Instance] = field(default_factory=dict)
    kv: dict[str, KvEntry] = field(default_factory=dict)
    revision: int = 0

    def by_service(self) -> dict[str, list[Instance]]:
        """Instances grouped by service name, each list sorted by (node, instance id)."""
        grouped: dict[str, list[Instance]] = {}
        for inst in self.instances.values():
            grouped.setdefault(inst.service, []).append(inst)
        for insts in grouped.values():
            insts.sort(key=lambda i: (i.node, i.instance_id))
        return grouped
