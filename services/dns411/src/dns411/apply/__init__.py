"""Sinks: where desired records go (dnsmasq files and process, Route 53)."""
