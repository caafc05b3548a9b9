"""The simulator's private WebSocket stream, driven with a plain aiohttp WebSocket client."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import aiohttp
import orjson

from bybit_async.testing import BybitSimulator

from .test_sim_control import control


def auth(key: str, secret: str, expires: int | None = None) -> dict[str, Any]:
    expires = int(time.time() * 1000) + 10_000 if expires is None else expires
    signature = hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256)
    return {"op": "auth", "args": [key, expires, signature.hexdigest()]}


async def ask(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send_str(orjson.dumps(message).decode())
    answer: dict[str, Any] = orjson.loads((await ws.receive()).data)
    return answer


async def connect(
    client: aiohttp.ClientSession, sim: BybitSimulator
) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect(sim.url.replace("http://", "ws://") + "/v5/private")
    assert (await ask(ws, auth(sim.api_key, sim.api_secret)))["success"] is True
    assert (await ask(ws, {"op": "subscribe", "args": ["position.linear"]}))["success"] is True
    return ws


async def test_auth_is_checked_as_bybit_does(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    url = sim.url.replace("http://", "ws://") + "/v5/private"
    async with client.ws_connect(url) as ws:
        refused = await ask(ws, {"op": "subscribe", "args": ["position"]})
        assert refused["success"] is False
        assert "needs auth" in refused["ret_msg"]
        expired = await ask(ws, auth(sim.api_key, sim.api_secret, expires=1))
        assert (expired["success"], expired["ret_msg"]) == (False, "Params Error")
        wrong = await ask(ws, auth(sim.api_key, "not-the-secret"))
        assert wrong["success"] is False
        assert "signature" in wrong["ret_msg"]
        unknown = await ask(ws, auth("nobody", sim.api_secret))
        assert "apikey" in unknown["ret_msg"]
        ok = await ask(ws, auth(sim.api_key, sim.api_secret))
        assert ok == {"success": True, "ret_msg": "", "op": "auth", "conn_id": ok["conn_id"]}


async def test_ping_pong_and_subscribe_rules(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    ws = await connect(client, sim)
    pong = await ask(ws, {"op": "ping", "req_id": "r1"})
    assert (pong["op"], pong["req_id"]) == ("pong", "r1")
    both = await ask(ws, {"op": "subscribe", "args": ["position", "position.linear"]})
    assert both["success"] is False
    unknown = await ask(ws, {"op": "subscribe", "args": ["order"]})
    assert "topic:order" in unknown["ret_msg"]
    await ws.close()


async def test_changes_are_pushed_with_a_new_seq(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    ws = await connect(client, sim)
    sim.set_position("BTCUSDT", size="1")
    push = orjson.loads((await ws.receive()).data)
    assert push["topic"] == "position.linear"
    (item,) = push["data"]
    assert (item["symbol"], item["size"], item["autoAddMargin"]) == ("BTCUSDT", "1", 0)
    sim.set_position("BTCUSDT", auto_add_margin=1)
    (later,) = orjson.loads((await ws.receive()).data)["data"]
    assert later["seq"] > item["seq"]
    assert sim.position("BTCUSDT").seq == later["seq"]
    await ws.close()


async def test_control_api_faults(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    ws = await connect(client, sim)
    status, state = await control(client, sim.url, "GET", "stream")
    assert (status, state["connections"], state["answerPings"]) == (200, 1, True)
    status, state = await control(
        client, sim.url, "PATCH", "stream", {"answerPings": False, "pushDelay": 0.01}
    )
    assert (status, state["answerPings"], state["pushDelay"]) == (200, False, 0.01)
    await ws.send_str('{"op": "ping"}')
    sim.set_position("ETHUSDT", size="1")
    # The ping goes unanswered: the next message is the (delayed) push.
    assert orjson.loads((await ws.receive()).data)["topic"] == "position.linear"
    status, _bad = await control(client, sim.url, "PATCH", "stream", {"pushDelay": -1})
    assert status == 400
    status, dropped = await control(client, sim.url, "POST", "stream/drop", {})
    assert (status, dropped) == (200, {"dropped": 1})
    assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    sim.reset()
    assert (sim.stream.answer_pings, sim.stream.push_delay) == (True, 0.0)
