"""Position endpoints: the list and the settings around auto-add-margin."""

from __future__ import annotations

from ..accounts import Accounts
from ..auth import parse_uint
from ..protocol import (
    DEFAULT_MESSAGES,
    NOT_MODIFIED_MSG,
    POSITION_LIST_PATH,
    SET_AUTO_ADD_MARGIN_PATH,
)
from . import Call, Handler, Outcome, ok, params_error


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


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", POSITION_LIST_PATH): position_list,
    ("POST", SET_AUTO_ADD_MARGIN_PATH): set_auto_add_margin,
}
