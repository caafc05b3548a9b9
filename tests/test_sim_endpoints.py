"""The simulator's built-in endpoints (issue 26, item 2): shaped as Bybit documents them,
stateful and consistent with each other, with the documented errors and "not modified" answers.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from bybit_async import BybitSession
from bybit_async.positions import settle_coin_of
from bybit_async.testing import BybitSimulator
from tests.sim_http import Reply, call, public

LIST = "/v5/position/list"
AUTO = "/v5/position/set-auto-add-margin"
LEVERAGE = "/v5/position/set-leverage"
SWITCH_ISOLATED = "/v5/position/switch-isolated"
SWITCH_MODE = "/v5/position/switch-mode"
ADD_MARGIN = "/v5/position/add-margin"
MARGIN_MODE = "/v5/account/set-margin-mode"


def ok(reply: Reply) -> dict[str, Any]:
    assert (reply.status, reply.code, reply.data["retMsg"]) == (200, 0, "OK"), reply.text
    return reply.result


def refused(reply: Reply, code: int, words: str = "") -> None:
    assert (reply.status, reply.code) == (200, code), reply.text
    assert words in reply.data["retMsg"]


async def position(
    client: aiohttp.ClientSession, sim: BybitSimulator, symbol: str = "BTCUSDT"
) -> list[dict[str, Any]]:
    rows = ok(await call(client, sim, "GET", LIST, {"category": "linear", "symbol": symbol}))
    return list(rows["list"])


# -- market ------------------------------------------------------------------------


async def test_instruments_info_lists_linear_symbols_with_bybits_fields(
    client: aiohttp.ClientSession,
) -> None:
    async with BybitSimulator(instruments={"BTCUSDT": "USDT", "ETHPERP": "USDC"}) as sim:
        result = ok(await public(client, sim, "/v5/market/instruments-info", "category=linear"))
        assert result["category"] == "linear"
        assert result["nextPageCursor"] == ""
        btc, eth = result["list"]
        assert (btc["symbol"], btc["baseCoin"], btc["quoteCoin"], btc["settleCoin"]) == (
            "BTCUSDT",
            "BTC",
            "USDT",
            "USDT",
        )
        assert (eth["symbol"], eth["baseCoin"], eth["settleCoin"]) == ("ETHPERP", "ETH", "USDC")
        assert btc["contractType"] == "LinearPerpetual"
        assert btc["status"] == "Trading"
        assert set(btc["lotSizeFilter"]) >= {"minOrderQty", "maxOrderQty", "qtyStep"}
        assert set(btc["priceFilter"]) == {"minPrice", "maxPrice", "tickSize"}
        assert btc["leverageFilter"]["maxLeverage"] == "100.00"
        # Numbers as strings, as Bybit sends them.
        assert isinstance(btc["priceScale"], str)
        assert isinstance(btc["lotSizeFilter"]["qtyStep"], str)
        page = ok(
            await public(client, sim, "/v5/market/instruments-info", "category=linear&limit=1")
        )
        assert [i["symbol"] for i in page["list"]] == ["BTCUSDT"]
        query = f"category=linear&limit=1&cursor={page['nextPageCursor']}"
        second = ok(await public(client, sim, "/v5/market/instruments-info", query))
        assert ([i["symbol"] for i in second["list"]], second["nextPageCursor"]) == (
            ["ETHPERP"],
            "",
        )
        one = ok(
            await public(
                client, sim, "/v5/market/instruments-info", "category=linear&symbol=ETHPERP"
            )
        )
        assert [i["symbol"] for i in one["list"]] == ["ETHPERP"]
        # Other categories are valid and list nothing; an unknown one is a parameter error.
        spot = ok(await public(client, sim, "/v5/market/instruments-info", "category=spot"))
        assert spot["list"] == []
        refused(await public(client, sim, "/v5/market/instruments-info", "category=futures"), 10001)
        refused(await public(client, sim, "/v5/market/instruments-info"), 10001, "category")


async def test_tickers_quote_the_prices(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    sim.set_price("ETHUSDT", "3210.5")
    result = ok(await public(client, sim, "/v5/market/tickers", "category=linear&symbol=ETHUSDT"))
    (ticker,) = result["list"]
    assert (ticker["symbol"], ticker["lastPrice"], ticker["markPrice"]) == (
        "ETHUSDT",
        "3210.5",
        "3210.5",
    )
    assert all(isinstance(value, str) for value in ticker.values())
    every = ok(await public(client, sim, "/v5/market/tickers", "category=linear"))
    assert len(every["list"]) == len(sim.instruments.symbols)
    refused(await public(client, sim, "/v5/market/tickers", "category=linear&symbol=NOPE"), 10001)


# -- account -----------------------------------------------------------------------


async def test_margin_mode_drives_account_info_and_auto_add_margin(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    info = ok(await call(client, sim, "GET", "/v5/account/info"))
    assert (info["marginMode"], info["unifiedMarginStatus"]) == ("ISOLATED_MARGIN", 5)
    flag = {"category": "linear", "symbol": "BTCUSDT", "autoAddMargin": 1}
    for mode, code in [("REGULAR_MARGIN", 110076), ("PORTFOLIO_MARGIN", 110077)]:
        assert ok(await call(client, sim, "POST", MARGIN_MODE, {"setMarginMode": mode})) == {
            "reasons": []
        }
        assert ok(await call(client, sim, "GET", "/v5/account/info"))["marginMode"] == mode
        refused(await call(client, sim, "POST", AUTO, flag), code)
    ok(await call(client, sim, "POST", MARGIN_MODE, {"setMarginMode": "ISOLATED_MARGIN"}))
    assert sim.margin_mode() == "isolated"
    assert (await position(client, sim))[0]["tradeMode"] == 1
    ok(await call(client, sim, "POST", AUTO, flag))
    refused(await call(client, sim, "POST", MARGIN_MODE, {"setMarginMode": "CROSS"}), 10001)
    refused(await call(client, sim, "POST", MARGIN_MODE, {}), 10001, "setMarginMode")
    sim.add_account("classic", "c-secret", account_type="classic")
    reply = await call(
        client,
        sim,
        "POST",
        MARGIN_MODE,
        {"setMarginMode": "REGULAR_MARGIN"},
        key="classic",
        secret="c-secret",
    )
    refused(reply, 10028)
    info = ok(await call(client, sim, "GET", "/v5/account/info", key="classic", secret="c-secret"))
    assert info["unifiedMarginStatus"] == 1


async def test_wallet_balance_follows_balances_and_margin(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    sim.set_balance("USDT", "5000")
    sim.set_balance("USDC", "0")
    sim.set_balance("BTC", "0.5")
    result = ok(
        await call(client, sim, "GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED"})
    )
    (account,) = result["list"]
    assert account["accountType"] == "UNIFIED"
    coins = {c["coin"]: c for c in account["coin"]}
    assert set(coins) == {"USDT", "BTC"}
    assert coins["USDT"]["walletBalance"] == "5000"
    assert coins["BTC"]["usdValue"] == "30000"
    assert account["totalEquity"] == "35000"
    sim.set_position("BTCUSDT", size="0.1")
    ok(
        await call(
            client,
            sim,
            "POST",
            ADD_MARGIN,
            {"category": "linear", "symbol": "BTCUSDT", "margin": "250"},
        )
    )
    query = {"accountType": "UNIFIED", "coin": "USDT"}
    (account,) = ok(await call(client, sim, "GET", "/v5/account/wallet-balance", query))["list"]
    (usdt,) = account["coin"]
    assert (usdt["totalPositionIM"], usdt["availableToWithdraw"]) == ("250", "4750")
    assert account["totalInitialMargin"] == "250"
    refused(
        await call(client, sim, "GET", "/v5/account/wallet-balance", {"accountType": "SPOT"}),
        10001,
        "accountType",
    )


# -- position ----------------------------------------------------------------------


async def test_set_leverage(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    body = {"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "25", "sellLeverage": "25"}
    assert ok(await call(client, sim, "POST", LEVERAGE, body)) == {}
    assert (await position(client, sim))[0]["leverage"] == "25"
    refused(await call(client, sim, "POST", LEVERAGE, body), 110043)
    refused(await call(client, sim, "POST", LEVERAGE, {**body, "sellLeverage": "5"}), 10001)
    big = {**body, "buyLeverage": "150", "sellLeverage": "150"}
    refused(await call(client, sim, "POST", LEVERAGE, big), 110013)
    refused(await call(client, sim, "POST", LEVERAGE, {**body, "buyLeverage": 25}), 10001)
    # Hedge mode: one leverage per side.
    sim.set_position("ETHUSDT", hedge=True)
    hedge = {**body, "symbol": "ETHUSDT", "buyLeverage": "3", "sellLeverage": "7"}
    ok(await call(client, sim, "POST", LEVERAGE, hedge))
    assert [p["leverage"] for p in await position(client, sim, "ETHUSDT")] == ["3", "7"]
    ok(await call(client, sim, "POST", MARGIN_MODE, {"setMarginMode": "PORTFOLIO_MARGIN"}))
    refused(
        await call(
            client, sim, "POST", LEVERAGE, {**body, "buyLeverage": "9", "sellLeverage": "9"}
        ),
        110038,
    )


async def test_switch_isolated_is_for_classic_accounts(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    body = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "tradeMode": 0,
        "buyLeverage": "10",
        "sellLeverage": "10",
    }
    refused(await call(client, sim, "POST", SWITCH_ISOLATED, body), 100028)
    sim.add_account("classic", "c-secret", account_type="classic")
    creds = {"key": "classic", "secret": "c-secret"}
    ok(await call(client, sim, "POST", SWITCH_ISOLATED, body, **creds))
    assert sim.position("BTCUSDT", api_key="classic").margin_mode == "cross"
    refused(await call(client, sim, "POST", SWITCH_ISOLATED, body, **creds), 110026)
    flag = {"category": "linear", "symbol": "BTCUSDT", "autoAddMargin": 1}
    refused(await call(client, sim, "POST", AUTO, flag, **creds), 110076)
    ok(await call(client, sim, "POST", SWITCH_ISOLATED, {**body, "tradeMode": 1}, **creds))
    ok(await call(client, sim, "POST", AUTO, flag, **creds))
    refused(
        await call(client, sim, "POST", SWITCH_ISOLATED, {**body, "tradeMode": "1"}, **creds), 10001
    )


async def test_switch_mode(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    body = {"category": "linear", "symbol": "BTCUSDT", "mode": 3}
    ok(await call(client, sim, "POST", SWITCH_MODE, body))
    assert [p["positionIdx"] for p in await position(client, sim)] == [1, 2]
    refused(await call(client, sim, "POST", SWITCH_MODE, body), 110025)
    # Hedge mode needs positionIdx on set-auto-add-margin now.
    flag = {"category": "linear", "symbol": "BTCUSDT", "autoAddMargin": 1}
    refused(await call(client, sim, "POST", AUTO, flag), 10001, "position idx")
    ok(await call(client, sim, "POST", AUTO, {**flag, "positionIdx": 2}))
    sim.set_position("ETHUSDT", size="1")
    refused(await call(client, sim, "POST", SWITCH_MODE, {**body, "symbol": "ETHUSDT"}), 110024)
    refused(await call(client, sim, "POST", SWITCH_MODE, {**body, "symbol": "BTCPERP"}), 110029)
    refused(await call(client, sim, "POST", SWITCH_MODE, {**body, "mode": 1}), 10001)
    refused(await call(client, sim, "POST", SWITCH_MODE, {"category": "linear", "mode": 3}), 10001)
    # By coin: every USDT symbol with no position, and new ones from then on.
    ok(
        await call(
            client, sim, "POST", SWITCH_MODE, {"category": "linear", "coin": "USDT", "mode": 3}
        )
    )
    assert [p["positionIdx"] for p in await position(client, sim, "SOLUSDT")] == [1, 2]
    assert [p["positionIdx"] for p in await position(client, sim, "ETHUSDT")] == [0]


async def test_add_margin(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    body = {"category": "linear", "symbol": "BTCUSDT", "margin": "10"}
    refused(await call(client, sim, "POST", ADD_MARGIN, body), 110033)
    sim.set_position("BTCUSDT", size="0.01", side="Buy")
    result = ok(await call(client, sim, "POST", ADD_MARGIN, body))
    assert (result["category"], result["symbol"], result["positionIdx"]) == ("linear", "BTCUSDT", 0)
    assert (result["positionIM"], result["size"], result["autoAddMargin"]) == ("10", "0.01", 0)
    ok(await call(client, sim, "POST", ADD_MARGIN, {**body, "margin": "-2.5"}))
    assert (await position(client, sim))[0]["positionBalance"] == "7.5"
    refused(await call(client, sim, "POST", ADD_MARGIN, {**body, "margin": "-100"}), 110027)
    refused(await call(client, sim, "POST", ADD_MARGIN, {**body, "margin": "1000000"}), 110014)
    refused(await call(client, sim, "POST", ADD_MARGIN, {**body, "margin": "0.00001"}), 10001)
    sim.set_position("BTCUSDT", margin_mode="cross")
    refused(await call(client, sim, "POST", ADD_MARGIN, body), 110015)


# -- asset and user ----------------------------------------------------------------


async def test_coin_info_and_query_api(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    rows = ok(await call(client, sim, "GET", "/v5/asset/coin/query-info"))["rows"]
    coins = {row["coin"]: row for row in rows}
    assert {"USDT", "USDC", "BTC", "ETH"} <= set(coins)
    chain = coins["USDT"]["chains"][0]
    assert set(chain) >= {"chain", "chainDeposit", "chainWithdraw", "withdrawFee", "minAccuracy"}
    one = ok(await call(client, sim, "GET", "/v5/asset/coin/query-info", {"coin": "BTC"}))
    assert [row["coin"] for row in one["rows"]] == ["BTC"]
    key = ok(await call(client, sim, "GET", "/v5/user/query-api"))
    assert (key["apiKey"], key["userID"], key["uta"], key["readOnly"]) == (
        "test-key",
        int(sim.uid()),
        1,
        0,
    )
    assert key["secret"] == ""
    assert "test-secret" not in str(key)


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", LIST, "category=linear&category=linear&symbol=BTCUSDT"),
        ("GET", LIST, "category=linear&symbol=%ZZ"),
        ("GET", LIST, "category=linear&symbol=BTCUSDT&limit=abc"),
        ("POST", LEVERAGE, b"{not json"),
        ("POST", LEVERAGE, b"[1, 2]"),
        ("POST", LEVERAGE, b"\xff\xfe"),
        ("POST", LEVERAGE, {"category": "linear", "symbol": ["BTCUSDT"]}),
        ("POST", LEVERAGE, {"category": {"a": 1}, "symbol": "BTCUSDT"}),
        ("POST", SWITCH_MODE, {"category": "linear", "coin": 5, "mode": 0}),
        ("POST", ADD_MARGIN, {"category": "linear", "symbol": "BTCUSDT", "margin": "1e5"}),
        ("POST", MARGIN_MODE, {"setMarginMode": ["ISOLATED_MARGIN"]}),
        ("POST", "/v5/order/create", {"category": "linear", "symbol": 5}),
        ("GET", "/v5/account/wallet-balance", "accountType=UNIFIED&coin=%00"),
        ("GET", "/v5/market/instruments-info", "category=linear&limit=-1"),
    ],
)
async def test_malformed_input_gets_bybits_answer_never_a_500(
    sim: BybitSimulator,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    params: Any,
) -> None:
    caplog.set_level(logging.INFO, logger="bybit_async.testing")
    reply = await call(client, sim, method, path, params)
    assert reply.status == 200, reply.text
    assert reply.code in (0, 10001), reply.text
    if reply.code:
        # Logged, with Bybit's message.
        assert any(reply.data["retMsg"] in r.getMessage() for r in caplog.records)
    # The simulator goes on.
    ok(await call(client, sim, "GET", LIST, {"category": "linear", "symbol": "BTCUSDT"}))


@pytest.mark.parametrize(
    ("symbol", "coin"),
    [
        ("BTCUSDT", "USDT"),
        ("BTCUSDT-27DEC24", "USDT"),
        ("BTCPERP", "USDC"),
        ("ETHUSDC", "USDC"),
        ("BTC-27DEC24", "USDC"),
    ],
)
async def test_the_simulator_settles_a_symbol_in_the_coin_the_client_reads_it_under(
    sim: BybitSimulator, symbol: str, coin: str
) -> None:
    # One rule for both: a guard or a stream reading positions of a coin must
    # find in the simulator the symbols it takes for that coin.
    assert settle_coin_of(symbol) == coin
    sim.add_instruments([symbol])  # listed with no coin given: the simulator's own rule
    sim.set_position(symbol, size="1", side="Buy", margin_mode="isolated")
    async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
        listed = await session.get_positions(settle_coin=coin)
    assert [p.symbol for p in listed] == [symbol]
