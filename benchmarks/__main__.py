"""``python -m benchmarks``: see :func:`benchmarks.cli.main`."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
