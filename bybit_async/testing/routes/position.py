"""Position endpoints: the list and the settings around auto-add-margin."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..accounts import Accounts, Position, User
from ..auth import parse_uint
from ..protocol import (
    DEFAULT_MESSAGES,
    NOT_MODIFIED_MSG,
    POSITION_LIST_PATH,
    SET_AUTO_ADD_MARGIN_PATH,
)
from .account import position_margin
from .common import (
    Call,
    Handler,
    Outcome,
    Refused,
    category,
    decimal,
    listed_symbol,
    ok,
    params_error,
    required,
    text,
)


def set_auto_add_margin(call: Call) -> Outcome:
    """``POST /v5/position/set-auto-add-margin``: turn a position's auto-add-margin on or off."""
    user, params, sim = call.account, call.params, call.sim
    category = params.get("category")
    if category is None:
        return params_error("category is required")
    if category != "linear":
        return params_error("category must be linear")
    symbol = params.get("symbol")
    if symbol is None:
        return params_error("symbol is required")
    if symbol not in sim.instruments:
        return params_error("symbol invalid")
    if "autoAddMargin" not in params:
        return params_error("autoAddMargin is required")
    flag = params["autoAddMargin"]
    if type(flag) is not int or flag not in (0, 1):
        return params_error("autoAddMargin must be 0 or 1")
    idx: int | None = None
    if "positionIdx" in params:
        # Present means it must be a real index: null is refused, not read as absent.
        idx = params["positionIdx"]
        if type(idx) is not int or idx not in (0, 1, 2):
            return params_error("positionIdx must be 0, 1 or 2")

    positions = Accounts.positions(user, symbol)
    hedge = 0 not in positions
    if (idx in (1, 2)) != hedge:
        return 10001, "position idx not match position mode", {}
    position = positions[0 if idx is None else idx]
    if user.margin_mode == "portfolio":
        return 110077, DEFAULT_MESSAGES[110077], {}
    if position.margin_mode != "isolated":
        return 110076, DEFAULT_MESSAGES[110076], {}
    if position.auto_add_margin == flag:
        return 10001, NOT_MODIFIED_MSG, {}
    position.auto_add_margin = flag
    position.updated_ms = call.now_ms
    sim.positions_changed(user, symbol)
    return ok()


def position_list(call: Call) -> Outcome:
    """``GET /v5/position/list``: one symbol's positions, or a settle coin's open ones, paged."""
    user, params, sim = call.account, call.params, call.sim
    category = params.get("category")
    if not category:
        return params_error("category is required")
    if category != "linear":
        return params_error("category only support linear")
    limit = parse_uint(params.get("limit", "20"))
    if limit is None or not 1 <= limit <= 200:
        return params_error("limit must be an integer from 1 to 200")
    cursor = params.get("cursor", "")
    offset = 0
    if cursor:
        parsed = parse_uint(cursor.removeprefix("page-"))
        if not cursor.startswith("page-") or parsed is None:
            return params_error("cursor invalid")
        offset = parsed
    symbol = params.get("symbol")
    settle = params.get("settleCoin")
    if symbol:
        if symbol not in sim.instruments:
            return params_error(f"symbol invalid {symbol}")
        found = sorted(Accounts.positions(user, symbol).items())
        listed = [position for _, position in found]
    elif settle:
        listed = [
            position
            for name in sorted(user.positions)
            if sim.instruments.settle_coin(name) == settle
            for _, position in sorted(user.positions[name].items())
            if float(position.size) > 0
        ]
    else:
        return params_error("symbol or settleCoin is required")
    page = listed[offset : offset + limit]
    more = offset + limit < len(listed)
    return ok(
        {
            "list": [position.to_json() for position in page],
            "nextPageCursor": f"page-{offset + limit}" if more else "",
            "category": "linear",
        }
    )


SET_LEVERAGE_PATH = "/v5/position/set-leverage"
SWITCH_ISOLATED_PATH = "/v5/position/switch-isolated"
SWITCH_MODE_PATH = "/v5/position/switch-mode"
ADD_MARGIN_PATH = "/v5/position/add-margin"
#: The leverage the simulator's instruments allow at most (their leverageFilter).
MAX_LEVERAGE = Decimal(100)


def _leverage(params: dict[str, Any], name: str) -> Decimal:
    value = decimal(params, name)
    if value < 1:
        raise Refused(10001, f"params error: {name} must be at least 1")
    return value


def set_leverage(call: Call) -> Outcome:
    """``POST /v5/position/set-leverage``: a symbol's leverage, per side in hedge mode."""
    user, params, sim = call.account, call.params, call.sim
    category(params)
    symbol = listed_symbol(call)
    buy, sell = _leverage(params, "buyLeverage"), _leverage(params, "sellLeverage")
    positions = Accounts.positions(user, symbol)
    hedge = 0 not in positions
    if not hedge and buy != sell:
        raise Refused(10001, "params error: buyLeverage must equal sellLeverage in one-way mode")
    if max(buy, sell) > MAX_LEVERAGE:
        raise Refused(110013)
    if user.margin_mode == "portfolio":
        raise Refused(110038)
    wanted = {1: buy, 2: sell} if hedge else {0: buy}
    if all(Decimal(positions[i].leverage) == value for i, value in wanted.items()):
        raise Refused(110043)
    for i, value in wanted.items():
        positions[i].leverage = text(value)
        positions[i].updated_ms = call.now_ms
    sim.positions_changed(user, symbol)
    return ok()


def switch_isolated(call: Call) -> Outcome:
    """``POST /v5/position/switch-isolated``: a classic account's margin mode per symbol."""
    user, params, sim = call.account, call.params, call.sim
    category(params, ("linear", "inverse"))
    if user.account_type == "unified":
        # A unified account sets its margin mode for the account (set-margin-mode).
        raise Refused(100028)
    symbol = listed_symbol(call)
    trade_mode = required(params, "tradeMode")
    if type(trade_mode) is not int or trade_mode not in (0, 1):
        raise Refused(10001, "params error: tradeMode must be 0 or 1")
    buy, sell = _leverage(params, "buyLeverage"), _leverage(params, "sellLeverage")
    if buy != sell:
        raise Refused(10001, "params error: buyLeverage must equal sellLeverage")
    if buy > MAX_LEVERAGE:
        raise Refused(110013)
    mode = "isolated" if trade_mode == 1 else "cross"
    positions = Accounts.positions(user, symbol)
    if all(position.margin_mode == mode for position in positions.values()):
        raise Refused(110026)
    for position in positions.values():
        position.margin_mode = mode
        position.leverage = text(buy)
        position.updated_ms = call.now_ms
    sim.positions_changed(user, symbol)
    return ok()


def switch_mode(call: Call) -> Outcome:
    """``POST /v5/position/switch-mode``: one-way (mode 0) or hedge mode (3), by symbol or coin."""
    user, params, sim = call.account, call.params, call.sim
    category(params)
    mode = required(params, "mode")
    if type(mode) is not int or mode not in (0, 3):
        raise Refused(10001, "params error: mode must be 0 or 3")
    hedge = mode == 3
    symbol = params.get("symbol")
    if symbol:
        symbols = [listed_symbol(call)]
    else:
        coin = required(params, "coin")
        symbols = [
            name
            for name in sorted(set(sim.instruments.symbols) | set(user.positions))
            if sim.instruments.settle_coin(name) == coin
        ]
        if hedge:
            user.hedge_coins.add(str(coin))
        else:
            user.hedge_coins.discard(str(coin))
    changed = False
    for name in symbols:
        if hedge and sim.instruments.settle_coin(name) != "USDT":
            if symbol:
                raise Refused(110029)
            continue
        positions = Accounts.positions(user, name)
        if hedge == (0 not in positions):
            continue
        if any(float(position.size) > 0 for position in positions.values()):
            if symbol:
                raise Refused(110024)
            continue
        first = next(iter(positions.values()))
        indices = (1, 2) if hedge else (0,)
        positions.clear()
        for i in indices:
            positions[i] = Position(
                name, i, 0, first.margin_mode, leverage=first.leverage, updated_ms=call.now_ms
            )
        sim.positions_changed(user, name)
        changed = True
    if symbol and not changed:
        raise Refused(110025)
    return ok()


#: The fields add-margin answers with besides category and symbol (Bybit's page).
_ADD_MARGIN_FIELDS = (
    "positionIdx",
    "riskId",
    "riskLimitValue",
    "size",
    "positionValue",
    "avgPrice",
    "liqPrice",
    "bustPrice",
    "markPrice",
    "leverage",
    "autoAddMargin",
    "positionStatus",
    "positionIM",
    "positionMM",
    "unrealisedPnl",
    "cumRealisedPnl",
    "stopLoss",
    "takeProfit",
    "trailingStop",
    "createdTime",
    "updatedTime",
)


def add_margin(call: Call) -> Outcome:
    """``POST /v5/position/add-margin``: add to (or take from) an isolated position's margin."""
    user, params, sim = call.account, call.params, call.sim
    kind = category(params, ("linear", "inverse"))
    symbol = listed_symbol(call)
    amount = decimal(params, "margin", signed=True)
    if amount == 0 or amount.as_tuple().exponent < -4:  # type: ignore[operator]
        raise Refused(10001, "params error: margin must be non-zero, up to 4 decimals")
    position = _position(user, symbol, params)
    if user.margin_mode == "portfolio":
        raise Refused(110077)
    if position.margin_mode != "isolated":
        raise Refused(110015)
    if float(position.size) == 0:
        raise Refused(110033)
    coin = sim.instruments.settle_coin(symbol)
    held = Decimal(position.margin)
    if amount < 0 and held + amount < 0:
        raise Refused(110027)
    free = Decimal(user.balances.get(coin, "0")) - position_margin(call, user, coin)
    if amount > free:
        raise Refused(110014)
    position.margin = text(held + amount)
    position.updated_ms = call.now_ms
    sim.positions_changed(user, symbol)
    shown = position.to_json()
    fields = {key: shown[key] for key in _ADD_MARGIN_FIELDS}
    return ok({"category": kind, "symbol": symbol, **fields})


def _position(user: User, symbol: str, params: dict[str, Any]) -> Position:
    """The position *positionIdx* names (absent: the one-way one), checked against the mode."""
    idx: Any = None
    if "positionIdx" in params:
        # Present means it must be a real index: null is refused, not read as absent.
        idx = params["positionIdx"]
        if type(idx) is not int or idx not in (0, 1, 2):
            raise Refused(10001, "params error: positionIdx must be 0, 1 or 2")
    positions = Accounts.positions(user, symbol)
    if (idx in (1, 2)) != (0 not in positions):
        raise Refused(10001, "position idx not match position mode")
    return positions[0 if idx is None else idx]


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", POSITION_LIST_PATH): position_list,
    ("POST", SET_AUTO_ADD_MARGIN_PATH): set_auto_add_margin,
    ("POST", SET_LEVERAGE_PATH): set_leverage,
    ("POST", SWITCH_ISOLATED_PATH): switch_isolated,
    ("POST", SWITCH_MODE_PATH): switch_mode,
    ("POST", ADD_MARGIN_PATH): add_margin,
}
