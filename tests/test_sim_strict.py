"""The simulator as strict as Bybit: position list, instruments, messages, faults' place, reset."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from yarl import URL

from bybit_async import BybitSession
from bybit_async.testing import (
    POSITION_LIST_PATH,
    SET_AUTO_ADD_MARGIN_PATH,
    SUCCESS_MESSAGES,
    BybitSimulator,
    Fault,
)

KEY = "test-key"
SECRET = "test-secret"


class Reply:
    """An answer: status, headers and the parsed envelope."""

    def __init__(self, status: int, headers: Mapping[str, str], text: str) -> None:
        self.status = status
        self.headers = headers
        self.text = text

    @property
    def data(self) -> dict[str, Any]:
        value = orjson.loads(self.text)
        assert isinstance(value, dict)
        return value

    @property
    def code(self) -> int:
        code = self.data["retCode"]
        assert isinstance(code, int)
        return code

    @property
    def result(self) -> dict[str, Any]:
        result = self.data["result"]
        assert isinstance(result, dict)
        return result


def signed_headers(sim: BybitSimulator, payload: bytes, key: str, secret: str) -> dict[str, str]:
    stamp = str(sim.server_time_ms())
    text = (stamp + key + "5000").encode() + payload
    return {
        "X-BAPI-API-KEY": key,
        "X-BAPI-TIMESTAMP": stamp,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": hmac.new(secret.encode(), text, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }


async def signed_get(
    client: aiohttp.ClientSession,
    sim: BybitSimulator,
    query: str | Mapping[str, str],
    *,
    key: str = KEY,
    secret: str = SECRET,
    path: str = POSITION_LIST_PATH,
) -> Reply:
    """GET *path* with *query* exactly as given, signed over that text."""
    text = query if isinstance(query, str) else urlencode(query)
    headers = signed_headers(sim, text.encode(), key, secret)
    url = URL(f"{sim.url}{path}?{text}", encoded=True)
    async with client.get(url, headers=headers) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.text())


async def signed_post(
    client: aiohttp.ClientSession,
    sim: BybitSimulator,
    params: Mapping[str, Any],
    *,
    key: str = KEY,
    secret: str = SECRET,
) -> Reply:
    """POST set-auto-add-margin with *params*, signed."""
    body = orjson.dumps(params)
    headers = signed_headers(sim, body, key, secret)
    async with client.post(sim.url + SET_AUTO_ADD_MARGIN_PATH, data=body, headers=headers) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.text())


def flag(symbol: str, value: int = 1, **extra: Any) -> dict[str, Any]:
    return {"category": "linear", "symbol": symbol, "autoAddMargin": value, **extra}


# -- GET /v5/position/list -------------------------------------------------------


async def test_position_list_by_symbol_without_a_position(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    reply = await signed_get(client, sim, {"category": "linear", "symbol": "BTCUSDT"})
    assert (reply.status, reply.code, reply.data["retMsg"]) == (200, 0, "OK")
    assert reply.result["category"] == "linear"
    assert reply.result["nextPageCursor"] == ""
    [item] = reply.result["list"]
    assert {k: item[k] for k in ("symbol", "positionIdx", "side", "size")} == {
        "symbol": "BTCUSDT",
        "positionIdx": 0,
        "side": "",
        "size": "0",
    }
    assert (item["tradeMode"], item["autoAddMargin"]) == (1, 0)
    assert reply.headers["X-Bapi-Limit"] == "50"
    assert reply.headers["X-Bapi-Limit-Status"] == "49"


async def test_position_list_shows_what_set_auto_add_margin_changed(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    sim.set_position("ETHUSDT", hedge=True, size="0.5", position_idx=2)
    sim.set_position("XRPUSDT", margin_mode="cross")
    assert (await signed_post(client, sim, flag("ETHUSDT", positionIdx=2))).code == 0
    reply = await signed_get(client, sim, "category=linear&symbol=ETHUSDT")
    items = reply.result["list"]
    assert [(p["positionIdx"], p["side"], p["size"], p["autoAddMargin"]) for p in items] == [
        (1, "", "0", 0),
        (2, "Sell", "0.5", 1),
    ]
    reply = await signed_get(client, sim, "category=linear&symbol=XRPUSDT")
    assert reply.result["list"][0]["tradeMode"] == 0


async def test_position_list_by_settle_coin_only_open_positions_and_pages(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    open_ones = ["ADAUSDT", "BTCUSDT", "DOTUSDT", "ETHUSDT", "SOLUSDT"]
    for symbol in open_ones:
        sim.set_position(symbol, size="1", side="Buy")
    sim.set_position("XRPUSDT")  # known, size 0: not listed by settleCoin
    sim.set_position("BTCPERP", size="2")  # USDC-settled
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        query = {"category": "linear", "settleCoin": "USDT", "limit": "2"}
        if cursor:
            query["cursor"] = cursor
        reply = await signed_get(client, sim, query)
        assert reply.code == 0
        seen += [p["symbol"] for p in reply.result["list"]]
        pages += 1
        cursor = reply.result["nextPageCursor"]
        if not cursor:
            break
    assert (seen, pages) == (open_ones, 3)
    reply = await signed_get(client, sim, {"category": "linear", "settleCoin": "USDC"})
    assert [(p["symbol"], p["side"]) for p in reply.result["list"]] == [("BTCPERP", "Buy")]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("category=linear", "symbol or settleCoin"),
        ("symbol=BTCUSDT", "category"),
        ("category=spot&symbol=BTCUSDT", "category"),
        ("category=linear&symbol=BTCUSDT&limit=201", "limit"),
        ("category=linear&symbol=BTCUSDT&limit=0", "limit"),
        ("category=linear&symbol=BTCUSDT&cursor=bogus", "cursor"),
        ("category=linear&symbol=NOPEUSDT", "symbol invalid"),
    ],
)
async def test_position_list_params(
    sim: BybitSimulator, client: aiohttp.ClientSession, query: str, words: str
) -> None:
    reply = await signed_get(client, sim, query)
    assert reply.code == 10001
    assert words in reply.data["retMsg"]


async def test_position_list_is_signed_over_the_query_as_sent(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    stamp = str(sim.server_time_ms())
    # Signed over one order, sent in another: Bybit checks the text as sent.
    signed = "category=linear&symbol=BTCUSDT"
    sent = "symbol=BTCUSDT&category=linear"
    sign = hmac.new(SECRET.encode(), (stamp + KEY + "5000" + signed).encode(), hashlib.sha256)
    headers = {
        "X-BAPI-API-KEY": KEY,
        "X-BAPI-TIMESTAMP": stamp,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": sign.hexdigest(),
    }
    async with client.get(f"{sim.url}{POSITION_LIST_PATH}?{sent}", headers=headers) as resp:
        data = orjson.loads(await resp.read())
    assert data["retCode"] == 10004
    assert (await signed_get(client, sim, sent)).code == 0
    # Percent-encoding is part of the text signed.
    assert (await signed_get(client, sim, "category=linear&symbol=BTC%55SDT")).code == 0
    assert sim.requests[-1].query == "category=linear&symbol=BTC%55SDT"


async def test_position_list_has_its_own_limit(client: aiohttp.ClientSession) -> None:
    async with BybitSimulator(endpoint_limits={POSITION_LIST_PATH: 1}) as sim:
        query = "category=linear&symbol=BTCUSDT"
        assert (await signed_get(client, sim, query)).code == 0
        assert (await signed_get(client, sim, query)).code == 10006
        assert (await signed_post(client, sim, flag("BTCUSDT"))).code == 0


async def test_session_signed_get_reads_the_position_list(sim: BybitSimulator) -> None:
    sim.set_position("SOLUSDT", size="3", side="Sell", auto_add_margin=1)
    async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
        resp = await session.request(
            "GET", POSITION_LIST_PATH, {"category": "linear", "symbol": "SOLUSDT"}
        )
    [item] = resp.result["list"]
    assert (item["side"], item["size"], item["autoAddMargin"]) == ("Sell", "3", 1)
    assert sim.count(POSITION_LIST_PATH, ret_code=0) == 1


# -- instruments and messages ------------------------------------------------------


async def test_unknown_symbol_is_rejected(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    reply = await signed_post(client, sim, flag("NOPEUSDT"))
    assert (reply.code, reply.data["retMsg"]) == (10001, "params error: symbol invalid")
    sim.add_instruments(["NOPEUSDT"])
    assert (await signed_post(client, sim, flag("NOPEUSDT"))).code == 0
    with pytest.raises(ValueError, match="instrument"):
        sim.set_position("OTHERUSDT")


async def test_instruments_none_takes_any_symbol(client: aiohttp.ClientSession) -> None:
    async with BybitSimulator(instruments=None) as sim:
        assert (await signed_post(client, sim, flag("ANY1USDT"))).code == 0
        assert (await signed_post(client, sim, flag("lower"))).code == 10001


async def test_success_messages_vary(client: aiohttp.ClientSession) -> None:
    async with BybitSimulator(success_messages=SUCCESS_MESSAGES) as sim:
        replies = [await signed_post(client, sim, flag(s)) for s in ("BTCUSDT", "ETHUSDT")]
        replies.append(await signed_get(client, sim, "category=linear&symbol=BTCUSDT"))
        assert [(r.code, r.data["retMsg"]) for r in replies] == [
            (0, "OK"),
            (0, "success"),
            (0, ""),
        ]
        # Errors keep their messages.
        assert (await signed_post(client, sim, flag("BTCUSDT"))).data["retMsg"] != "OK"


# -- where faults act ----------------------------------------------------------------


async def test_api_fault_comes_after_authentication(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    sim.inject(Fault.ret_code(10016))
    assert (await signed_post(client, sim, flag("BTCUSDT"), secret="wrong")).code == 10004
    assert (await signed_post(client, sim, flag("BTCUSDT"), key="nobody")).code == 10003
    reply = await signed_post(client, sim, flag("BTCUSDT"))
    assert reply.code == 10016
    assert reply.headers["X-Bapi-Limit"] == "10"
    assert (await signed_post(client, sim, flag("BTCUSDT"))).code == 0


async def test_edge_fault_comes_before_authentication(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    sim.inject(Fault.html(502))
    reply = await signed_post(client, sim, flag("BTCUSDT"), key="nobody")
    assert reply.status == 502
    assert "X-Bapi-Limit" not in reply.headers
    assert sim.faults == []


async def test_injected_10006_carries_the_limit_headers(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    assert (await signed_post(client, sim, flag("BTCUSDT"))).code == 0
    sim.inject(Fault.ret_code(10006))
    reply = await signed_post(client, sim, flag("ETHUSDT"))
    now = sim.server_time_ms()
    assert reply.code == 10006
    assert reply.headers["X-Bapi-Limit"] == "10"
    assert reply.headers["X-Bapi-Limit-Status"] == "0"
    assert now < int(reply.headers["X-Bapi-Limit-Reset-Timestamp"]) <= now + 1002
    # Not counted, as a real 10006 is not: 8 left after the next one.
    reply = await signed_post(client, sim, flag("ETHUSDT"))
    assert reply.headers["X-Bapi-Limit-Status"] == "8"


# -- reset ---------------------------------------------------------------------------------


async def test_reset_goes_back_to_the_start(client: aiohttp.ClientSession) -> None:
    sim = BybitSimulator(endpoint_limits={SET_AUTO_ADD_MARGIN_PATH: 1})
    sim.set_position("ETHUSDT", auto_add_margin=1)
    async with sim:
        assert (await signed_post(client, sim, flag("BTCUSDT"))).code == 0
        assert (await signed_post(client, sim, flag("XRPUSDT"))).code == 10006
        sim.set_position("ETHUSDT", auto_add_margin=0, hedge=True)
        sim.add_account("k2", "s2")
        sim.add_instruments(["NEWUSDT"])
        sim.enforce_limits = False
        sim.clock_offset_ms = 5000
        sim.inject(Fault.http_status(503), times=3)
        sim.reset()
        assert sim.requests == []
        assert sim.faults == []
        assert (sim.enforce_limits, sim.clock_offset_ms) == (True, 0)
        assert sim.auto_add_margin("BTCUSDT") == 0
        assert sim.auto_add_margin("ETHUSDT") == 1
        assert "k2" not in sim.api_keys()
        assert "NEWUSDT" not in sim.instruments
        # The window was forgotten: the limit of 1 admits one again.
        assert (await signed_post(client, sim, flag("XRPUSDT"))).code == 0
