"""Bybit's published per-UID rate limits for every V5 REST endpoint: the one table.

Bybit limits each UID per endpoint in a rolling window (one second for most
endpoints, one minute for some asset endpoints), and for the trade endpoints
separately per business line: ``linear`` and ``inverse`` contracts share one
budget, ``option`` and ``spot`` have their own.  `ENDPOINT_LIMITS` maps a
*budget key* to its `EndpointLimit`:

- the path, such as ``/v5/position/set-auto-add-margin``, for an endpoint
  whose limit does not depend on the category;
- the path, a colon and the categories that share the budget, joined by
  ``+``, such as ``/v5/order/create:linear+inverse`` or
  ``/v5/order/create:spot``, for an endpoint limited per business line.

`budget_key` maps a request's path and ``category`` parameter to its key.
Market data endpoints are public and limited per IP only: they are not in
the table.

These are the defaults.  Bybit raises the *upgradable* ones by VIP and PRO
level, and every answer states the UID's actual limit in ``X-Bapi-Limit``:
the limiter learns it from there (see `bybit_async.ratelimit`).

Source: Bybit V5 API documentation, "Rate Limit Rules" (``docs/v5/rate-limit``,
sections Trade, Position, Account, Asset, User, Spot Margin Trade, Spread
Trading, RFQ and Institutional Loan), read 2026-12-06 from the repository
bybit-exchange/docs at its newest stored commit, 072c197d of 2026-07-24
(`SOURCE`, `READ_ON`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

__all__ = [
    "CATEGORY_KEYS",
    "ENDPOINT_LIMITS",
    "READ_ON",
    "SOURCE",
    "EndpointLimit",
    "TableRow",
    "budget_key",
    "markdown",
    "table_rows",
]

#: Where the table was read, and when.
SOURCE = (
    "Bybit V5 API documentation, Rate Limit Rules (docs/v5/rate-limit/rate-limit.mdx and the "
    "pages its rows link to), bybit-exchange/docs at 072c197d (2026-07-24)"
)
READ_ON = "2026-12-06"

#: The categories of one business line, in the order keys name them.
_LINES = ("linear+inverse", "option", "spot")


class EndpointLimit(NamedTuple):
    """One budget: *limit* requests per rolling *window* seconds.

    *upgradable* is true where Bybit raises the limit by VIP or PRO level.
    """

    limit: int
    window: float = 1.0
    upgradable: bool = False


class TableRow(NamedTuple):
    """A row as Bybit's page shows it: *section*, *method*, *path* and its budgets.

    *limits* maps a business line (``linear+inverse``, ``option``, ``spot``)
    to its budget, or ``""`` to the one budget of an endpoint limited
    whatever its category.
    """

    section: str
    method: str
    path: str
    limits: Mapping[str, EndpointLimit]


def _s(limit: int, upgradable: bool = False) -> EndpointLimit:
    return EndpointLimit(limit, 1.0, upgradable)


def _m(limit: int) -> EndpointLimit:
    return EndpointLimit(limit, 60.0)


def _lines(contract: int, option: int | None, spot: int | None) -> dict[str, EndpointLimit]:
    """Upgradable trade budgets per business line (None: not offered)."""
    budgets = {"linear+inverse": _s(contract, True)}
    if option is not None:
        budgets["option"] = _s(option, True)
    if spot is not None:
        budgets["spot"] = _s(spot, True)
    return budgets


def _contract_spot(contract: int, spot: int) -> dict[str, EndpointLimit]:
    return {"linear+inverse": _s(contract), "spot": _s(spot)}


# (section, method, path, limit): an int is per second, _m() per minute, a dict per line.
_ROWS: tuple[tuple[str, str, str, int | EndpointLimit | dict[str, EndpointLimit]], ...] = (
    ("Trade", "POST", "/v5/order/create", _lines(10, 10, 20)),
    ("Trade", "POST", "/v5/order/amend", _lines(10, 10, 10)),
    ("Trade", "POST", "/v5/order/cancel", _lines(10, 10, 20)),
    ("Trade", "POST", "/v5/order/cancel-all", _lines(10, 1, 20)),
    ("Trade", "POST", "/v5/order/create-batch", _lines(10, 10, 20)),
    ("Trade", "POST", "/v5/order/amend-batch", _lines(10, 10, 20)),
    ("Trade", "POST", "/v5/order/cancel-batch", _lines(10, 10, 20)),
    ("Trade", "POST", "/v5/order/disconnected-cancel-all", 5),
    ("Trade", "POST", "/v5/order/pre-check", _lines(10, 10, 20)),
    ("Trade", "GET", "/v5/order/realtime", 50),
    ("Trade", "GET", "/v5/order/history", 50),
    ("Trade", "GET", "/v5/execution/list", 50),
    ("Trade", "GET", "/v5/order/spot-borrow-check", 50),
    ("Trade", "POST", "/v5/fcombobot/getlimit", 10),
    ("Trade", "POST", "/v5/fcombobot/create", 10),
    ("Trade", "POST", "/v5/fcombobot/close", 10),
    ("Trade", "POST", "/v5/fcombobot/detail", 10),
    ("Trade", "POST", "/v5/fgridbot/validate", 10),
    ("Trade", "POST", "/v5/fgridbot/create", 10),
    ("Trade", "POST", "/v5/fgridbot/close", 10),
    ("Trade", "POST", "/v5/fgridbot/detail", 10),
    ("Trade", "POST", "/v5/fmartingalebot/getlimit", 10),
    ("Trade", "POST", "/v5/fmartingalebot/create", 100),
    ("Trade", "POST", "/v5/fmartingalebot/close", 10),
    ("Trade", "POST", "/v5/fmartingalebot/detail", 10),
    ("Trade", "POST", "/v5/grid/validate-input", 100),
    ("Trade", "POST", "/v5/grid/create-grid", 3),
    ("Trade", "POST", "/v5/grid/close-grid", 3),
    ("Trade", "POST", "/v5/grid/query-grid-detail", 10),
    ("Trade", "POST", "/v5/dca/create-bot", 3),
    ("Trade", "POST", "/v5/dca/close-bot", 3),
    ("Trade", "POST", "/v5/strategy/create", _contract_spot(100, 100)),
    ("Trade", "GET", "/v5/strategy/list", _contract_spot(200, 200)),
    ("Trade", "GET", "/v5/strategy/order-list", _contract_spot(200, 200)),
    ("Trade", "POST", "/v5/strategy/stop", _contract_spot(100, 100)),
    ("Position", "GET", "/v5/position/list", 50),
    ("Position", "GET", "/v5/position/closed-pnl", 50),
    ("Position", "GET", "/v5/position/get-closed-positions", 50),
    ("Position", "GET", "/v5/position/move-history", 10),
    ("Position", "POST", "/v5/position/set-leverage", 10),
    ("Position", "POST", "/v5/position/switch-mode", 10),
    ("Position", "POST", "/v5/position/trading-stop", 10),
    ("Position", "POST", "/v5/position/set-auto-add-margin", 10),
    ("Position", "POST", "/v5/position/add-margin", 10),
    ("Position", "POST", "/v5/position/confirm-pending-mmr", 10),
    ("Position", "POST", "/v5/position/move-positions", 10),
    ("Account", "GET", "/v5/account/wallet-balance", 50),
    ("Account", "GET", "/v5/account/withdrawal", 50),
    ("Account", "GET", "/v5/account/borrow-history", 50),
    ("Account", "GET", "/v5/account/borrow", 1),
    ("Account", "GET", "/v5/account/repay", 1),
    ("Account", "GET", "/v5/account/no-convert-repay", 1),
    ("Account", "GET", "/v5/account/collateral-info", 50),
    ("Account", "GET", "/v5/asset/coin-greeks", 50),
    ("Account", "GET", "/v5/account/transaction-log", 25),
    ("Account", "GET", "/v5/account/fee-rate", 5),
    ("Account", "GET", "/v5/account/info", 50),
    ("Account", "GET", "/v5/account/instruments-info", 10),
    ("Account", "GET", "/v5/account/pay-info", 50),
    ("Account", "GET", "/v5/account/query-dcp-info", 5),
    ("Account", "GET", "/v5/account/smp-group", 5),
    ("Account", "GET", "/v5/account/trade-info-for-analysis", 50),
    ("Account", "GET", "/v5/account/user-setting-config", 50),
    ("Account", "POST", "/v5/account/mmp-modify", 5),
    ("Account", "POST", "/v5/account/mmp-reset", 5),
    ("Account", "POST", "/v5/account/quick-repayment", 1),
    ("Account", "POST", "/v5/account/set-collateral-switch-batch", 5),
    ("Account", "POST", "/v5/account/set-limit-px-action", 10),
    ("Account", "POST", "/v5/account/set-margin-mode", 5),
    ("Account", "POST", "/v5/account/upgrade-to-uta", 1),
    ("Asset", "GET", "/v5/asset/transfer/query-asset-info", _m(60)),
    ("Asset", "GET", "/v5/asset/transfer/query-transfer-coin-list", _m(60)),
    ("Asset", "GET", "/v5/asset/transfer/query-inter-transfer-list", _m(60)),
    ("Asset", "GET", "/v5/asset/transfer/query-sub-member-list", _m(60)),
    ("Asset", "GET", "/v5/asset/transfer/query-universal-transfer-list", 5),
    ("Asset", "GET", "/v5/asset/transfer/query-account-coins-balance", 5),
    ("Asset", "GET", "/v5/asset/transfer/query-account-coin-balance", 450),
    ("Asset", "GET", "/v5/asset/asset-overview", 50),
    ("Asset", "GET", "/v5/asset/withdraw/withdrawable-amount", 300),
    ("Asset", "GET", "/v5/asset/deposit/query-record", _m(100)),
    ("Asset", "GET", "/v5/asset/deposit/query-sub-member-record", _m(300)),
    ("Asset", "GET", "/v5/asset/deposit/query-address", _m(300)),
    ("Asset", "GET", "/v5/asset/deposit/query-sub-member-address", _m(300)),
    ("Asset", "GET", "/v5/asset/withdraw/query-record", _m(300)),
    ("Asset", "GET", "/v5/asset/coin/query-info", 5),
    ("Asset", "GET", "/v5/asset/exchange/order-record", _m(600)),
    ("Asset", "GET", "/v5/asset/exchange/query-coin-list", 30),
    ("Asset", "GET", "/v5/asset/covert/small-balance-history", 5),
    ("Asset", "GET", "/v5/asset/covert/small-balance-list", 10),
    ("Asset", "GET", "/v5/asset/delivery-record", 50),
    ("Asset", "GET", "/v5/asset/deposit/query-internal-record", 300),
    ("Asset", "GET", "/v5/fiat/balance-query", 1000),
    ("Asset", "GET", "/v5/fiat/query-coin-list", 1000),
    ("Asset", "GET", "/v5/fiat/trade-query", 1000),
    ("Asset", "GET", "/v5/fiat/query-trade-history", 1000),
    ("Asset", "GET", "/v5/asset/fundinghistory", 30),
    ("Asset", "GET", "/v5/asset/portfolio-margin", 50),
    ("Asset", "GET", "/v5/asset/settlement-record", 50),
    ("Asset", "GET", "/v5/asset/total-members-assets", 50),
    ("Asset", "GET", "/v5/asset/withdraw/vasp/list", 1),
    ("Asset", "GET", "/v5/asset/withdraw/query-address", 300),
    ("Asset", "POST", "/v5/asset/transfer/inter-transfer", _m(60)),
    ("Asset", "POST", "/v5/asset/transfer/save-transfer-sub-member", 20),
    ("Asset", "POST", "/v5/asset/transfer/universal-transfer", 5),
    ("Asset", "POST", "/v5/asset/withdraw/create", 5),
    ("Asset", "POST", "/v5/asset/withdraw/cancel", _m(60)),
    ("Asset", "POST", "/v5/asset/exchange/quote-apply", 20),
    ("Asset", "POST", "/v5/asset/exchange/convert-execute", 20),
    ("Asset", "POST", "/v5/asset/covert/small-balance-execute", 5),
    ("Asset", "POST", "/v5/asset/covert/get-quote", 5),
    ("Asset", "POST", "/v5/asset/deposit/deposit-to-account", 300),
    ("Asset", "POST", "/v5/fiat/trade-execute", 100),
    ("Asset", "POST", "/v5/fiat/quote-apply", 1000),
    ("Asset", "GET", "/v5/asset/exchange/convert-result-query", 50),
    ("Asset", "GET", "/v5/asset/exchange/query-convert-history", 50),
    ("Asset", "GET", "/v5/fiat/reference-price", 1000),
    ("User", "POST", "/v5/user/create-sub-member", 1),
    ("User", "POST", "/v5/user/create-sub-api", 1),
    ("User", "POST", "/v5/user/frozen-sub-member", 5),
    ("User", "POST", "/v5/user/update-api", 5),
    ("User", "POST", "/v5/user/update-sub-api", 5),
    ("User", "POST", "/v5/user/delete-api", 5),
    ("User", "POST", "/v5/user/delete-sub-api", 5),
    ("User", "GET", "/v5/user/query-sub-members", 10),
    ("User", "GET", "/v5/user/query-api", 10),
    ("User", "GET", "/v5/user/aff-customer-info", 10),
    ("User", "POST", "/v5/user/agreement", 20),
    ("User", "GET", "/v5/user/submembers", 5),
    ("User", "GET", "/v5/user/escrow_sub_members", 5),
    ("User", "GET", "/v5/user/sub-apikeys", 10),
    ("User", "GET", "/v5/user/get-member-type", 10),
    ("User", "POST", "/v5/user/del-submember", 5),
    ("User", "GET", "/v5/user/invitation/referrals", 10),
    ("Spot Margin Trade", "POST", "/v5/spot-margin-trade/switch-mode", 5),
    ("Spot Margin Trade", "POST", "/v5/spot-margin-trade/set-leverage", 5),
    ("Spot Margin Trade", "GET", "/v5/spot-margin-trade/state", 50),
    ("Spot Margin Trade", "GET", "/v5/spot-margin-trade/max-borrowable", 50),
    ("Spot Margin Trade", "GET", "/v5/spot-margin-trade/coinstate", 50),
    ("Spot Margin Trade", "GET", "/v5/spot-margin-trade/repayment-available-amount", 50),
    ("Spot Margin Trade", "POST", "/v5/spot-margin-trade/set-auto-repay-mode", 5),
    ("Spot Margin Trade", "GET", "/v5/spot-margin-trade/get-auto-repay-mode", 50),
    ("Spot Margin Trade", "GET", "/v5/spot-margin-trade/fixedborrow-order-quote", 5),
    ("Spot Margin Trade", "POST", "/v5/spot-margin-trade/fixedborrow", 1),
    ("Spot Margin Trade", "POST", "/v5/spot-margin-trade/fixedborrow-renew", 1),
    ("Spot Margin Trade", "GET", "/v5/spot-margin-trade/fixedborrow-order-info", 5),
    ("Spot Margin Trade", "GET", "/v5/spot-margin-trade/fixedborrow-contract-info", 5),
    ("Spot Margin Trade", "GET", "/v5/spot-margin-trade/liability", 5),
    ("Spread Trading", "POST", "/v5/spread/order/create", 20),
    ("Spread Trading", "POST", "/v5/spread/order/amend", 20),
    ("Spread Trading", "POST", "/v5/spread/order/cancel", 20),
    ("Spread Trading", "POST", "/v5/spread/order/cancel-all", 5),
    ("Spread Trading", "GET", "/v5/spread/order/realtime", 50),
    ("Spread Trading", "GET", "/v5/spread/order/history", 50),
    ("Spread Trading", "GET", "/v5/spread/execution/list", 50),
    ("Spread Trading", "GET", "/v5/spread/max-qty", 50),
    ("RFQ", "POST", "/v5/rfq/cancel-all-quotes", 50),
    ("RFQ", "POST", "/v5/rfq/cancel-quote", 50),
    ("RFQ", "POST", "/v5/rfq/accept-other-quote", 50),
    ("RFQ", "POST", "/v5/rfq/cancel-all-rfq", 50),
    ("RFQ", "POST", "/v5/rfq/create-quote", 50),
    ("RFQ", "POST", "/v5/rfq/create-rfq", 50),
    ("RFQ", "POST", "/v5/rfq/execute-quote", 50),
    ("RFQ", "POST", "/v5/rfq/cancel-rfq", 50),
    ("RFQ", "GET", "/v5/rfq/public-trades", 50),
    ("RFQ", "GET", "/v5/rfq/quote-list", 50),
    ("RFQ", "GET", "/v5/rfq/quote-realtime", 50),
    ("RFQ", "GET", "/v5/rfq/config", 50),
    ("RFQ", "GET", "/v5/rfq/rfq-list", 50),
    ("RFQ", "GET", "/v5/rfq/rfq-realtime", 50),
    ("RFQ", "GET", "/v5/rfq/trade-list", 50),
    ("Institutional Loan", "GET", "/v5/ins-loan/product-infos", 100),
    ("Institutional Loan", "GET", "/v5/ins-loan/ensure-tokens-convert", 100),
    ("Institutional Loan", "GET", "/v5/ins-loan/loan-order", 20),
    ("Institutional Loan", "GET", "/v5/ins-loan/repaid-history", 20),
    ("Institutional Loan", "GET", "/v5/ins-loan/ltv-convert", 20),
    ("Institutional Loan", "POST", "/v5/ins-loan/association-uid", 1),
    ("Institutional Loan", "POST", "/v5/ins-loan/repay-loan", 1),
)


def _build() -> tuple[tuple[TableRow, ...], dict[str, EndpointLimit], dict[str, dict[str, str]]]:
    rows: list[TableRow] = []
    limits: dict[str, EndpointLimit] = {}
    categories: dict[str, dict[str, str]] = {}
    for section, method, path, spec in _ROWS:
        if isinstance(spec, dict):
            budgets: dict[str, EndpointLimit] = dict(spec)
            keys = categories.setdefault(path, {})
            for line, budget in budgets.items():
                key = f"{path}:{line}"
                limits[key] = budget
                for category in line.split("+"):
                    keys[category] = key
        else:
            budgets = {"": spec if isinstance(spec, EndpointLimit) else _s(spec)}
            limits[path] = budgets[""]
        rows.append(TableRow(section, method, path, MappingProxyType(budgets)))
    return tuple(rows), limits, categories


_TABLE, _LIMITS, _CATEGORIES = _build()

#: Per-UID limits by budget key (a path, or ``path:categories``); Bybit's defaults.
ENDPOINT_LIMITS: Mapping[str, EndpointLimit] = MappingProxyType(_LIMITS)

#: For endpoints limited per business line: path -> category -> budget key.
CATEGORY_KEYS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {path: MappingProxyType(keys) for path, keys in _CATEGORIES.items()}
)


def budget_key(path: str, category: object = None) -> str:
    """Return the budget key of a request to *path* with the given *category* parameter.

    For an endpoint limited per business line, a category Bybit does not
    list there gives ``path:category``, a key the table lacks.
    """
    keys = CATEGORY_KEYS.get(path)
    if keys is None:
        return path
    key = keys.get(category) if isinstance(category, str) else None
    return key if key is not None else f"{path}:{category}"


def table_rows() -> tuple[TableRow, ...]:
    """The table as Bybit's page lays it out, one row per endpoint, in page order."""
    return _TABLE


def _rate(budget: EndpointLimit) -> str:
    unit = (
        "s" if budget.window == 1.0 else "min" if budget.window == 60.0 else f"{budget.window:g} s"
    )
    return f"{budget.limit}/{unit}" + (" (upgradable)" if budget.upgradable else "")


def markdown() -> str:
    """The docs page of the table, as ``docs/endpoint-limits.md`` holds it."""
    lines = [
        "# Endpoint limits",
        "",
        "<!-- Made by `python -m bybit_async.endpoint_limits`; tests/test_docs.py checks it. -->",
        "",
        "Bybit's published per-UID limits for every V5 REST endpoint, as",
        "`bybit_async.ENDPOINT_LIMITS` holds them: the limiter starts from these and",
        "then keeps to what each answer's `X-Bapi-Limit` states for the account",
        "(see [Rate limits](design-rate-limits.md)).  The budget key is what",
        "`RateLimits(endpoints=...)` overrides and `session.stats().limits` reports.",
        "Trade endpoints are limited per business line: `linear` and `inverse` share",
        "one budget, `option` and `spot` have their own.  Market data endpoints are",
        "public and limited only per IP (600 requests per 5 s).",
        "",
        f"Source: {SOURCE}; read {READ_ON}.",
        "",
    ]
    section = None
    for row in _TABLE:
        if row.section != section:
            section = row.section
            lines += ["", f"## {section}", "", "| Method | Budget key | Limit |", "|---|---|---|"]
        for line, budget in row.limits.items():
            key = f"{row.path}:{line}" if line else row.path
            lines.append(f"| {row.method} | `{key}` | {_rate(budget)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
