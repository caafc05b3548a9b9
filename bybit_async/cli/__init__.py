"""The ``bybit-async`` command line.

``bybit-async demo`` runs the no-keys demo against the built-in simulator.
``bybit-async set-auto-add-margin SYMBOL ... --on|--off`` sets the flag on
every symbol concurrently through one `BybitSession`, so
the session's limiter keeps the whole batch under Bybit's rate limits.  It
prints a table (with a progress bar on a terminal), or one JSON object per
symbol with ``--json``.  ``bybit-async ensure-auto-add-margin [SYMBOL ...]
--on|--off`` reads the position list first and writes only the positions
whose flag differs (see `bybit_async.positions`).  ``bybit-async
guard-auto-add-margin [SYMBOL ...] --on|--off`` keeps it so until stopped,
through the private stream (see `bybit_async.guard`).

Each command is a module of this package that defines a `Command`
(``COMMAND``); `COMMANDS` lists them, in the order ``--help`` shows them.
Adding a command is adding its module and its line there.  What commands
share lives in ``common`` (exit statuses, signals, option types),
``credentials`` (key and symbols files), ``session_setup`` (the session the
options describe) and ``output`` (tables and JSON lines).

The table needs ``rich`` from the ``cli`` extra, imported only here and only
when a table is printed; ``--json`` and ``import bybit_async`` never need it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from . import demo, ensure_auto_add_margin, guard_auto_add_margin, set_auto_add_margin
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROG,
    RICH_MISSING,
    Command,
    UsageError,
)
from .credentials import load_credentials, parse_key_file, read_symbols_file
from .output import Outcome

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "RICH_MISSING",
    "Command",
    "Outcome",
    "UsageError",
    "__version__",
    "build_parser",
    "load_credentials",
    "main",
    "parse_key_file",
    "read_symbols_file",
]

#: Every command, in the order ``bybit-async --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    demo.COMMAND,
    set_auto_add_margin.COMMAND,
    ensure_auto_add_margin.COMMAND,
    guard_auto_add_margin.COMMAND,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``bybit-async`` command line."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Command line for bybit_async, an asyncio client for Bybit V5."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def _exit_status(code: object) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_USAGE


def _run(argv: list[str]) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    if extra:
        if not command.takes_symbols or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        # argparse gives SYMBOL... only the first run of positionals; let
        # symbols also follow options, as in "BTCUSDT --on ETHUSDT".
        args.symbols += extra
    try:
        return command.run(args)
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bybit-async`` command line with *argv* (default ``sys.argv[1:]``).

    Return the exit status: `EXIT_OK`, `EXIT_FAILED`,
    `EXIT_USAGE`, `EXIT_INTERRUPTED` or `EXIT_TERMINATED`.
    """
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        # argparse's errors and --help, and rich when stdout's reader has gone.
        return _exit_status(exc.code)
    except KeyboardInterrupt:
        # Ctrl-C outside the requests (starting up, say); the run itself handles its own.
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
