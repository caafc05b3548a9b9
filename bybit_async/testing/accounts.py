"""Accounts (UIDs and their API keys), positions and the list of instruments."""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .protocol import base_coin, default_price, settle_coin

SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9-]*")
MARGIN_MODES = ("isolated", "cross", "portfolio")
#: Account types: a unified trading account (UTA 2.0) or a classic one.
ACCOUNT_TYPES = ("unified", "classic")
#: What a new account holds unless told otherwise.
DEFAULT_BALANCES: Mapping[str, str] = MappingProxyType({"USDT": "100000", "USDC": "10000"})
SIDES = ("Buy", "Sell", "")


@dataclass
class Position:
    """One position: *position_idx* 0 in one-way mode, 1 (buy side) or 2 (sell side) in hedge mode.

    *margin_mode* is ``"isolated"`` or ``"cross"``; a portfolio-margin
    account's mode is the account's, not the position's.  *size* is a
    decimal string, ``"0"`` for no position; *side* is ``"Buy"``,
    ``"Sell"`` or ``""`` (none, as Bybit shows an empty position).
    """

    symbol: str
    position_idx: int
    auto_add_margin: int = 0
    margin_mode: str = "isolated"
    size: str = "0"
    side: str = ""
    leverage: str = "10"
    # Isolated margin added to the position (add-margin), in the settle coin.
    margin: str = "0"
    updated_ms: int = 0
    #: Bumped on every change (see `bybit_async.testing.stream`).
    seq: int = -1

    def to_json(self) -> dict[str, Any]:
        """The position as ``GET /v5/position/list`` lists it."""
        return {
            "positionIdx": self.position_idx,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": self.symbol,
            "side": self.side,
            "size": self.size,
            "avgPrice": "0",
            "positionValue": "0",
            # Classic semantics: 0 cross margin, 1 isolated margin.
            "tradeMode": 1 if self.margin_mode == "isolated" else 0,
            "autoAddMargin": self.auto_add_margin,
            "positionStatus": "Normal",
            "leverage": self.leverage,
            "markPrice": "0",
            "liqPrice": "",
            "bustPrice": "",
            "positionIM": self.margin,
            "positionMM": "0",
            "positionBalance": self.margin,
            "tpslMode": "Full",
            "takeProfit": "",
            "stopLoss": "",
            "trailingStop": "0",
            "unrealisedPnl": "0",
            "cumRealisedPnl": "0",
            "adlRankIndicator": 0,
            "isReduceOnly": False,
            "seq": self.seq,
            "createdTime": "0",
            "updatedTime": str(self.updated_ms),
        }


@dataclass
class ApiKey:
    """One API key: exactly one of an HMAC *secret* or an RSA verifier, and its UID."""

    api_key: str
    uid: str
    secret: bytes | None = field(repr=False)
    rsa_verify: Callable[[bytes, bytes], bool] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """Key the HMAC once: copying a keyed object is cheaper than keying per request."""
        self._hmac = None if self.secret is None else hmac.new(self.secret, None, hashlib.sha256)

    def hmac_hex(self, message: bytes) -> bytes:
        """Lowercase hex HMAC-SHA256 of *message* under the secret, as ASCII bytes."""
        assert self._hmac is not None
        mac = self._hmac.copy()
        mac.update(message)
        return mac.hexdigest().encode()

    def __deepcopy__(self, memo: dict[int, object]) -> ApiKey:
        """Copy for a snapshot; the keyed HMAC object is rebuilt, the verifier shared."""
        return ApiKey(self.api_key, self.uid, self.secret, self.rsa_verify)


@dataclass
class User:
    """One UID: its margin mode and positions (shared by all its keys)."""

    uid: str
    margin_mode: str
    positions: dict[str, dict[int, Position]] = field(default_factory=dict)
    account_type: str = "unified"
    # Coin -> wallet balance, decimal strings.
    balances: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_BALANCES))
    # Settle coins switched to hedge mode: their new positions start in it.
    hedge_coins: set[str] = field(default_factory=set)
    updated_ms: int = 0
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    order_link_ids: set[str] = field(default_factory=set)


class Instruments:
    """The symbols the simulator lists: a mapping to settle coins, or any well-formed symbol."""

    def __init__(self, symbols: Iterable[str] | Mapping[str, str] | None) -> None:
        self.any = symbols is None
        self.symbols: dict[str, str] = {}
        # Symbol -> last price, for the symbols whose price was set.
        self.prices: dict[str, str] = {}
        if symbols is not None:
            self.add(symbols)

    def add(self, symbols: Iterable[str] | Mapping[str, str]) -> None:
        """List more symbols (a mapping gives their settle coins)."""
        items = symbols.items() if isinstance(symbols, Mapping) else ((s, None) for s in symbols)
        for symbol, coin in items:
            check_symbol(symbol)
            self.symbols[symbol] = coin or settle_coin(symbol)

    def __contains__(self, symbol: object) -> bool:
        """Whether *symbol* is listed."""
        if not isinstance(symbol, str):
            return False
        return symbol in self.symbols or (self.any and bool(SYMBOL_PATTERN.fullmatch(symbol)))

    def settle_coin(self, symbol: str) -> str:
        """The settle coin of a listed *symbol*."""
        return self.symbols.get(symbol) or settle_coin(symbol)

    def price(self, symbol: str) -> str:
        """The last price of *symbol*: as set, else by its base coin."""
        return self.prices.get(symbol) or default_price(base_coin(symbol))


def check_symbol(symbol: str) -> None:
    """Raise ValueError unless *symbol* is uppercase letters, digits and hyphens."""
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError(f"symbol must be uppercase letters, digits and hyphens, got {symbol!r}")


class Accounts:
    """API keys and the UIDs they belong to."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.users: dict[str, User] = {}
        self._next_uid = 100_000_001

    def snapshot(self) -> Accounts:
        """A deep copy to restore on reset."""
        return copy.deepcopy(self)

    def add(
        self,
        api_key: str,
        api_secret: str | None,
        rsa_public_key: str | bytes | None,
        margin_mode: str,
        uid: str | int | None,
        account_type: str = "unified",
    ) -> ApiKey:
        """Register *api_key* (see `BybitSimulator.add_account`)."""
        if margin_mode not in MARGIN_MODES:
            raise ValueError(f"margin_mode must be one of {MARGIN_MODES}, got {margin_mode!r}")
        if account_type not in ACCOUNT_TYPES:
            raise ValueError(f"account_type must be one of {ACCOUNT_TYPES}, got {account_type!r}")
        if account_type == "classic" and margin_mode == "portfolio":
            raise ValueError("portfolio margin needs a unified account")
        if (api_secret is None) == (rsa_public_key is None):
            raise ValueError("give exactly one of api_secret and rsa_public_key")
        secret = api_secret.encode() if api_secret is not None else None
        verify = rsa_verifier(rsa_public_key) if rsa_public_key is not None else None
        if uid is None:
            while str(self._next_uid) in self.users:
                self._next_uid += 1
            uid_text = str(self._next_uid)
        else:
            uid_text = str(uid)
            if not uid_text.isdigit():
                raise ValueError(f"uid must be digits, got {uid!r}")
        if uid is None or uid_text not in self.users:
            self.users[uid_text] = User(uid_text, margin_mode, account_type=account_type)
        key = self.keys[api_key] = ApiKey(api_key, uid_text, secret, verify)
        return key

    def user(self, api_key: str) -> User:
        """The UID that *api_key* belongs to; KeyError for an unknown key."""
        try:
            return self.users[self.keys[api_key].uid]
        except KeyError:
            raise KeyError(f"no account with api_key {api_key!r}") from None

    @staticmethod
    def positions(user: User, symbol: str) -> dict[int, Position]:
        """*symbol*'s positions of *user*, created one-way and flag off on first use."""
        positions = user.positions.get(symbol)
        if positions is None:
            check_symbol(symbol)
            mode = "isolated" if user.margin_mode == "isolated" else "cross"
            if settle_coin(symbol) in user.hedge_coins:
                positions = {1: Position(symbol, 1, 0, mode), 2: Position(symbol, 2, 0, mode)}
            else:
                positions = {0: Position(symbol, 0, 0, mode)}
            user.positions[symbol] = positions
        return positions


def rsa_verifier(public_key_pem: str | bytes) -> Callable[[bytes, bytes], bool]:
    """Return a check of base64 RSASSA-PKCS1-v1_5 SHA-256 signatures by this public key."""
    import base64
    import binascii

    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise ImportError(
            "RSA accounts need the 'cryptography' package: pip install 'bybit-async[rsa]'"
        ) from None
    pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"expected an RSA public key, got {type(key).__name__}")

    def verify(message: bytes, signature_b64: bytes) -> bool:
        try:
            key.verify(
                base64.b64decode(signature_b64, validate=True),
                message,
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    return verify
