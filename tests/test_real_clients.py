"""ccxt's async unified calls and pybit's position and account calls against the simulator,
in process and out of process (``python -m bybit_async.testing``): issue 26, item 4.

Neither client reaches the internet: every URL they hold is pointed at the simulator, and a
request anywhere else would fail the test (the simulator records every request it serves).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from bybit_async.testing import BybitSimulator
from tests.test_sim_control import start_process

ccxt_async = pytest.importorskip("ccxt.async_support")
unified_trading = pytest.importorskip("pybit.unified_trading")
exceptions = pytest.importorskip("pybit.exceptions")

KEY, SECRET = "test-key", "test-secret"


def ccxt_bybit(url: str, key: str = KEY, secret: str = SECRET) -> Any:
    """ccxt's async bybit with every API URL pointed at *url*."""
    exchange = ccxt_async.bybit({"apiKey": key, "secret": secret, "enableRateLimit": False})
    exchange.urls["api"] = {name: url for name in exchange.urls["api"]}
    return exchange


@pytest.fixture
async def exchange(sim: BybitSimulator) -> AsyncIterator[Any]:
    client = ccxt_bybit(sim.url)
    try:
        yield client
    finally:
        await client.close()


async def unified_calls(exchange: Any) -> dict[str, Any]:
    """ccxt's five unified calls, in the order an engine makes them at start-up."""
    markets = await exchange.load_markets()
    out: dict[str, Any] = {"markets": markets}
    out["margin"] = await exchange.set_margin_mode("isolated")
    out["leverage"] = await exchange.set_leverage(5, "BTC/USDT:USDT")
    out["positions"] = await exchange.fetch_positions(["BTC/USDT:USDT"])
    out["balance"] = await exchange.fetch_balance()
    return out


async def test_ccxt_unified_calls_in_process(sim: BybitSimulator, exchange: Any) -> None:
    sim.set_position("BTCUSDT", size="0.5", side="Buy")
    sim.add_account("spare", "spare-secret")  # does not disturb the default account
    ok = await unified_calls(exchange)
    market = ok["markets"]["BTC/USDT:USDT"]
    assert (market["id"], market["linear"], market["settle"]) == ("BTCUSDT", True, "USDT")
    assert market["precision"]["amount"] == 0.001
    assert "USDT" in exchange.currencies
    (position,) = ok["positions"]
    assert (position["symbol"], position["contracts"], position["side"]) == (
        "BTC/USDT:USDT",
        0.5,
        "long",
    )
    # ccxt reads a unified account's margin mode from the account, not the row.
    assert position["info"]["tradeMode"] == 1
    assert position["leverage"] == 5
    assert ok["balance"]["USDT"]["total"] == 100000
    assert sim.position("BTCUSDT").leverage == "5"
    # Everything went to the simulator, and every answer was a success.
    paths = {r.path for r in sim.requests}
    assert {
        "/v5/market/instruments-info",
        "/v5/asset/coin/query-info",
        "/v5/user/query-api",
        "/v5/account/info",
        "/v5/account/set-margin-mode",
        "/v5/position/set-leverage",
        "/v5/position/list",
        "/v5/account/wallet-balance",
    } <= paths
    assert {r.ret_code for r in sim.requests} == {0}


async def test_ccxt_sees_margin_mode_changes_and_errors(sim: BybitSimulator, exchange: Any) -> None:
    await exchange.load_markets()
    await exchange.set_margin_mode("cross")
    assert sim.margin_mode() == "cross"
    await exchange.set_leverage(7, "ETH/USDT:USDT")
    # Bybit's not-modified answer reaches ccxt as Bybit's error.
    with pytest.raises(ccxt_async.BaseError) as raised:
        await exchange.set_leverage(7, "ETH/USDT:USDT")
    assert "110043" in str(raised.value)
    positions = await exchange.fetch_positions(["ETH/USDT:USDT"])
    (eth,) = positions
    assert (eth["contracts"], eth["leverage"], eth["info"]["tradeMode"]) == (0, 7, 0)


async def test_ccxt_and_pybit_out_of_process() -> None:
    proc, line = await start_process("--account", f"{KEY}:{SECRET}", "--position", "BTCUSDT,size=2")
    try:
        name, _, url = line.partition("=")
        assert name == "BYBIT_SIMULATOR_URL"
        client = ccxt_bybit(url)
        try:
            ok = await unified_calls(client)
        finally:
            await client.close()
        assert ok["positions"][0]["contracts"] == 2
        http = pybit_http(url)
        try:
            reply = await asyncio.to_thread(http.get_wallet_balance, accountType="UNIFIED")
        finally:
            http.client.close()
        assert reply["retMsg"] == "OK"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()


# -- pybit ---------------------------------------------------------------------------


def pybit_http(url: str, key: str = KEY, secret: str = SECRET) -> Any:
    http = unified_trading.HTTP(
        api_key=key, api_secret=secret, max_retries=1, logging_level=logging.CRITICAL
    )
    http.endpoint = url
    return http


async def pybit(http: Any, method: str, **params: Any) -> Any:
    """A pybit call in a thread (it is synchronous), returning its envelope."""
    reply = await asyncio.to_thread(getattr(http, method), **params)
    assert reply["retMsg"] == "OK"
    return reply["result"]


@pytest.fixture(params=["in process", "out of process"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Any]]:
    """(URL, a coroutine function that sets a position up) of a simulator."""
    if request.param == "in process":
        async with BybitSimulator() as simulator:

            async def in_process(symbol: str, size: str) -> None:
                simulator.set_position(symbol, size=size)

            yield simulator.url, in_process
        return
    proc, line = await start_process("--account", f"{KEY}:{SECRET}")
    url = line.partition("=")[2]
    try:
        async with aiohttp.ClientSession() as client:

            async def over_http(symbol: str, size: str) -> None:
                body = orjson.dumps({"symbol": symbol, "size": size})
                headers = {"Content-Type": "application/json"}
                async with client.post(url + "/_sim/positions", data=body, headers=headers) as resp:
                    assert resp.status == 200

            yield url, over_http
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()


async def test_pybit_position_and_account_calls(target: tuple[str, Any]) -> None:
    url, set_position = target
    http = pybit_http(url)
    try:
        await pybit_calls(http, set_position)
    finally:
        http.client.close()


async def pybit_calls(http: Any, set_position: Any) -> None:
    info = await pybit(http, "get_account_info")
    assert info["marginMode"] == "ISOLATED_MARGIN"
    wallet = await pybit(http, "get_wallet_balance", accountType="UNIFIED", coin="USDT")
    assert wallet["list"][0]["coin"][0]["walletBalance"] == "100000"
    await pybit(http, "set_margin_mode", setMarginMode="REGULAR_MARGIN")
    await pybit(http, "set_margin_mode", setMarginMode="ISOLATED_MARGIN")
    await pybit(
        http, "set_leverage", category="linear", symbol="BTCUSDT", buyLeverage="4", sellLeverage="4"
    )
    await pybit(http, "switch_position_mode", category="linear", symbol="ETHUSDT", mode=3)
    await pybit(
        http,
        "set_auto_add_margin",
        category="linear",
        symbol="ETHUSDT",
        autoAddMargin=1,
        positionIdx=1,
    )
    await set_position("SOLUSDT", "3")
    added = await pybit(
        http, "add_or_reduce_margin", category="linear", symbol="SOLUSDT", margin="12"
    )
    assert added["positionIM"] == "12"
    listed = await pybit(http, "get_positions", category="linear", settleCoin="USDT")
    assert [(p["symbol"], p["positionIM"]) for p in listed["list"]] == [("SOLUSDT", "12")]
    eth = await pybit(http, "get_positions", category="linear", symbol="ETHUSDT")
    assert [(p["positionIdx"], p["autoAddMargin"]) for p in eth["list"]] == [(1, 1), (2, 0)]
    btc = await pybit(http, "get_positions", category="linear", symbol="BTCUSDT")
    assert btc["list"][0]["leverage"] == "4"
    coins = await pybit(http, "get_coin_info", coin="USDT")
    assert coins["rows"][0]["coin"] == "USDT"
    key = await pybit(http, "get_api_key_information")
    assert key["apiKey"] == KEY
    instruments = await asyncio.to_thread(
        http.get_instruments_info, category="linear", symbol="BTCUSDT"
    )
    assert instruments["result"]["list"][0]["symbol"] == "BTCUSDT"
    # A documented error reaches pybit as its exception, with Bybit's code.
    with pytest.raises(exceptions.InvalidRequestError) as caught:
        await asyncio.to_thread(
            http.set_leverage,
            category="linear",
            symbol="BTCUSDT",
            buyLeverage="4",
            sellLeverage="4",
        )
    assert caught.value.status_code == 110043
