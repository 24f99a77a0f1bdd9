"""Code shared by every Unify component: event schemas, the tag language, NATS/Consul
plumbing, the subscriber shell, settings and logging. Components import from the submodules
(``unify_common.events``, ``unify_common.tags``, ...)."""
