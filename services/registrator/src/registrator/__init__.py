"""registrator: Unify's own registrator (one per node).

It keeps the services of the node's Consul agent equal to the node's running containers,
following gliderlabs/registrator's documented rules (see ``services/registrator/README.md``):
a pure core (:mod:`.rules`: container inspect data -> wanted registrations; :mod:`.plan`:
current vs wanted -> register/deregister) and a thin shell (:mod:`.service`: Docker events and
resyncs in, Consul agent API out, error events to NATS).
"""

__version__ = "0.1.0"
