"""``python -m bybit_async`` and the ``bybit-async`` console script: see `bybit_async.cli`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._version import __version__

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bybit-async`` command line; see `bybit_async.cli.main`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        # Answered before the command line's module is imported: it pulls in
        # aiohttp and the rest, a second or more on a cold start.
        print(f"bybit-async {__version__}")
        return 0
    from .cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
