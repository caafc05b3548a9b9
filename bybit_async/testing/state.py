"""The simulator's accounts as a test sets them up and reads them: keys, balances, positions.

`AccountState` is a part of `bybit_async.testing.BybitSimulator`; the
records themselves (`User`, `Position`, `Accounts`) live in `accounts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .accounts import SIDES, Accounts, Instruments, Position, User, check_symbol

if TYPE_CHECKING:
    from .stream import StreamHub


class AccountState:
    """The accounts, positions and instruments of the simulator, for tests to set and read."""

    api_key: str
    instruments: Instruments
    stream: StreamHub
    _accounts: Accounts

    def positions_changed(self, user: User, symbol: str) -> None:
        """Called by every request that changes one of *user*'s *symbol* positions.

        The hook for anything that follows positions: the private stream
        pushes each of them.
        """
        for position in Accounts.positions(user, symbol).values():
            self.stream.changed(user.uid, position)

    def add_account(
        self,
        api_key: str,
        api_secret: str | None = None,
        *,
        rsa_public_key: str | bytes | None = None,
        margin_mode: str = "isolated",
        uid: str | int | None = None,
        account_type: str = "unified",
    ) -> str:
        """Add an API key and return its UID; a key added again replaces the old one.

        Give the HMAC *api_secret*, or the PEM *rsa_public_key* registered for a
        self-made RSA key (this needs the ``cryptography`` package).  With
        *uid* None the key gets a new UID of its own; with the UID of an
        existing key it joins that account, sharing its positions and its
        per-UID rate limits (*margin_mode* is then the account's already).
        *margin_mode* is the account's (``"isolated"``, ``"cross"`` or
        ``"portfolio"``: Bybit's ISOLATED_MARGIN, REGULAR_MARGIN and
        PORTFOLIO_MARGIN), and so the mode new positions start in.
        *account_type* is ``"unified"`` (a unified trading account, UTA 2.0)
        or ``"classic"`` (margin mode per symbol, through switch-isolated).
        A new account holds `DEFAULT_BALANCES`; see `set_balance`.
        """
        key = self._accounts.add(
            api_key, api_secret, rsa_public_key, margin_mode, uid, account_type
        )
        return key.uid

    def set_balance(self, coin: str, amount: str | float, *, api_key: str | None = None) -> None:
        """Set the wallet balance of *coin* (``"0"`` removes it) in an account."""
        text = _decimal_text(amount)
        balances = self._user(api_key).balances
        if float(text) == 0:
            balances.pop(coin, None)
        else:
            balances[coin] = text

    def balances(self, *, api_key: str | None = None) -> dict[str, str]:
        """An account's wallet balances by coin."""
        return dict(self._user(api_key).balances)

    def margin_mode(self, *, api_key: str | None = None) -> str:
        """An account's margin mode: ``"isolated"``, ``"cross"`` or ``"portfolio"``."""
        return self._user(api_key).margin_mode

    def set_price(self, symbol: str, price: str | float) -> None:
        """Set the last and mark price of a listed *symbol* (tickers, wallet values)."""
        if symbol not in self.instruments:
            raise ValueError(f"{symbol} is not a listed instrument; see add_instruments()")
        self.instruments.prices[symbol] = _decimal_text(price)

    def add_instruments(self, symbols: Iterable[str] | Mapping[str, str]) -> None:
        """List more symbols (a mapping gives their settle coins: ``USDT`` or ``USDC``)."""
        self.instruments.add(symbols)

    def set_position(
        self,
        symbol: str,
        *,
        api_key: str | None = None,
        margin_mode: str | None = None,
        hedge: bool | None = None,
        auto_add_margin: int | None = None,
        size: str | float | None = None,
        side: str | None = None,
        position_idx: int | None = None,
    ) -> None:
        """Set up *symbol*'s position(s) in an account (the default one if *api_key* is None).

        *margin_mode* is ``"isolated"`` or ``"cross"``.  *hedge* switches
        between one-way (index 0) and hedge mode (indices 1 and 2); switching
        starts the new positions empty with auto-add-margin off.
        *auto_add_margin*, *size* and *side* (``"Buy"``, ``"Sell"`` or ``""``)
        apply to the position *position_idx*, or to every position of the
        symbol if it is None; a hedge-mode position with a size takes its
        side from its index.  Arguments left ``None`` keep their current
        value.  The symbol must be a listed instrument.
        """
        if margin_mode is not None and margin_mode not in ("isolated", "cross"):
            raise ValueError(f"margin_mode must be 'isolated' or 'cross', got {margin_mode!r}")
        if auto_add_margin is not None and auto_add_margin not in (0, 1):
            raise ValueError(f"auto_add_margin must be 0 or 1, got {auto_add_margin!r}")
        if side is not None and side not in SIDES:
            raise ValueError(f"side must be 'Buy', 'Sell' or '', got {side!r}")
        size_text = None if size is None else _decimal_text(size)
        check_symbol(symbol)
        if symbol not in self.instruments:
            raise ValueError(f"{symbol} is not a listed instrument; see add_instruments()")
        user = self._user(api_key)
        positions = Accounts.positions(user, symbol)
        if hedge is not None and hedge != (0 not in positions):
            mode = next(iter(positions.values())).margin_mode
            indices = (1, 2) if hedge else (0,)
            positions.clear()
            positions.update({i: Position(symbol, i, 0, mode) for i in indices})
        if position_idx is not None and position_idx not in positions:
            raise ValueError(f"{symbol} has no position_idx {position_idx}")
        for idx, position in positions.items():
            if margin_mode is not None:
                position.margin_mode = margin_mode
            if position_idx is not None and idx != position_idx:
                continue
            if auto_add_margin is not None:
                position.auto_add_margin = auto_add_margin
            if size_text is not None:
                position.size = size_text
            if side is not None:
                position.side = side
            if size_text is not None or side is not None:
                if float(position.size) == 0:
                    position.side = ""
                elif idx:
                    position.side = "Buy" if idx == 1 else "Sell"
                elif not position.side:
                    position.side = "Buy"
        self.positions_changed(user, symbol)

    def position(
        self, symbol: str, position_idx: int = 0, *, api_key: str | None = None
    ) -> Position:
        """Return the live `Position`, creating the symbol's defaults on first use."""
        positions = Accounts.positions(self._user(api_key), symbol)
        try:
            return positions[position_idx]
        except KeyError:
            mode = "hedge" if 0 not in positions else "one-way"
            raise ValueError(
                f"{symbol} is in {mode} mode and has no position_idx {position_idx}"
            ) from None

    def positions(self, *, api_key: str | None = None) -> list[Position]:
        """Every position the account has set up or touched, by symbol and index."""
        user = self._user(api_key)
        return [
            user.positions[symbol][idx]
            for symbol in sorted(user.positions)
            for idx in sorted(user.positions[symbol])
        ]

    def auto_add_margin(
        self, symbol: str, position_idx: int = 0, *, api_key: str | None = None
    ) -> int:
        """Return the auto-add-margin flag (0 or 1) of one position."""
        return self.position(symbol, position_idx, api_key=api_key).auto_add_margin

    def uid(self, api_key: str | None = None) -> str:
        """The UID of *api_key* (the default key if None)."""
        return self._user(api_key).uid

    def api_keys(self) -> dict[str, str]:
        """Every API key and its UID."""
        return {key.api_key: key.uid for key in self._accounts.keys.values()}

    def accounts_state(self) -> list[User]:
        """Every account (UID) as the simulator holds it: mode, balances, positions."""
        return list(self._accounts.users.values())

    def _user(self, api_key: str | None) -> User:
        return self._accounts.user(self.api_key if api_key is None else api_key)


def _decimal_text(size: str | float) -> str:
    value = float(size)
    if not value >= 0:
        raise ValueError(f"size must be a non-negative number, got {size!r}")
    return str(size) if isinstance(size, str) else format(value, "g")
