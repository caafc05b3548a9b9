"""BybitSession against the simulator: the request, its body, and what comes back."""

from __future__ import annotations

import orjson
import pytest

from bybit_async import (
    ApiResponse,
    BybitSession,
    InvalidParameterError,
    PositionError,
    PositionIdx,
)
from bybit_async.testing import BybitSimulator

from .conftest import MakeSession

PATH = "/v5/position/set-auto-add-margin"


def private(sim: BybitSimulator) -> list[dict[str, object]]:
    """The JSON bodies the simulator received on the endpoint."""
    return [orjson.loads(r.body) for r in sim.requests if r.path == PATH]


async def test_turns_flag_on_and_off(sim: BybitSimulator, make_session: MakeSession) -> None:
    session = make_session()
    resp = await session.set_auto_add_margin("BTCUSDT", True)
    assert isinstance(resp, ApiResponse)
    assert (resp.ret_code, resp.modified, resp.attempts, resp.result) == (0, True, 1, {})
    assert sim.auto_add_margin("BTCUSDT") == 1
    resp = await session.set_auto_add_margin("BTCUSDT", 0)
    assert resp.modified is True
    assert sim.auto_add_margin("BTCUSDT") == 0


async def test_body_spelling_and_no_null_position_idx(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    await make_session().set_auto_add_margin("BTCUSDT", True)
    assert private(sim) == [{"category": "linear", "symbol": "BTCUSDT", "autoAddMargin": 1}]
    assert sim.requests[-1].body == b'{"category":"linear","symbol":"BTCUSDT","autoAddMargin":1}'


async def test_hedge_position_idx(sim: BybitSimulator, make_session: MakeSession) -> None:
    sim.set_position("ETHUSDT", hedge=True)
    session = make_session()
    await session.set_auto_add_margin("ETHUSDT", False, position_idx=PositionIdx.HEDGE_SELL)
    resp = await session.set_auto_add_margin("ETHUSDT", True, position_idx=1)
    assert resp.modified
    assert sim.auto_add_margin("ETHUSDT", 1) == 1
    assert sim.auto_add_margin("ETHUSDT", 2) == 0
    assert [b.get("positionIdx") for b in private(sim)] == [2, 1]


async def test_hedge_without_position_idx_raises(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.set_position("ETHUSDT", hedge=True)
    with pytest.raises(InvalidParameterError) as info:
        await make_session().set_auto_add_margin("ETHUSDT", True)
    assert info.value.ret_code == 10001
    assert sim.count(PATH) == 1


async def test_not_modified_returns(sim: BybitSimulator, make_session: MakeSession) -> None:
    session = make_session()
    await session.set_auto_add_margin("BTCUSDT", True)
    resp = await session.set_auto_add_margin("BTCUSDT", True)
    assert resp.modified is False
    assert resp.ret_code == 10001
    assert sim.auto_add_margin("BTCUSDT") == 1


async def test_cross_margin_raises_position_error(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.set_position("XRPUSDT", margin_mode="cross")
    with pytest.raises(PositionError) as info:
        await make_session().set_auto_add_margin("XRPUSDT", True)
    assert info.value.ret_code == 110076
    assert (info.value.method, info.value.path, info.value.attempts) == ("POST", PATH, 1)
    assert "110076" in str(info.value)


async def test_many_in_input_order_failures_in_place(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.set_position("XRPUSDT", margin_mode="cross")
    symbols = ["BTCUSDT", "XRPUSDT", "ETHUSDT", "SOLUSDT"]
    outcomes = await make_session().set_auto_add_margin_many(symbols, True)
    assert [type(o).__name__ for o in outcomes] == [
        "ApiResponse",
        "PositionError",
        "ApiResponse",
        "ApiResponse",
    ]
    assert [sim.auto_add_margin(s) for s in symbols] == [1, 0, 1, 1]


async def test_generic_request_reaches_any_endpoint(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    session = make_session()
    resp = await session.request(
        "POST", PATH, {"category": "linear", "symbol": "BTCUSDT", "autoAddMargin": 1}
    )
    assert resp.ret_code == 0
    assert sim.auto_add_margin("BTCUSDT") == 1
    server_ms = await session.get_server_time()
    assert abs(server_ms - sim.server_time_ms()) < 5_000


async def test_rate_limit_headers_parsed(sim: BybitSimulator, make_session: MakeSession) -> None:
    resp = await make_session().set_auto_add_margin("BTCUSDT", True)
    assert resp.limit == 10
    assert resp.limit_status == 9
    assert resp.limit_reset_timestamp is not None


async def test_proxy_carries_requests(sim: BybitSimulator) -> None:
    # The host does not resolve: only a working proxy (the simulator) can answer.
    async with BybitSession(
        sim.api_key, sim.api_secret, base_url="http://bybit.invalid", proxy=sim.url
    ) as session:
        resp = await session.set_auto_add_margin("BTCUSDT", True)
    assert resp.ret_code == 0
    assert sim.auto_add_margin("BTCUSDT") == 1


async def test_close_twice_and_use_after_close(make_session: MakeSession) -> None:
    session = make_session()
    await session.set_auto_add_margin("BTCUSDT", True)
    await session.close()
    await session.close()
    assert session.closed
    with pytest.raises(RuntimeError, match="closed"):
        await session.set_auto_add_margin("BTCUSDT", False)


async def test_close_unused_session() -> None:
    session = BybitSession("key", "secret")
    await session.close()
    await session.close()
