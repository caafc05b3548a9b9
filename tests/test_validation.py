"""Bad input raises ValueError or TypeError before any request is sent."""

from __future__ import annotations

from typing import Any

import pytest

from bybit_async import BybitSession, RateLimits
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
