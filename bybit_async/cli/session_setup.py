"""The session a command's options describe: host, timing, rate limits, a shared limiter."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from ..errors import TransportError
from ..ratelimit import ENDPOINT_LIMITS, RateLimits
from ..redis_limiter import RedisLimiter, redis_url_with_password
from ..session import HOSTS, SET_AUTO_ADD_MARGIN, BybitSession
from .common import KEY_ENV, SECRET_ENV, UsageError, positive_float, positive_int

__all__: list[str] = []


def limiter_for(args: argparse.Namespace, redact: Callable[[str], str]) -> RedisLimiter | None:
    """The shared limiter of ``--redis-url``, if given; a bad option is a `UsageError`."""
    if args.redis_url is None:
        if args.account is not None:
            raise UsageError("--account names the budget shared through --redis-url: give both")
        if getattr(args, "redis_password_file", None) is not None:
            raise UsageError("--redis-password-file goes with --redis-url: give both")
        return None
    try:
        # The password from --redis-password-file, else BYBIT_REDIS_PASSWORD, when the
        # URL has none: kept off the command line, which every user of the host can read.
        url = redis_url_with_password(
            args.redis_url, password_file=getattr(args, "redis_password_file", None)
        )
        return RedisLimiter(
            url, account=args.account, limits=rate_limits_for(args), lease=args.timeout
        )
    except OSError as exc:
        raise UsageError(f"cannot read the Redis password file: {exc.strerror}") from None
    except (TypeError, ValueError, ImportError) as exc:
        raise UsageError(redact(str(exc))) from None


def rate_limits_for(args: argparse.Namespace) -> RateLimits:
    if args.rate_limit is None:  # Bybit's table, then what the answers state
        return RateLimits()
    return RateLimits(endpoints={SET_AUTO_ADD_MARGIN: args.rate_limit})


def session_for(
    args: argparse.Namespace,
    api_key: str,
    api_secret: str,
    redact: Callable[[str], str],
    **options: Any,
) -> BybitSession:
    """The session the command's options describe; a bad option is a `UsageError`."""
    try:
        return BybitSession(
            api_key,
            api_secret,
            base_url=args.base_url,
            testnet=args.testnet,
            demo=args.demo,
            recv_window=args.recv_window,
            timeout=args.timeout,
            rate_limits=rate_limits_for(args),
            **options,
        )
    except (TypeError, ValueError, ImportError) as exc:
        # These name the problem, not the secret; redact() in case that changes.
        raise UsageError(redact(str(exc))) from None


# OpenSSL's reasons when the other side answers a TLS handshake in plain text.
_PLAINTEXT_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")


def tls_refused(host: str, exc: TransportError) -> str:
    match = re.search(r"\[SSL: ([A-Z_]+)\]", exc.message)
    reason = match[1] if match else ""
    if reason in _PLAINTEXT_REASONS and host.startswith("https://"):
        return (
            f"{host} answered TLS in plain text ({reason}): if it is a plain-HTTP server "
            f"(a simulator, say), use {'http://' + host.removeprefix('https://')}"
        )
    # A certificate or protocol failure: retrying would fail the same way.
    return f"TLS with {host} failed: {exc.message}"


def target_host(args: argparse.Namespace) -> str:
    # What the session will use, for the table's title; the session validates it.
    if args.base_url is not None:
        return str(HOSTS.get(args.base_url, args.base_url)).rstrip("/")
    return HOSTS["testnet" if args.testnet else "demo" if args.demo else "mainnet"]


def flag_title(args: argparse.Namespace) -> str:
    """The table's title: the value the command sets, and the host."""
    return f"auto-add-margin {'on' if args.flag else 'off'} at {target_host(args)}"


def add_session_options(cmd: argparse.ArgumentParser) -> None:
    """The options of a command that sends: credentials, host, timing, rate limit."""
    cmd.add_argument(
        "--key-file",
        metavar="FILE",
        help=f"read the API key and secret from FILE ('-' for stdin) instead of {KEY_ENV} and "
        f"{SECRET_ENV} (format below)",
    )
    host = cmd.add_mutually_exclusive_group()
    host.add_argument("--testnet", action="store_true", help="use Bybit's testnet")
    host.add_argument("--demo", action="store_true", help="use Bybit's demo trading host")
    host.add_argument(
        "--base-url",
        metavar="URL",
        help="an http(s) URL, or a host name such as mainnet, bytick, eu (default: mainnet, "
        "https://api.bybit.com)",
    )
    cmd.add_argument(
        "--recv-window",
        type=positive_int,
        default=5000,
        metavar="MS",
        help="how old, in ms, a request may be when Bybit receives it (default 5000)",
    )
    cmd.add_argument(
        "--timeout",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds to wait for each attempt's answer (default 10)",
    )
    cmd.add_argument(
        "--rate-limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="requests per second this client allows itself on the endpoint (default: "
        f"Bybit's, {ENDPOINT_LIMITS[SET_AUTO_ADD_MARGIN].limit}, or the limit its answers "
        "state; set it only for a test server)",
    )
