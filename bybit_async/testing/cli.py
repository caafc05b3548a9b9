"""``python -m bybit_async.testing``: a simulator set up from flags or a config file."""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..ratelimit import IP_LIMIT, IP_WINDOW
from .accounts import Accounts
from .control import network_delay_from_json
from .faults import NetworkDelay
from .fixtures import Fixture
from .protocol import DEFAULT_INSTRUMENTS, SUCCESS_MESSAGES
from .server import BybitSimulator

_USAGE_EXIT = 2


class ConfigError(Exception):
    """A set-up that cannot be used; its message is one line for the user."""


@dataclass
class _Account:
    api_key: str
    api_secret: str | None = field(default=None, repr=False)
    rsa_public_key: str | None = None
    uid: str | None = None
    margin_mode: str = "isolated"
    account_type: str = "unified"


@dataclass
class _Setup:
    """Everything a simulator is started with, from a config file and then flags."""

    host: str = "127.0.0.1"
    port: int = 0
    accounts: list[_Account] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    enforce_limits: bool = True
    ip_limit: int = IP_LIMIT
    ip_window: float = IP_WINDOW
    ip_ban_seconds: float = 600.0
    endpoint_limits: dict[str, int] = field(default_factory=dict)
    # uid -> budget key or path -> that account's own limit.
    uid_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    routes: list[Fixture] = field(default_factory=list)
    clock_offset_ms: int = 0
    network_delay: NetworkDelay | None = None
    instruments: list[str] | None = field(default_factory=lambda: list(DEFAULT_INSTRUMENTS))
    extra_instruments: list[str] = field(default_factory=list)
    success_messages: tuple[str, ...] | None = None

    def build(self) -> BybitSimulator:
        """A simulator set up as described (not started)."""
        accounts = self.accounts or [_Account("test-key", "test-secret")]
        sim = BybitSimulator(
            host=self.host,
            port=self.port,
            enforce_limits=self.enforce_limits,
            ip_limit=self.ip_limit,
            ip_window=self.ip_window,
            ip_ban_seconds=self.ip_ban_seconds,
            clock_offset_ms=self.clock_offset_ms,
            network_delay=self.network_delay,
            instruments=self.instruments,
            success_messages=self.success_messages,
        )
        sim.endpoint_limits.update(self.endpoint_limits)
        sim.add_instruments(self.extra_instruments)
        # The accounts replace the built-in default one; the first becomes the default.
        sim._accounts = Accounts()
        for account in accounts:
            rsa_pem: bytes | None = None
            if account.rsa_public_key is not None:
                rsa_pem = _read(account.rsa_public_key).encode()
            sim.add_account(
                account.api_key,
                None if rsa_pem is not None else account.api_secret,
                rsa_public_key=rsa_pem,
                margin_mode=account.margin_mode,
                uid=account.uid,
                account_type=account.account_type,
            )
        sim.api_key = accounts[0].api_key
        sim.api_secret = accounts[0].api_secret or ""
        for route in self.routes:
            sim.add_route(
                route.method,
                route.path,
                route.result,
                ret_code=route.ret_code,
                ret_msg=route.ret_msg,
            )
        for uid, limits in self.uid_limits.items():
            for key, limit in limits.items():
                sim.set_limit(key, limit, uid=uid)
        for spec in self.positions:
            spec = dict(spec)
            symbol = spec.pop("symbol")
            sim.set_position(symbol, **spec)
        return sim


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _account(text: str) -> _Account:
    """``KEY:SECRET[:UID]``; a SECRET of ``@PATH`` names a PEM RSA public key file."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ConfigError(f"--account wants KEY:SECRET[:UID], got {text!r}")
    uid = parts[2] if len(parts) == 3 else None
    if uid is not None and not uid.isdigit():
        raise ConfigError(f"--account: the UID must be digits, got {uid!r}")
    if parts[1].startswith("@"):
        return _Account(parts[0], rsa_public_key=parts[1][1:], uid=uid)
    return _Account(parts[0], parts[1], uid=uid)


_POSITION_FLAGS = {
    "account": "api_key",
    "margin": "margin_mode",
    "mode": "hedge",
    "auto_add_margin": "auto_add_margin",
    "size": "size",
    "side": "side",
    "idx": "position_idx",
}


def _position(text: str) -> dict[str, Any]:
    """Parse ``SYMBOL[,name=value...]``; the names are the keys of `_POSITION_FLAGS`."""
    symbol, *pairs = text.split(",")
    spec: dict[str, Any] = {"symbol": symbol}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in _POSITION_FLAGS:
            raise ConfigError(
                f"--position: expected name=value with name one of "
                f"{', '.join(_POSITION_FLAGS)}, got {pair!r}"
            )
        spec.update(_position_value(_POSITION_FLAGS[name], value))
    return spec


def _position_value(attr: str, value: Any) -> dict[str, Any]:
    if attr == "hedge":
        if value not in ("hedge", "one-way", True, False):
            raise ConfigError(f"mode must be hedge or one-way, got {value!r}")
        return {"hedge": value in ("hedge", True)}
    if attr in ("auto_add_margin", "position_idx"):
        try:
            return {attr: int(value)}
        except (TypeError, ValueError):
            raise ConfigError(f"{attr} must be an integer, got {value!r}") from None
    return {attr: value}


def _delay_ms(text: str) -> NetworkDelay:
    low_text, _, high_text = text.partition(":")
    try:
        low = float(low_text) / 1000
        high = float(high_text) / 1000 if high_text else low
        return NetworkDelay(low, high)
    except ValueError as exc:
        raise ConfigError(f"--delay-ms wants LOW[:HIGH] in milliseconds: {exc}") from None


def _load_config(path: str, setup: _Setup) -> None:
    """Fill *setup* from a TOML (``.toml``) or JSON file."""
    text = _read(path)
    data: Any
    if path.endswith(".toml"):
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            try:
                import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
            except ImportError:
                raise ConfigError(
                    "TOML config files need the tomli package on Python 3.10: "
                    "pip install 'bybit-async[testing]'"
                ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    else:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/object")
    try:
        _apply_config(data, setup)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


_CONFIG_KEYS = {
    "host",
    "port",
    "accounts",
    "positions",
    "limits",
    "clock_offset_ms",
    "network_delay",
    "instruments",
    "success_messages",
    "routes",
}


def _apply_config(data: dict[str, Any], setup: _Setup) -> None:
    unknown = set(data) - _CONFIG_KEYS
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    if "host" in data:
        setup.host = str(data["host"])
    if "port" in data:
        setup.port = int(data["port"])
    for entry in data.get("accounts", []):
        uid = entry.get("uid")
        setup.accounts.append(
            _Account(
                str(entry["api_key"]),
                entry.get("api_secret"),
                entry.get("rsa_public_key_file"),
                None if uid is None else str(uid),
                entry.get("margin_mode", "isolated"),
                entry.get("account_type", "unified"),
            )
        )
    for entry in data.get("routes", []):
        setup.routes.append(Fixture.from_json(entry))
    for entry in data.get("positions", []):
        spec: dict[str, Any] = {"symbol": str(entry["symbol"])}
        for name, value in entry.items():
            if name == "symbol":
                continue
            if name not in _POSITION_FLAGS:
                raise ValueError(f"positions: unknown key {name!r}")
            spec.update(_position_value(_POSITION_FLAGS[name], value))
        setup.positions.append(spec)
    limits = data.get("limits", {})
    if "enforce" in limits:
        setup.enforce_limits = bool(limits["enforce"])
    if "ip_limit" in limits:
        setup.ip_limit = int(limits["ip_limit"])
    if "ip_window" in limits:
        setup.ip_window = float(limits["ip_window"])
    if "ip_ban_seconds" in limits:
        setup.ip_ban_seconds = float(limits["ip_ban_seconds"])
    for path, limit in limits.get("endpoints", {}).items():
        setup.endpoint_limits[str(path)] = int(limit)
    for uid, own in limits.get("uid", {}).items():
        if not str(uid).isdigit():
            raise ValueError(f"limits.uid: a UID must be digits, got {uid!r}")
        for key, limit in own.items():
            setup.uid_limits.setdefault(str(uid), {})[str(key)] = int(limit)
    if "clock_offset_ms" in data:
        setup.clock_offset_ms = int(data["clock_offset_ms"])
    if "network_delay" in data:
        spec = data["network_delay"]
        setup.network_delay = network_delay_from_json(
            {
                {"spike_probability": "spikeProbability"}.get(name, name): value
                for name, value in spec.items()
            }
        )
    if "instruments" in data:
        instruments = data["instruments"]
        setup.instruments = None if instruments == "any" else [str(s) for s in instruments]
    if "success_messages" in data:
        setup.success_messages = tuple(str(m) for m in data["success_messages"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bybit_async.testing",
        description=(
            "Run a local Bybit V5 REST simulator until SIGINT or SIGTERM.  "
            "Flags apply after --config."
        ),
    )
    add = parser.add_argument
    add("--config", metavar="PATH", help="a TOML (.toml) or JSON file holding the set-up")
    add("--host", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, help="port to bind (default: a free one)")
    add(
        "--account",
        action="append",
        default=[],
        metavar="KEY:SECRET[:UID]",
        help="an API key (repeatable; the first is the default); SECRET @PATH: "
        "an RSA public key file; keys with the same UID share positions and limits "
        "(default: test-key:test-secret)",
    )
    add(
        "--position",
        action="append",
        default=[],
        metavar="SYMBOL[,name=value...]",
        help="set up a position (repeatable): account=KEY, margin=isolated|cross, "
        "mode=one-way|hedge, auto_add_margin=0|1, size=N, side=Buy|Sell, idx=0|1|2",
    )
    add("--no-limits", action="store_true", help="count rate limits but do not enforce them")
    add("--ip-limit", type=int, metavar="N", help=f"requests per IP window (default {IP_LIMIT})")
    add("--ip-window", type=float, metavar="S", help=f"IP window, seconds (default {IP_WINDOW})")
    add("--ip-ban", type=float, metavar="S", help="IP ban, seconds (default 600)")
    add(
        "--endpoint-limit",
        action="append",
        default=[],
        metavar="PATH=N",
        help="per-UID limit of an endpoint, requests per second (repeatable)",
    )
    add(
        "--limit",
        action="append",
        default=[],
        metavar="UID:KEY=N",
        help="an account's own per-UID limit for a path or budget key, as VIP and PRO "
        "levels raise Bybit's (repeatable), e.g. 5001:/v5/order/create=60",
    )
    add("--clock-offset-ms", type=int, metavar="MS", help="server clock ahead of the wall clock")
    add("--delay-ms", metavar="LOW[:HIGH]", help="one-way network delay each way, milliseconds")
    add(
        "--instrument",
        action="append",
        default=[],
        metavar="SYMBOL",
        help="list another symbol besides the default ones (repeatable)",
    )
    add("--any-symbol", action="store_true", help="accept any well-formed symbol")
    add(
        "--vary-success-messages",
        action="store_true",
        help="answer successes with OK, success and an empty retMsg in turn instead of OK, "
        "for a client that must not read retMsg",
    )
    return parser


def _setup(argv: Sequence[str] | None) -> _Setup:
    args = _parser().parse_args(argv)
    setup = _Setup()
    if args.config:
        _load_config(args.config, setup)
    if args.host is not None:
        setup.host = args.host
    if args.port is not None:
        setup.port = args.port
    setup.accounts.extend(_account(a) for a in args.account)
    setup.positions.extend(_position(p) for p in args.position)
    if args.no_limits:
        setup.enforce_limits = False
    if args.ip_limit is not None:
        setup.ip_limit = args.ip_limit
    if args.ip_window is not None:
        setup.ip_window = args.ip_window
    if args.ip_ban is not None:
        setup.ip_ban_seconds = args.ip_ban
    for spec in args.endpoint_limit:
        path, sep, limit = spec.partition("=")
        if not sep or not limit.isdigit():
            raise ConfigError(f"--endpoint-limit wants PATH=N, got {spec!r}")
        setup.endpoint_limits[path] = int(limit)
    for spec in args.limit:
        setup_uid_limit(setup, spec)
    if args.clock_offset_ms is not None:
        setup.clock_offset_ms = args.clock_offset_ms
    if args.delay_ms is not None:
        setup.network_delay = _delay_ms(args.delay_ms)
    setup.extra_instruments.extend(args.instrument)
    if args.any_symbol:
        setup.instruments = None
    if args.vary_success_messages:
        setup.success_messages = SUCCESS_MESSAGES
    return setup


def setup_uid_limit(setup: _Setup, spec: str) -> None:
    """Add ``--limit UID:KEY=N`` to *setup*."""
    uid, _, rest = spec.partition(":")
    key, sep, limit = rest.rpartition("=")
    if not uid.isdigit() or not sep or not key.startswith("/") or not limit.isdigit():
        raise ConfigError(f"--limit wants UID:PATH=N (UID digits, PATH from /v5/), got {spec!r}")
    setup.uid_limits.setdefault(uid, {})[key] = int(limit)


async def _serve(setup: _Setup) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        sim = setup.build()
        try:
            await sim.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"cannot listen on {setup.host}:{setup.port}: the address is in use"
                ) from None
            raise ConfigError(f"cannot listen on {setup.host}:{setup.port}: {exc}") from None
        try:
            print(f"BYBIT_SIMULATOR_URL={sim.url}", flush=True)
            await stop.wait()
        finally:
            await sim.close()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a simulator until SIGINT or SIGTERM; return the exit status.

    Prints one line, ``BYBIT_SIMULATOR_URL=<url>``, once it is listening.
    Without ``--account`` the account is ``test-key`` / ``test-secret``.  A
    set-up that cannot be used (a bad flag or config file, a port in use)
    prints one line to stderr and returns 2.  See ``--help`` for the flags.
    """
    try:
        setup = _setup(argv)
        asyncio.run(_serve(setup))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _USAGE_EXIT
    except (ValueError, KeyError, ImportError) as exc:
        # From the simulator's own checks of the set-up (symbols, modes, keys).
        print(f"error: {exc}", file=sys.stderr)
        return _USAGE_EXIT
    return 0
