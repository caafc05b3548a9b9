"""Bad input raises ValueError or TypeError before any request is sent."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import pytest

from bybit_async import BybitError, BybitSession, PositionIdx, RateLimits
from bybit_async.encoding import encode_query
from bybit_async.testing import BybitSimulator

from .conftest import MakeSession


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("", True), {}, ValueError),
        (("btcusdt", True), {}, ValueError),
        (("BTC USDT", True), {}, ValueError),
        ((None, True), {}, TypeError),
        (("BTCUSDT", 2), {}, ValueError),
        (("BTCUSDT", -1), {}, ValueError),
        (("BTCUSDT", "on"), {}, TypeError),
        (("BTCUSDT", None), {}, TypeError),
        (("BTCUSDT", True), {"category": "inverse"}, ValueError),
        (("BTCUSDT", True), {"category": "spot"}, ValueError),
        (("BTCUSDT", True), {"position_idx": 3}, ValueError),
        (("BTCUSDT", True), {"position_idx": -1}, ValueError),
        (("BTCUSDT", True), {"position_idx": "1"}, TypeError),
        (("BTCUSDT", True), {"position_idx": True}, TypeError),
    ],
)
async def test_bad_arguments(
    sim: BybitSimulator,
    make_session: MakeSession,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
) -> None:
    session = make_session()
    with pytest.raises(error):
        await session.set_auto_add_margin(*args, **kwargs)
    with pytest.raises(error):
        await session.set_auto_add_margin_many(["ETHUSDT", args[0]], *args[1:], **kwargs)
    assert sim.requests == []


def test_lowercase_symbol_hint() -> None:
    from bybit_async.session import auto_add_margin_params

    with pytest.raises(ValueError, match="'BTCUSDT'"):
        auto_add_margin_params("btcusdt", True)


async def test_many_rejects_single_string(sim: BybitSimulator, make_session: MakeSession) -> None:
    with pytest.raises(TypeError):
        await make_session().set_auto_add_margin_many("BTCUSDT", True)
    assert sim.requests == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"api_key": ""}, ValueError),
        ({"api_key": None}, TypeError),
        ({"api_secret": ""}, ValueError),
        ({"api_secret": None}, ValueError),
        ({"recv_window": 0}, ValueError),
        ({"recv_window": -5}, ValueError),
        ({"recv_window": 5.5}, TypeError),
        ({"timeout": 0}, ValueError),
        ({"timeout": -1.0}, ValueError),
        ({"timeout": "10"}, TypeError),
        ({"max_retries": -1}, ValueError),
        ({"testnet": True, "demo": True}, ValueError),
        ({"base_url": "api.bybit.com"}, ValueError),
        ({"proxy": "socks5://127.0.0.1:1"}, ValueError),
    ],
)
def test_bad_session_options(kwargs: dict[str, Any], error: type[Exception]) -> None:
    options: dict[str, Any] = {"api_key": "key", "api_secret": "secret"}
    options.update(kwargs)
    with pytest.raises(error):
        BybitSession(options.pop("api_key"), options.pop("api_secret"), **options)


@pytest.mark.parametrize(
    ("kwargs", "host"),
    [
        ({}, "https://api.bybit.com"),
        ({"testnet": True}, "https://api-testnet.bybit.com"),
        ({"demo": True}, "https://api-demo.bybit.com"),
        ({"base_url": "nl"}, "https://api.bybit.nl"),
        ({"base_url": "https://api.bytick.com/"}, "https://api.bytick.com"),
    ],
)
def test_hosts(kwargs: dict[str, Any], host: str) -> None:
    assert BybitSession("key", "secret", **kwargs).base_url == host


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"ip_window": 0}, ValueError),
        ({"window": -1.0}, ValueError),
        ({"margin": -0.01}, ValueError),
        ({"margin": "0.01"}, TypeError),
        ({"ip_limit": 0}, ValueError),
        ({"endpoints": {"/x": 1.5}}, TypeError),
        ({"endpoints": {"/x": True}}, TypeError),
    ],
)
def test_bad_rate_limits(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RateLimits(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_server_wait": 0}, ValueError),
        ({"max_server_wait": "10"}, TypeError),
    ],
)
def test_bad_session_limits(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        BybitSession("key", "secret", **kwargs)


async def test_bad_warm_up_arguments(sim: BybitSimulator, make_session: MakeSession) -> None:
    session = make_session(max_connections=4)
    with pytest.raises(ValueError, match="connections"):
        await session.warm_up(0)
    with pytest.raises(ValueError, match="connections"):
        await session.warm_up(5)
    with pytest.raises(TypeError, match="connections"):
        await session.warm_up(2.0)  # type: ignore[arg-type]
    assert sim.requests == []


async def test_bad_request_arguments(sim: BybitSimulator, make_session: MakeSession) -> None:
    session = make_session()
    with pytest.raises(ValueError, match="method"):
        await session.request("PUT", "/v5/x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path"):
        await session.request("POST", "v5/x")
    with pytest.raises(TypeError, match="mapping"):
        await session.request("POST", "/v5/x", [("a", 1)])  # type: ignore[arg-type]
    assert sim.requests == []


# -- request(): bodies, paths and query strings ------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"qty": float("nan")},
        {"qty": float("inf")},
        {"orders": [{"qty": -float("inf")}]},
        {"nested": {"price": float("nan")}},
        {"qty": Decimal("NaN")},
    ],
)
async def test_post_params_must_be_finite(
    sim: BybitSimulator, make_session: MakeSession, params: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="finite"):
        await make_session().request("POST", "/v5/order/create", params)
    assert sim.requests == []


@pytest.mark.parametrize(
    "path",
    [
        "/v5/market/time?x=1",
        "/v5/market/time#frag",
        "/v5/market/ti me",
        "/v5/market/time\r\nX-Evil: 1",
        "/v5/market/tïme",
        "/v5/../admin",
        "/v5//market",
        "/v5/market/%74ime",
        "/v4/market/time",
        "//evil.example/v5/market/time",
    ],
)
async def test_path_must_be_a_plain_v5_path(
    sim: BybitSimulator, make_session: MakeSession, path: str
) -> None:
    session = make_session()
    for method in ("GET", "POST"):
        with pytest.raises(ValueError, match="path"):
            await session.request(method, path)  # type: ignore[arg-type]
    assert sim.requests == []


async def test_any_mapping_is_accepted_as_params(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    from types import MappingProxyType

    body = MappingProxyType({"category": "linear", "symbol": "BTCUSDT", "autoAddMargin": 1})
    resp = await make_session().request("POST", "/v5/position/set-auto-add-margin", body)
    assert resp.ret_code == 0
    assert sim.auto_add_margin("BTCUSDT") == 1


def test_post_decimals_go_as_plain_decimal_strings() -> None:
    from bybit_async.encoding import json_body

    body = json_body({"qty": Decimal("1E-8"), "legs": ({"px": Decimal("2.50")},)})
    assert body == {"qty": "0.00000001", "legs": [{"px": "2.50"}]}


@pytest.mark.parametrize(
    ("params", "query"),
    [
        ({"symbol": "BTCUSDT", "cursor": None}, "symbol=BTCUSDT"),
        ({"a": True, "b": False}, "a=true&b=false"),
        ({"limit": 20, "idx": PositionIdx.HEDGE_BUY}, "limit=20&idx=1"),
        (
            {"price": 1e-07, "qty": 1e20, "x": 0.1},
            "price=0.0000001&qty=100000000000000000000&x=0.1",
        ),
        ({"price": Decimal("1E-8"), "qty": Decimal("1.50")}, "price=0.00000001&qty=1.50"),
        ({"s": "a b&c"}, "s=a+b%26c"),
    ],
)
def test_get_params_are_encoded_as_bybit_expects(params: dict[str, Any], query: str) -> None:
    assert encode_query(params) == query


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"x": [1, 2]}, TypeError),
        ({"x": {"a": 1}}, TypeError),
        ({"x": b"bytes"}, TypeError),
        ({"x": object()}, TypeError),
        ({1: "x"}, TypeError),
        ({"x": float("nan")}, ValueError),
        ({"x": Decimal("Infinity")}, ValueError),
    ],
)
async def test_bad_get_params_raise_before_sending(
    sim: BybitSimulator, make_session: MakeSession, params: dict[Any, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await make_session().request("GET", "/v5/position/list", params)
    assert sim.requests == []


async def test_get_signature_covers_the_query_as_sent(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    params = {"category": "linear", "symbol": "BTCUSDT", "limit": 20, "cursor": None, "x": 1e-7}
    with contextlib.suppress(BybitError):
        await make_session().request("GET", "/v5/position/list", params)
    (sent,) = [r for r in sim.requests if r.path == "/v5/position/list"]
    assert sent.query == "category=linear&symbol=BTCUSDT&limit=20&x=0.0000001"
    assert sim.count(ret_code=10004) == 0  # the simulator checked the signature over it


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"deadline": 0}, ValueError),
        ({"deadline": float("inf")}, ValueError),
        ({"deadline": "5"}, TypeError),
        ({"max_response_bytes": 0}, ValueError),
        ({"max_response_bytes": 1.5}, TypeError),
    ],
)
def test_bad_bounds(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        BybitSession("key", "secret", **kwargs)


async def test_bad_deadline_for_one_call(sim: BybitSimulator, make_session: MakeSession) -> None:
    with pytest.raises(ValueError, match="deadline"):
        await make_session().request("GET", "/v5/market/time", signed=False, deadline=-1)
    assert sim.requests == []
