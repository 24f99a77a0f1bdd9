"""registry-admin: the private registry cluster's CA and server certificate (SANs from the
catalog), shared ``REGISTRY_HTTP_SECRET``, trust on every engine, notifications -> events,
rolling restarts, listing and safe garbage collection. See the service README."""
