"""Temporary alias while imports move: the dev stack lives in :mod:`unify_testkit.devstack`.
(Removed once no file imports ``unify_cli.devstack``.)"""

import importlib
import sys

for _name in ("consul", "dnsmasq", "haproxy", "moto", "nats", "process", "stack"):
    sys.modules[f"{__name__}.{_name}"] = importlib.import_module(f"unify_testkit.devstack.{_name}")
