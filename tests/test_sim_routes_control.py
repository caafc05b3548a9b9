"""Fixture routes for the paths the simulator does not model (issue 26, item 3) and the control
API's guards (item 6): JSON bodies only, the Host header, wall-clock times in the request log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bybit_async.testing import BybitSimulator, cli
from tests.sim_http import call, public

REALTIME = "/v5/order/realtime"
ORDERS = {"list": [{"orderId": "1", "symbol": "BTCUSDT"}], "nextPageCursor": ""}


async def control(
    client: aiohttp.ClientSession,
    sim: BybitSimulator,
    method: str,
    name: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    data = None if body is None else orjson.dumps(body)
    async with client.request(method, f"{sim.url}/_sim/{name}", data=data, headers=sent) as resp:
        return resp.status, await resp.json()


async def test_a_path_with_no_fixture_is_a_404_naming_it(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    reply = await call(client, sim, "GET", REALTIME, {"category": "linear"})
    assert reply.status == 404
    assert reply.code == 10017
    assert "GET /v5/order/realtime" in reply.data["retMsg"]
    # Authenticated first, as any V5 path: a bad signature is 10004, not 404.
    bad = await call(client, sim, "GET", REALTIME, {"category": "linear"}, secret="wrong")
    assert (bad.status, bad.code) == (200, 10004)


async def test_fixture_from_the_simulator_method(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    sim.add_route("GET", REALTIME, ORDERS)
    sim.add_route("POST", "/v5/order/cancel", ret_code=110001)
    reply = await call(client, sim, "GET", REALTIME, {"category": "linear"})
    assert (reply.code, reply.data["retMsg"], reply.result) == (0, "OK", ORDERS)
    # Counted against the table's per-UID limit of the path (50/s).
    assert reply.headers["X-Bapi-Limit"] == "50"
    cancel = await call(client, sim, "POST", "/v5/order/cancel", {"category": "linear"})
    assert (cancel.code, cancel.data["retMsg"]) == (110001, "simulated error 110001")
    assert cancel.headers["X-Bapi-Limit"] == "10"
    # Each answer is a fresh copy; a fixture added again replaces the old one.
    reply.result["list"].clear()
    assert (await call(client, sim, "GET", REALTIME)).result == ORDERS
    sim.add_route("GET", REALTIME, {"list": []})
    assert (await call(client, sim, "GET", REALTIME)).result == {"list": []}
    # Market paths are public.
    sim.add_route("GET", "/v5/market/orderbook", {"s": "BTCUSDT", "b": [], "a": []})
    assert (await public(client, sim, "/v5/market/orderbook", "category=linear")).code == 0
    # A fixture for a modelled path replaces its built-in answer.
    sim.add_route(
        "GET", "/v5/position/list", {"list": [], "nextPageCursor": "", "category": "linear"}
    )
    assert (await call(client, sim, "GET", "/v5/position/list", {"category": "linear"})).code == 0
    sim.remove_route("GET", "/v5/position/list")
    with pytest.raises(KeyError):
        sim.remove_route("GET", "/v5/position/list")
    with pytest.raises(ValueError, match="/v5/"):
        sim.add_route("GET", "/v4/old", {})
    with pytest.raises(TypeError, match="JSON object"):
        sim.add_route("GET", REALTIME, [1, 2])  # type: ignore[arg-type]
    # reset() goes back to the fixtures at start: none.
    sim.reset()
    assert sim.routes == []


async def test_fixtures_from_the_control_api(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    status, routes = await control(
        client, sim, "POST", "routes", {"method": "GET", "path": REALTIME, "result": ORDERS}
    )
    assert status == 200
    assert routes["routes"] == [{"method": "GET", "path": REALTIME, "result": ORDERS}]
    error = {"method": "POST", "path": "/v5/order/amend", "retCode": 10001, "retMsg": "too late"}
    await control(client, sim, "POST", "routes", {"routes": [error]})
    assert (await call(client, sim, "GET", REALTIME)).result == ORDERS
    amend = await call(client, sim, "POST", "/v5/order/amend", {"category": "linear"})
    assert (amend.code, amend.data["retMsg"]) == (10001, "too late")
    status, body = await control(client, sim, "POST", "routes", {"path": "/x", "result": {}})
    assert status == 400
    assert "/v5/" in body["error"]
    status, _ = await control(client, sim, "DELETE", "routes", {"method": "GET", "path": REALTIME})
    assert status == 200
    assert (await call(client, sim, "GET", REALTIME)).status == 404


def test_fixtures_and_account_types_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "sim.toml"
    config.write_text(
        """
[[accounts]]
api_key = "old"
api_secret = "old-secret"
account_type = "classic"

[[routes]]
method = "GET"
path = "/v5/order/realtime"
result = { list = [], nextPageCursor = "" }

[[routes]]
method = "POST"
path = "/v5/order/cancel-all"
retCode = 10001
retMsg = "nothing to cancel"
""",
        encoding="utf-8",
    )
    sim = cli._setup(["--config", str(config)]).build()
    assert [(r.method, r.path, r.ret_code) for r in sim.routes] == [
        ("GET", REALTIME, 0),
        ("POST", "/v5/order/cancel-all", 10001),
    ]
    assert sim.accounts_state()[0].account_type == "classic"
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"routes": [{"path": "/v5/x", "result": 5}]}))
    with pytest.raises(cli.ConfigError, match="result"):
        cli._setup(["--config", str(bad)])


# -- control API guards ------------------------------------------------------------


async def test_control_api_takes_json_only(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    # A browser page can POST text/plain or a form cross-site without a preflight: refused.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        body = b'{"apiKey": "evil", "apiSecret": "x"}'
        async with client.post(
            sim.url + "/_sim/accounts", data=body, headers={"Content-Type": content_type}
        ) as resp:
            assert resp.status == 403
            assert "JSON" in (await resp.json())["error"]
    async with client.post(sim.url + "/_sim/reset") as resp:
        assert resp.status == 403
    assert "evil" not in sim.api_keys()
    status, _ = await control(client, sim, "POST", "accounts", {"apiKey": "ok", "apiSecret": "x"})
    assert status == 200
    assert "ok" in sim.api_keys()


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("LOCALHOST:{port}", True),
        ("localhost", True),
        ("[::1]:{port}", True),
        ("evil.example:{port}", False),
        ("127.0.0.1.nip.io:{port}", False),
        ("localhost:1", False),
        ("", False),
    ],
)
async def test_control_api_checks_the_host_header(
    sim: BybitSimulator, client: aiohttp.ClientSession, host: str, allowed: bool
) -> None:
    headers = {"Host": host.format(port=sim.port_number)}
    status, body = await control(client, sim, "GET", "requests", headers=headers)
    assert status == (200 if allowed else 403), body
    # The Bybit paths themselves take any Host, as behind a proxy.
    async with client.get(sim.url + "/v5/market/time", headers={"Host": "api.bybit.com"}) as resp:
        assert resp.status == 200


async def test_wildcard_listener_takes_address_literals_not_names(
    client: aiohttp.ClientSession,
) -> None:
    async with BybitSimulator(host="0.0.0.0") as sim:
        port = sim.port_number
        for host, status in [(f"10.1.2.3:{port}", 200), (f"evil.example:{port}", 403)]:
            async with client.get(
                f"http://127.0.0.1:{port}/_sim/requests", headers={"Host": host}
            ) as resp:
                assert resp.status == status


async def test_request_log_times_are_wall_clock_ms(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    before = time.time_ns() // 1_000_000
    await public(client, sim, "/v5/market/time")
    after = time.time_ns() // 1_000_000
    _, log = await control(client, sim, "GET", "requests")
    (record,) = log["requests"]
    assert before <= record["time"] <= after
    assert sim.requests[0].time_ms == record["time"]


# -- every V5 path authenticated -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v5/account/wallet-balance"),
        ("GET", "/v5/user/query-api"),
        ("POST", "/v5/position/set-leverage"),
        ("GET", REALTIME),  # a fixture
        ("GET", "/v5/nothing/here"),  # neither
    ],
)
async def test_every_v5_path_is_authenticated(
    sim: BybitSimulator, client: aiohttp.ClientSession, method: str, path: str
) -> None:
    sim.add_route("GET", REALTIME, ORDERS)
    async with client.request(method, sim.url + path) as resp:
        assert resp.status == 401
    reply = await call(client, sim, method, path, secret="wrong")
    assert (reply.status, reply.code) == (200, 10004)
    reply = await call(client, sim, method, path, key="nobody")
    assert (reply.status, reply.code) == (200, 10003)
    # The timestamp window: 6 s behind the server's clock is outside 5 s, 1.5 s ahead too.
    assert (await call(client, sim, method, path, skew_ms=-6000)).code == 10002
    assert (await call(client, sim, method, path, skew_ms=1500)).code == 10002
    # None of these was counted against the account's per-UID limit.
    assert sim.count(path) == 5
    assert "X-Bapi-Limit" not in reply.headers


async def test_balances_and_prices_over_http(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    status, body = await control(
        client, sim, "POST", "balances", {"balances": {"USDT": "5", "BTC": 1}}
    )
    assert (status, body["balances"]) == (200, {"USDT": "5", "USDC": "10000", "BTC": "1"})
    status, body = await control(client, sim, "POST", "prices", {"prices": {"BTCUSDT": "65000"}})
    assert (status, body["prices"]) == (200, {"BTCUSDT": "65000"})
    reply = await public(client, sim, "/v5/market/tickers", "category=linear&symbol=BTCUSDT")
    assert reply.result["list"][0]["lastPrice"] == "65000"
    status, body = await control(client, sim, "POST", "balances", {"balances": {"USDT": True}})
    assert status == 400
    status, body = await control(client, sim, "POST", "prices", {"prices": {"NOPE": "1"}})
    assert status == 400
