"""``python -m dns411`` / ``unify-dns411``: see :mod:`dns411.cli`."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
