"""What the simulator answers with: paths, Bybit's messages and the default instruments."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..positions import settle_coin_of

#: retMsg of the retCode 10001 answer when autoAddMargin already has the requested value.
NOT_MODIFIED_MSG = "auto add margin not modified"

#: The public server-time endpoint.
MARKET_TIME_PATH = "/v5/market/time"
#: The signed endpoint that sets a position's auto-add-margin flag.
SET_AUTO_ADD_MARGIN_PATH = "/v5/position/set-auto-add-margin"
#: The signed GET endpoint that lists positions.
POSITION_LIST_PATH = "/v5/position/list"
#: The signed endpoint that places an order (answered with an id; no matching engine).
ORDER_CREATE_PATH = "/v5/order/create"
#: Bybit's V5 REST paths: every one is signed and limited except market data.
V5_PREFIX = "/v5/"
#: Public market-data paths: no signature, limited per IP only.
PUBLIC_PREFIX = "/v5/market/"
#: Paths under this prefix are the simulator's control API, not Bybit's.
CONTROL_PREFIX = "/_sim/"

#: Success retMsg values Bybit is documented or recorded sending (see docs/protocol-notes.md).
SUCCESS_MESSAGES: tuple[str, ...] = ("OK", "success", "")

#: Bybit's usual retMsg for each retCode; the one table of default messages.
DEFAULT_MESSAGES: Mapping[int, str] = MappingProxyType(
    {
        0: "OK",
        10000: "Server Timeout",
        10001: "params error",
        10002: "invalid request, please check your server timestamp or recv_window param",
        10003: "API key is invalid.",
        10004: "error sign!",
        10005: "Permission denied, please check your API key permissions.",
        10006: "Too many visits!",
        10007: "User authentication failed.",
        10008: "Common banned, please check your account mode",
        10009: "The service is not available in your region.",
        10010: "Unmatched IP, please check your API key's bound IP addresses.",
        10014: "Request is duplicate",
        10016: "Server error.",
        10017: "Route not found.",
        10018: "Exceeded the IP Rate Limit.",
        10024: "Compliance rules triggered",
        10027: "Controller Transactions are banned",
        10028: "The API can only be accessed by unified account users.",
        10029: "The requested symbol is invalid, please check symbol whitelist",
        33004: "Your api key has expired.",
        110015: "The position is in cross margin.",
        110025: "Position mode is not modified",
        110026: "Cross/isolated margin mode is not modified",
        110027: "Margin is not modified",
        110029: "Hedge mode is not available for this symbol",
        110067: "Unified account is not supported.",
        110072: "OrderLinkedID is duplicate",
        110074: "This contract is not live",
        100028: "The API cannot be accessed by unified account users.",
        110013: "Cannot set leverage due to risk limit level.",
        110014: "Insufficient available balance to add additional margin.",
        110024: "You have an existing position, so position mode cannot be switched",
        110033: "Margin cannot be set without open position",
        110038: "Portfolio margin mode is not allowed to change leverage",
        110043: "Set leverage not modified",
        110076: "Only isolated mode can set auto-add-margin",
        110077: "Pm mode cannot support",
    }
)

# Base coins of the default USDT perpetuals: widely listed ones, and every
# symbol of the demo (bybit_async.demo).  An illustration, not Bybit's listing.
_USDT_BASES = (
    "BTC",
    "ETH",
    "SOL",
    "XRP",
    "DOGE",
    "ADA",
    "AVAX",
    "LINK",
    "DOT",
    "TRX",
    "TON",
    "SHIB",
    "LTC",
    "BCH",
    "NEAR",
    "UNI",
    "APT",
    "ICP",
    "ETC",
    "FIL",
    "ATOM",
    "ARB",
    "OP",
    "INJ",
    "SUI",
    "SEI",
    "TIA",
    "STX",
    "IMX",
    "HBAR",
    "VET",
    "MKR",
    "AAVE",
    "GRT",
    "RUNE",
    "ALGO",
    "EGLD",
    "SAND",
    "MANA",
    "AXS",
    "FTM",
    "THETA",
    "FLOW",
    "CHZ",
    "KAVA",
    "ZIL",
    "ENS",
    "LDO",
    "CRV",
    "DYDX",
    "BNB",
    "MATIC",
    "XLM",
    "SHIB1000",
    "1000PEPE",
    "WLD",
    "JUP",
    "ORDI",
)

#: Linear contracts the simulator lists unless told otherwise: symbol -> settle coin.
DEFAULT_INSTRUMENTS: Mapping[str, str] = MappingProxyType(
    {
        **{f"{base}USDT": "USDT" for base in _USDT_BASES},
        "BTCPERP": "USDC",
        "ETHPERP": "USDC",
        "SOLPERP": "USDC",
    }
)


#: Prices the simulator quotes by base coin (an illustration, not a market).
DEFAULT_PRICES: Mapping[str, str] = MappingProxyType(
    {"BTC": "60000", "ETH": "3000", "SOL": "150", "BNB": "600", "XRP": "0.5", "DOGE": "0.1"}
)


def default_price(base: str) -> str:
    """The price quoted for a base coin with no price set."""
    return DEFAULT_PRICES.get(base, "1")


def base_coin(symbol: str) -> str:
    """The base coin of a linear *symbol*: ``BTC`` of ``BTCUSDT``, ``BTCPERP``, ``BTC-27DEC24``."""
    if "-" in symbol:
        return symbol.split("-", 1)[0]
    for suffix in ("USDT", "PERP", "USDC"):
        if symbol.endswith(suffix) and len(symbol) > len(suffix):
            return symbol[: -len(suffix)]
    return symbol


def default_message(code: int) -> str:
    """Bybit's usual retMsg for *code*, or a generic one for codes not in the table."""
    return DEFAULT_MESSAGES.get(code, f"simulated error {code}")


def settle_coin(symbol: str) -> str:
    """The settle coin of a linear *symbol* by its name: the client's rule (`settle_coin_of`)."""
    return settle_coin_of(symbol)
