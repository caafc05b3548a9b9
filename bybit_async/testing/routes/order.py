"""Order endpoints: create answers with an order id; there is no matching engine."""

from __future__ import annotations

import re
import uuid
from typing import Any

from ..accounts import SYMBOL_PATTERN
from ..protocol import ORDER_CREATE_PATH
from .common import Call, Handler, Outcome, error, ok, params_error

#: The categories an order can be placed in.
ORDER_CATEGORIES = ("linear", "inverse", "spot", "option")
_ORDER_TYPES = ("Market", "Limit")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_LINK_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")


def _positive_decimal(value: Any) -> bool:
    return isinstance(value, str) and bool(_DECIMAL.fullmatch(value)) and float(value) > 0


def create_order(call: Call) -> Outcome:
    """``POST /v5/order/create``: check the order's basic parameters and answer with its ids."""
    user, params, sim = call.account, call.params, call.sim
    category = params.get("category")
    if category is None:
        return params_error("category is required")
    if category not in ORDER_CATEGORIES:
        return params_error(f"category invalid {category}")
    symbol = params.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        return params_error("symbol is required")
    listed = symbol in sim.instruments if category == "linear" else SYMBOL_PATTERN.fullmatch(symbol)
    if not listed:
        return params_error(f"symbol invalid {symbol}")
    side = params.get("side")
    if side not in ("Buy", "Sell"):
        return params_error("side must be Buy or Sell")
    order_type = params.get("orderType")
    if order_type not in _ORDER_TYPES:
        return params_error("orderType must be Market or Limit")
    qty = params.get("qty")
    if not _positive_decimal(qty):
        return params_error("qty must be a positive decimal string")
    price = params.get("price")
    if order_type == "Limit" and not _positive_decimal(price):
        return params_error("price is required for a Limit order, as a positive decimal string")
    link_id = params.get("orderLinkId", "")
    if link_id != "" and not (isinstance(link_id, str) and _LINK_ID.fullmatch(link_id)):
        return params_error("orderLinkId must be up to 36 letters, digits, - or _")
    if link_id and link_id in user.order_link_ids:
        return error(110072)
    order_id = str(uuid.uuid4())
    if link_id:
        user.order_link_ids.add(link_id)
    user.orders[order_id] = {
        "orderId": order_id,
        "orderLinkId": link_id,
        "category": category,
        "symbol": symbol,
        "side": side,
        "orderType": order_type,
        "qty": qty,
        "price": price if isinstance(price, str) else "",
        "createdTime": str(call.now_ms),
    }
    return ok({"orderId": order_id, "orderLinkId": link_id})


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", ORDER_CREATE_PATH): create_order,
}
