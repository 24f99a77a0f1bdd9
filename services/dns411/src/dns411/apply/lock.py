"""One Route 53 writer at a time: the shared Consul session lock, under dns411's name."""

from unify_common.lock import SessionLock as WriterLock

__all__ = ["WriterLock"]
