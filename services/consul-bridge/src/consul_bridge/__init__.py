"""consul-bridge: turns Consul catalog and KV changes into Unify events on NATS JetStream."""
