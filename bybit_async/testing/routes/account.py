"""Account endpoints: the account's mode, its wallet and the margin mode switch."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..accounts import User
from ..protocol import base_coin
from .common import Call, Handler, Outcome, Refused, ok, required, text

INFO_PATH = "/v5/account/info"
WALLET_BALANCE_PATH = "/v5/account/wallet-balance"
SET_MARGIN_MODE_PATH = "/v5/account/set-margin-mode"

#: Bybit's account margin modes and the simulator's names for them.
MARGIN_MODE_NAMES = {
    "ISOLATED_MARGIN": "isolated",
    "REGULAR_MARGIN": "cross",
    "PORTFOLIO_MARGIN": "portfolio",
}
_BYBIT_MODE = {name: bybit for bybit, name in MARGIN_MODE_NAMES.items()}
# unifiedMarginStatus: 1 classic account, 5 unified trading account 2.0.
_STATUS = {"classic": 1, "unified": 5}
_STABLE = ("USDT", "USDC")


def account_info(call: Call) -> Outcome:
    """``GET /v5/account/info``: margin mode and account status."""
    user = call.account
    return ok(
        {
            "marginMode": _BYBIT_MODE[user.margin_mode],
            "updatedTime": str(user.updated_ms),
            "unifiedMarginStatus": _STATUS[user.account_type],
            "dcpStatus": "OFF",
            "timeWindow": 0,
            "smpGroup": 0,
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
        }
    )


def _usd_price(call: Call, coin: str) -> Decimal:
    if coin in _STABLE:
        return Decimal(1)
    instruments = call.sim.instruments
    for symbol in instruments.symbols:
        if base_coin(symbol) == coin:
            return Decimal(instruments.price(symbol))
    return Decimal(instruments.price(coin + "USDT"))


def position_margin(call: Call, user: User, coin: str) -> Decimal:
    """Margin held by *user*'s positions settled in *coin*."""
    settle = call.sim.instruments.settle_coin
    return sum(
        (
            Decimal(position.margin)
            for symbol, positions in user.positions.items()
            if settle(symbol) == coin
            for position in positions.values()
        ),
        Decimal(0),
    )


def wallet_balance(call: Call) -> Outcome:
    """``GET /v5/account/wallet-balance``: the account's coins and totals in USD."""
    user, params = call.account, call.params
    account_type = required(params, "accountType")
    wanted = "UNIFIED" if user.account_type == "unified" else "CONTRACT"
    if account_type != wanted:
        raise Refused(10001, f"params error: accountType only support {wanted}")
    coins = params.get("coin")
    names = sorted(user.balances) if not coins else str(coins).split(",")
    listed: list[dict[str, Any]] = []
    total = total_im = Decimal(0)
    for coin in names:
        balance = Decimal(user.balances.get(coin, "0"))
        im = position_margin(call, user, coin)
        value = balance * _usd_price(call, coin)
        total += value
        total_im += im * _usd_price(call, coin)
        listed.append(
            {
                "coin": coin,
                "equity": text(balance),
                "usdValue": text(value),
                "walletBalance": text(balance),
                "free": "",
                "locked": "0",
                "spotHedgingQty": "0",
                "borrowAmount": "0",
                "availableToBorrow": "",
                "availableToWithdraw": text(balance - im),
                "accruedInterest": "0",
                "totalOrderIM": "0",
                "totalPositionIM": text(im),
                "totalPositionMM": "0",
                "unrealisedPnl": "0",
                "cumRealisedPnl": "0",
                "bonus": "0",
                "marginCollateral": True,
                "collateralSwitch": True,
            }
        )
    unified = user.account_type == "unified"

    def usd(value: Decimal) -> str:
        # Classic accounts leave the account-wide USD figures empty.
        return text(value) if unified else ""

    return ok(
        {
            "list": [
                {
                    "accountType": wanted,
                    "accountIMRate": usd(total_im / total if total else Decimal(0)),
                    "accountMMRate": usd(Decimal(0)),
                    "accountLTV": usd(Decimal(0)),
                    "totalEquity": usd(total),
                    "totalWalletBalance": usd(total),
                    "totalMarginBalance": usd(total),
                    "totalAvailableBalance": usd(total - total_im),
                    "totalPerpUPL": usd(Decimal(0)),
                    "totalInitialMargin": usd(total_im),
                    "totalMaintenanceMargin": usd(Decimal(0)),
                    "coin": listed,
                }
            ]
        }
    )


def set_margin_mode(call: Call) -> Outcome:
    """``POST /v5/account/set-margin-mode``: the unified account's margin mode.

    ISOLATED_MARGIN puts every position in isolated margin, REGULAR_MARGIN
    in cross margin, PORTFOLIO_MARGIN makes the mode the account's: what
    set-auto-add-margin answers follows.
    """
    user, sim = call.account, call.sim
    if user.account_type != "unified":
        raise Refused(10028)
    wanted = required(call.params, "setMarginMode")
    mode = MARGIN_MODE_NAMES.get(wanted) if isinstance(wanted, str) else None
    if mode is None:
        raise Refused(10001, "params error: setMarginMode must be " + ", ".join(MARGIN_MODE_NAMES))
    if mode != user.margin_mode:
        user.margin_mode = mode
        user.updated_ms = call.now_ms
        for symbol, positions in user.positions.items():
            for position in positions.values():
                position.margin_mode = "isolated" if mode == "isolated" else "cross"
                position.updated_ms = call.now_ms
            sim.positions_changed(user, symbol)
    return ok({"reasons": []})


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", INFO_PATH): account_info,
    ("GET", WALLET_BALANCE_PATH): wallet_balance,
    ("POST", SET_MARGIN_MODE_PATH): set_margin_mode,
}
