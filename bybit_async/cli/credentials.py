"""Where a command's inputs come from: the API key and secret, and the symbols."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping

from ..session import auto_add_margin_params
from .common import KEY_ENV, SECRET_ENV, UsageError

__all__ = ["load_credentials", "parse_key_file", "read_symbols_file"]

_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)\Z")

CREDENTIALS_HELP = f"""\
credentials:
  The API key and secret are read from the environment variables {KEY_ENV} and
  {SECRET_ENV}, or from --key-file, which replaces the environment when given.
  They are never taken from the command line, where other users can see them.

  A key file holds either
    * two lines: the API key, then the secret (for a self-made RSA key, the
      secret may instead be the PEM private key block, to the end of the file); or
    * NAME=VALUE lines, {KEY_ENV}=... and {SECRET_ENV}=..., optionally
      preceded by "export" and quoted; other names are ignored, so a .env file
      serves.
  Blank lines and lines starting with # are ignored.  Keep the file private
  (chmod 600).
"""


# -- credentials and files --------------------------------------------------------


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_key_file(text: str, name: str = "key file") -> tuple[str, str]:
    """Return ``(api_key, api_secret)`` from the text of a key file.

    The format is described in ``bybit-async set-auto-add-margin --help``.
    Raises `UsageError` with a message that never quotes the file's
    content, since it may hold the secret.
    """
    lines = text.removeprefix("\ufeff").splitlines()
    content = [
        (number, line.strip())
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not content:
        raise UsageError(f"{name}: empty; expected the API key and secret")
    if _ASSIGNMENT.match(content[0][1]):
        values: dict[str, str] = {}
        for number, line in content:
            match = _ASSIGNMENT.match(line)
            if match is None:
                raise UsageError(f"{name}:{number}: expected NAME=VALUE")
            values[match[1]] = _unquote(match[2].strip())
        for var in (KEY_ENV, SECRET_ENV):
            if not values.get(var):
                raise UsageError(f"{name}: {var} is missing or empty")
        return values[KEY_ENV], values[SECRET_ENV]
    (_, key), rest = content[0], content[1:]
    if rest and rest[0][1].startswith("-----BEGIN "):
        # A PEM private key: the secret is the block as written, to the end of the file.
        return key, "\n".join(lines[rest[0][0] - 1 :]).strip() + "\n"
    if len(rest) != 1:
        raise UsageError(
            f"{name}: expected two lines, the API key then the secret, "
            f"or {KEY_ENV}=... and {SECRET_ENV}=... lines"
        )
    return key, rest[0][1]


def _read_text(path: str, what: str) -> str:
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is no part
        # of the first line, which would otherwise not parse as NAME=VALUE.
        if path == "-":
            return sys.stdin.read().removeprefix("\ufeff")
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise UsageError(f"cannot read {what} {path}: {reason}") from None


def load_credentials(key_file: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """Return ``(api_key, api_secret)`` from *key_file* if given, else from *environ*."""
    if key_file is not None:
        return parse_key_file(_read_text(key_file, "key file"), key_file)
    key = environ.get(KEY_ENV, "")
    secret = environ.get(SECRET_ENV, "")
    missing = [var for var, value in ((KEY_ENV, key), (SECRET_ENV, secret)) if not value]
    if missing:
        raise UsageError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
            f"export {KEY_ENV} and {SECRET_ENV}, or pass --key-file (see --help)"
        )
    return key, secret


def read_symbols_file(path: str) -> list[tuple[str, str]]:
    """Return ``(symbol, "file:line")`` pairs from a symbols file (``-`` is stdin).

    One symbol per line; blank lines and ``#`` comments, whole-line or
    trailing, are ignored.
    """
    symbols = []
    for number, line in enumerate(_read_text(path, "symbols file").splitlines(), 1):
        symbol = line.split("#", 1)[0].strip()
        if symbol:
            symbols.append((symbol, f"{path}:{number}"))
    return symbols


def collect_symbols(args: argparse.Namespace, *, required: bool = True) -> list[str]:
    """Symbols from the arguments, then the files; duplicates dropped; all validated."""
    sources = [(symbol, "") for symbol in args.symbols]
    for path in args.symbols_file or ():
        sources += read_symbols_file(path)
    if not sources and required:
        raise UsageError("no symbols: name them as arguments or with --symbols-file")
    position_idx = getattr(args, "position_idx", None)
    problems = []
    for symbol, origin in sources:
        try:
            auto_add_margin_params(symbol, args.flag, position_idx=position_idx)
        except (TypeError, ValueError) as exc:
            problems.append(f"{origin}: {exc}" if origin else str(exc))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"{problems[0]}{more}")
    return list(dict.fromkeys(symbol for symbol, _ in sources))


def redactor(secret: str) -> Callable[[str], str]:
    def redact(text: str) -> str:
        # Belt and braces: the session never puts the secret in an error, but
        # nothing this command prints may carry it even if that changes.
        return text.replace(secret, "***") if secret else text

    return redact


def inputs(
    args: argparse.Namespace, *, symbols_required: bool = True
) -> tuple[list[str], str, str]:
    """The symbols, API key and secret the command's options name."""
    if args.key_file == "-" and "-" in (args.symbols_file or ()):
        raise UsageError("--key-file and --symbols-file cannot both read stdin")
    symbols = collect_symbols(args, required=symbols_required)
    api_key, api_secret = load_credentials(args.key_file, os.environ)
    return symbols, api_key, api_secret
