"""Market endpoints: public, limited per IP only."""

from __future__ import annotations

from typing import Any

from ..auth import parse_uint
from ..protocol import MARKET_TIME_PATH, base_coin
from .common import Call, Handler, Outcome, Refused, category, ok

#: Every category Bybit lists instruments in; the simulator lists linear ones only.
CATEGORIES = ("linear", "inverse", "spot", "option")
INSTRUMENTS_PATH = "/v5/market/instruments-info"
TICKERS_PATH = "/v5/market/tickers"


def market_time(call: Call) -> Outcome:
    """``GET /v5/market/time``: the server clock in seconds and nanoseconds, as strings."""
    ns = call.sim.server_time_ns()
    return ok({"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)})


def _tick(price: str) -> str:
    """A tick size about a ten-thousandth of *price*, a power of ten."""
    value = float(price)
    tick = 1.0
    while tick > value / 10_000 and tick > 1e-8:
        tick /= 10
    while tick * 10 <= value / 10_000:
        tick *= 10
    return format(tick, "f").rstrip("0").rstrip(".") if tick < 1 else str(int(tick))


def instrument_json(call: Call, symbol: str) -> dict[str, Any]:
    """One linear instrument as instruments-info lists it, with Bybit's fields."""
    instruments = call.sim.instruments
    settle = instruments.settle_coin(symbol)
    futures = "-" in symbol
    tick = _tick(instruments.price(symbol))
    scale = str(len(tick.partition(".")[2]))
    return {
        "symbol": symbol,
        "contractType": "LinearFutures" if futures else "LinearPerpetual",
        "status": "Trading",
        "baseCoin": base_coin(symbol),
        "quoteCoin": settle,
        "symbolType": "",
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": scale,
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": tick, "maxPrice": "199999.8", "tickSize": tick},
        "lotSizeFilter": {
            "maxOrderQty": "1190.000",
            "minOrderQty": "0.001",
            "qtyStep": "0.001",
            "postOnlyMaxOrderQty": "1190.000",
            "maxMktOrderQty": "500.000",
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 0 if futures else 480,
        "settleCoin": settle,
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "displayName": "",
        "forbidUplWithdrawal": False,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "isPreListing": False,
        "preListingInfo": None,
    }


def _listed(call: Call) -> list[str]:
    instruments = call.sim.instruments
    symbols = set(instruments.symbols)
    # With any symbol accepted, the ones an account has touched are listed too.
    if instruments.any:
        for user in call.sim.accounts_state():
            symbols.update(user.positions)
    return sorted(symbols)


def _page(
    params: dict[str, Any], names: list[str], default: int, top: int
) -> tuple[list[str], str]:
    limit = parse_uint(str(params.get("limit", default)))
    if limit is None or not 1 <= limit <= top:
        raise Refused(10001, f"params error: limit must be an integer from 1 to {top}")
    cursor = str(params.get("cursor", ""))
    offset = 0
    if cursor:
        parsed = parse_uint(cursor.removeprefix("page-"))
        if not cursor.startswith("page-") or parsed is None:
            raise Refused(10001, "params error: cursor invalid")
        offset = parsed
    more = offset + limit < len(names)
    return names[offset : offset + limit], f"page-{offset + limit}" if more else ""


def instruments_info(call: Call) -> Outcome:
    """``GET /v5/market/instruments-info``: the simulator's linear instruments.

    Other categories are valid and list nothing.
    """
    params = call.params
    kind = category(params, CATEGORIES)
    status = params.get("status")
    if status not in (None, "", "Trading", "PreLaunch", "Delivering", "Closed"):
        raise Refused(10001, "params error: status invalid")
    names = _listed(call) if kind == "linear" and status in (None, "", "Trading") else []
    symbol = params.get("symbol")
    if symbol:
        names = [name for name in names if name == symbol]
    base = params.get("baseCoin")
    if base:
        names = [name for name in names if base_coin(name) == base]
    page, cursor = _page(params, names, 500, 1000)
    return ok(
        {
            "category": kind,
            "list": [instrument_json(call, name) for name in page],
            "nextPageCursor": cursor,
        }
    )


def ticker_json(call: Call, symbol: str) -> dict[str, str]:
    """One linear ticker: every price is the symbol's price, volumes zero."""
    price = call.sim.instruments.price(symbol)
    funding = (call.now_ms // 28_800_000 + 1) * 28_800_000
    return {
        "symbol": symbol,
        "lastPrice": price,
        "indexPrice": price,
        "markPrice": price,
        "prevPrice24h": price,
        "price24hPcnt": "0",
        "highPrice24h": price,
        "lowPrice24h": price,
        "prevPrice1h": price,
        "openInterest": "0",
        "openInterestValue": "0",
        "turnover24h": "0",
        "volume24h": "0",
        "fundingRate": "0.0001",
        "nextFundingTime": str(funding),
        "predictedDeliveryPrice": "",
        "basisRate": "",
        "deliveryFeeRate": "",
        "deliveryTime": "0",
        "ask1Size": "1",
        "bid1Price": price,
        "ask1Price": price,
        "bid1Size": "1",
        "basis": "",
    }


def tickers(call: Call) -> Outcome:
    """``GET /v5/market/tickers``: linear tickers; other categories list nothing."""
    params = call.params
    kind = category(params, CATEGORIES)
    symbol = params.get("symbol")
    if kind != "linear":
        return ok({"category": kind, "list": []})
    if symbol:
        if symbol not in call.sim.instruments:
            raise Refused(10001, "params error: symbol invalid")
        names = [str(symbol)]
    else:
        names = _listed(call)
    return ok({"category": kind, "list": [ticker_json(call, name) for name in names]})


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", MARKET_TIME_PATH): market_time,
    ("GET", INSTRUMENTS_PATH): instruments_info,
    ("GET", TICKERS_PATH): tickers,
}
