"""registry-admin: private registry TLS certificates, secrets and notifications (not built yet)."""
