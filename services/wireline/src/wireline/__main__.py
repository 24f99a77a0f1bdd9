"""``python -m wireline`` / ``unify-wireline``: see :mod:`wireline.service`."""

from __future__ import annotations

import sys

from .service import main

if __name__ == "__main__":
    sys.exit(main())
