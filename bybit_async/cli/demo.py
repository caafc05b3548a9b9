"""``bybit-async demo``: the no-keys demo against the built-in simulator."""

from __future__ import annotations

import argparse
import asyncio
import functools

from .common import EXIT_FAILED, EXIT_OK, Command

__all__ = ["COMMAND"]

NAME = "demo"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to *commands*."""
    commands.add_parser(
        NAME,
        help="set auto-add-margin on 50 symbols against the built-in simulator; no keys needed",
        description="Set auto-add-margin on 50 symbols through a real session against the "
        "built-in Bybit simulator, and report what happened.  Needs no keys or network.",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; return its exit status."""
    from ..demo import run_demo

    failed = asyncio.run(run_demo(functools.partial(print, flush=True)))
    # The demo's refusals are planted; it succeeds when the rest went through.
    return EXIT_OK if failed <= 2 else EXIT_FAILED


#: The ``demo`` command.
COMMAND = Command(NAME, add_parser, run)
