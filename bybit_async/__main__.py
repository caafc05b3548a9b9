"""``python -m bybit_async``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .demo import run_demo

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line with *argv*; return the exit status."""
    parser = argparse.ArgumentParser(prog="bybit-async", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="set auto-add-margin on 50 symbols against the simulator")
    args = parser.parse_args(argv)
    if args.command == "demo":
        failed = asyncio.run(run_demo())
        # The demo's refusals are planted; it succeeds when the rest went through.
        return 0 if failed <= 2 else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
