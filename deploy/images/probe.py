#!/usr/bin/env python3
"""Container HEALTHCHECK probe (standard library only, so it runs in every Unify image).

Asks ``UNIFY_PROBE_URL`` when it is set (Consul, NATS, moto and registry images), else
``/readyz`` on ``UNIFY_HEALTH_ADDR`` (a Unify service; ``0.0.0.0`` is asked on ``127.0.0.1``).
An ``https`` URL is verified with the CA file ``UNIFY_PROBE_CA`` when set (a registry serving
registry-admin's certificate). Exit status 0 on a 2xx answer within 3 s, 1 otherwise (the
reason on stderr, which Docker keeps in the container's health log).
"""

import os
import ssl
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = os.environ.get("UNIFY_PROBE_URL", "")
    if not url:
        host, _, port = os.environ.get("UNIFY_HEALTH_ADDR", "").rpartition(":")
        if not port.isdigit():
            print("probe: neither UNIFY_PROBE_URL nor UNIFY_HEALTH_ADDR is set", file=sys.stderr)
            return 1
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        url = f"http://{host}:{port}/readyz?verbose"
    try:
        ca = os.environ.get("UNIFY_PROBE_CA", "")
        context = ssl.create_default_context(cafile=ca) if ca else None
        with urllib.request.urlopen(url, timeout=3, context=context) as resp:
            return 0 if 200 <= resp.status < 300 else 1
    except urllib.error.HTTPError as err:
        print(err.read(2000).decode(errors="replace"), file=sys.stderr, end="")
        return 1
    except OSError as err:
        print(f"probe: {url}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
