"""Unify's test kit: what the tests, their fixtures, the benchmarks and ``unify dev up`` share,
kept out of the product packages.

* :func:`wait_until` (blocking) and :func:`unify_testkit.aio.wait_until` (async, same
  signature): poll a probe until a condition holds, failing with the last value seen.
* :mod:`unify_testkit.devstack`: the real components as processes on loopback (Consul,
  nats-server, HAProxy, dnsmasq, moto) and :class:`~unify_testkit.devstack.stack.DevStack`,
  the whole stack ``unify dev up`` and the end-to-end tests run.
* :mod:`unify_testkit.demo_backend`: a tiny real HTTP backend that answers with its name
  (``python -m unify_testkit.demo_backend --port P --name N``).

Installed editable by ``scripts/setup.sh``; the CLI needs it only for ``unify dev``
(``pip install 'unify-cli[dev]'``).
"""

from .poll import NOT_YET, NotReached, returns, wait_until

__all__ = ["NOT_YET", "NotReached", "returns", "wait_until"]
