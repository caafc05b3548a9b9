"""The simulator's per-account limits (issue 22, item 5): every path counted per UID against
the client's table by budget key, an account's own limits, order create, the shared IP limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from bybit_async.endpoint_limits import ENDPOINT_LIMITS, EndpointLimit
from bybit_async.testing import BybitSimulator, cli
from tests.sim_http import call

CREATE = "/v5/order/create"


def order(category: str = "linear", symbol: str = "BTCUSDT", **extra: str) -> dict[str, str]:
    return {
        "category": category,
        "symbol": symbol,
        "side": "Buy",
        "orderType": "Market",
        "qty": "0.01",
        **extra,
    }


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def burst(
    client: aiohttp.ClientSession, sim: BybitSimulator, n: int, category: str, key: str, secret: str
) -> list[int]:
    symbol = "BTCUSDT" if category in ("linear", "inverse") else "BTCUSD"
    if category == "spot":
        symbol = "BTCUSDT"
    replies = await asyncio.gather(
        *(
            call(client, sim, "POST", CREATE, order(category, symbol), key=key, secret=secret)
            for _ in range(n)
        )
    )
    return sorted(r.code for r in replies)


async def test_order_create_answers_ids_and_checks_params(client: aiohttp.ClientSession) -> None:
    async with BybitSimulator() as sim:
        reply = await call(client, sim, "POST", CREATE, order(orderLinkId="mine-1"))
        assert (reply.code, reply.data["retMsg"]) == (0, "OK")
        assert reply.result["orderLinkId"] == "mine-1"
        assert len(reply.result["orderId"]) == 36
        again = await call(client, sim, "POST", CREATE, order(orderLinkId="mine-1"))
        assert again.code == 110072
        limit = order(orderType="Limit")
        for bad, words in [
            ({**order(), "category": "futures"}, "category"),
            ({k: v for k, v in order().items() if k != "symbol"}, "symbol"),
            (order(symbol="NOPEUSDT"), "symbol"),
            ({**order(), "side": "buy"}, "side"),
            ({**order(), "orderType": "Stop"}, "orderType"),
            ({**order(), "qty": "-1"}, "qty"),
            ({**order(), "qty": 1}, "qty"),
            (limit, "price"),
        ]:
            reply = await call(client, sim, "POST", CREATE, bad)
            assert (reply.status, reply.code) == (200, 10001), bad
            assert words in reply.data["retMsg"]
        # Not JSON at all: Bybit's parameter error, no 500.
        assert (await call(client, sim, "POST", CREATE, b"{nope")).code == 10001
        assert (await call(client, sim, "POST", CREATE, {**limit, "price": "50000"})).code == 0


async def test_order_create_counts_per_business_line(client: aiohttp.ClientSession) -> None:
    async with BybitSimulator() as sim:
        # The table: linear and inverse share 10/s, spot has 20/s of its own.
        assert ENDPOINT_LIMITS[CREATE + ":linear+inverse"].limit == 10
        assert ENDPOINT_LIMITS[CREATE + ":spot"].limit == 20
        codes = await burst(client, sim, 8, "linear", "test-key", "test-secret")
        codes += await burst(client, sim, 4, "inverse", "test-key", "test-secret")
        assert codes.count(10006) == 2
        spot = await burst(client, sim, 20, "spot", "test-key", "test-secret")
        assert spot == [0] * 20
        reply = await call(client, sim, "POST", CREATE, order("spot"))
        assert (reply.code, reply.headers["X-Bapi-Limit"]) == (10006, "20")


async def test_an_accounts_own_limit_is_reported_and_enforced(
    client: aiohttp.ClientSession,
) -> None:
    async with BybitSimulator() as sim:
        vip = sim.add_account("vip", "vip-secret", uid=5001)
        sim.add_account("plain", "plain-secret", uid=5002)
        sim.set_limit(CREATE, 60, uid=vip)
        assert sim.limits(uid=vip) == {CREATE: 60}
        assert sim.limit_in_force(CREATE, "linear", api_key="vip") == EndpointLimit(60, 1.0)
        assert sim.limit_in_force(CREATE, "linear", api_key="plain") == EndpointLimit(10, 1.0, True)
        codes = await burst(client, sim, 61, "linear", "vip", "vip-secret")
        assert codes.count(10006) == 1
        reply = await call(
            client, sim, "POST", CREATE, order("spot"), key="vip", secret="vip-secret"
        )
        assert (reply.code, reply.headers["X-Bapi-Limit"]) == (0, "60")
        plain = await burst(client, sim, 11, "linear", "plain", "plain-secret")
        assert plain.count(10006) == 1
        # A budget key wins over the path for its business line; None removes it.
        sim.set_limit(CREATE + ":spot", 5, uid=vip)
        reply = await call(
            client, sim, "POST", CREATE, order("spot"), key="vip", secret="vip-secret"
        )
        assert reply.headers["X-Bapi-Limit"] == "5"
        sim.set_limit(CREATE, None, uid=vip)
        assert sim.limits(uid=vip) == {CREATE + ":spot": 5}
        # reset() goes back to the limits at start: none of the account's own.
        sim.reset()
        assert sim.limits(uid=vip) == {}


async def test_every_path_counts_per_uid_and_unknown_keys_only_when_set(
    client: aiohttp.ClientSession,
) -> None:
    async with BybitSimulator() as sim:
        sim.add_route("GET", "/v5/order/realtime", {"list": [], "nextPageCursor": ""})
        sim.add_route("GET", "/v5/made/up", {"x": "1"})
        reply = await call(client, sim, "GET", "/v5/order/realtime", {"category": "linear"})
        assert (reply.code, reply.headers["X-Bapi-Limit"]) == (0, "50")
        assert reply.headers["X-Bapi-Limit-Status"] == "49"
        # A path the table lacks: no per-UID limit, no headers...
        reply = await call(client, sim, "GET", "/v5/made/up")
        assert reply.code == 0
        assert "X-Bapi-Limit" not in reply.headers
        # ... until one is set for the account; a path with no fixture is counted too.
        sim.set_limit("/v5/made/up", 2)
        sim.set_limit("/v5/not/served", 1)
        codes = [(await call(client, sim, "GET", "/v5/made/up")).code for _ in range(3)]
        assert codes == [0, 0, 10006]
        first = await call(client, sim, "GET", "/v5/not/served")
        assert (first.status, first.headers["X-Bapi-Limit"]) == (404, "1")
        assert (await call(client, sim, "GET", "/v5/not/served")).code == 10006


async def test_sixty_second_windows_come_from_the_table(client: aiohttp.ClientSession) -> None:
    path = "/v5/asset/transfer/query-asset-info"
    assert ENDPOINT_LIMITS[path] == EndpointLimit(60, 60.0)
    async with BybitSimulator() as sim:
        sim.set_limit(path, 2)
        sim.add_route("GET", path, {})
        codes = [(await call(client, sim, "GET", path)).code for _ in range(3)]
        assert codes == [0, 0, 10006]
        # Refused until the oldest leaves a 60 s window, not a 1 s one.
        reset = int((await call(client, sim, "GET", path)).headers["X-Bapi-Limit-Reset-Timestamp"])
        assert reset - sim.server_time_ms() > 58_000


async def test_ip_limit_counts_every_account(client: aiohttp.ClientSession) -> None:
    async with BybitSimulator(ip_limit=4, ip_window=60) as sim:
        sim.add_account("k2", "s2")
        sim.add_account("k3", "s3")
        replies = [
            await call(client, sim, "POST", CREATE, order(), key=key, secret=secret)
            for key, secret in [
                ("test-key", "test-secret"),
                ("k2", "s2"),
                ("k3", "s3"),
                ("k2", "s2"),
            ]
        ]
        assert [r.code for r in replies] == [0, 0, 0, 0]
        refused = await call(client, sim, "POST", CREATE, order(), key="k3", secret="s3")
        assert (refused.status, refused.text) == (403, "access too frequent")
        # Banned: every account, and public paths too.
        again = await call(client, sim, "POST", CREATE, order())
        assert again.status == 403
        async with client.get(sim.url + "/v5/market/time") as resp:
            assert resp.status == 403


async def test_limits_from_flags_config_and_control_api(
    client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    setup = cli._setup(
        [
            "--account",
            "vip:vip-secret:5001",
            "--limit",
            f"5001:{CREATE}=60",
            "--limit",
            f"5001:{CREATE}:spot=200",
        ]
    )
    sim = setup.build()
    assert sim.limits(uid=5001) == {CREATE: 60, CREATE + ":spot": 200}
    with pytest.raises(cli.ConfigError, match="UID:PATH=N"):
        cli._setup(["--limit", "vip:/v5/order/create=60"])
    config = tmp_path / "sim.json"
    config.write_bytes(
        orjson.dumps(
            {
                "accounts": [{"api_key": "pro", "api_secret": "pro-secret", "uid": 7001}],
                "limits": {"uid": {"7001": {CREATE: 200}}},
            }
        )
    )
    assert cli._setup(["--config", str(config)]).build().limits(uid=7001) == {CREATE: 200}

    async with BybitSimulator() as live:
        headers = {"Content-Type": "application/json"}
        body = orjson.dumps(
            {"apiKey": "test-key", "limits": {CREATE: 3, "/v5/x/y": {"limit": 1, "window": 5}}}
        )
        async with client.post(live.url + "/_sim/limits", data=body, headers=headers) as resp:
            assert resp.status == 200
            shown = await resp.json()
        assert shown["limits"] == {CREATE: 3, "/v5/x/y": {"limit": 1, "window": 5.0}}
        assert live.limit_in_force(CREATE, "linear") == EndpointLimit(3, 1.0)
        codes = await burst(client, live, 4, "linear", "test-key", "test-secret")
        assert codes == [0, 0, 0, 10006]
        async with client.get(live.url + "/_sim/limits?apiKey=test-key") as resp:
            assert (await resp.json())["uid"] == live.uid()
        body = orjson.dumps({"limits": {CREATE: "many"}})
        async with client.post(live.url + "/_sim/limits", data=body, headers=headers) as resp:
            assert resp.status == 400


async def test_plugin_fixture_sets_limits(bybit_simulator: BybitSimulator) -> None:
    bybit_simulator.set_limit(CREATE, 200)
    assert bybit_simulator.limit_in_force(CREATE, "inverse") == EndpointLimit(200, 1.0)
