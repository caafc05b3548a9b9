"""Tests for bybit_async.testing, the Bybit V5 simulator, through plain aiohttp."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from bybit_async.endpoint_limits import ENDPOINT_LIMITS, EndpointLimit
from bybit_async.ratelimit import IP_LIMIT
from bybit_async.testing import (
    NOT_MODIFIED_MSG,
    BybitSimulator,
    Fault,
    NetworkDelay,
    RecordedRequest,
    faults,
    server,
)

KEY = "test-key"
SECRET = "test-secret"
PATH = "/v5/position/set-auto-add-margin"
TIME_PATH = "/v5/market/time"
# 2023-07-06T10:30:03.423213947Z, the facts sheet's example.
NOW_NS = 1_688_639_403_423_213_947
NOW_MS = NOW_NS // 1_000_000


def body_for(symbol: Any = "BTCUSDT", flag: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"category": "linear", "symbol": symbol, "autoAddMargin": flag, **extra}


def sign(secret: str, text: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), text.encode() + payload, hashlib.sha256).hexdigest()


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str

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


async def post(
    session: aiohttp.ClientSession,
    sim: BybitSimulator,
    params: Mapping[str, Any] | bytes | None = None,
    *,
    key: str = KEY,
    secret: str = SECRET,
    ts: int | None = None,
    recv_window: str | None = "5000",
    drop_header: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """POST a signed set-auto-add-margin request, signing exactly the bytes sent."""
    if params is None:
        params = body_for()
    body = params if isinstance(params, bytes) else orjson.dumps(params)
    stamp = str(sim.server_time_ms() if ts is None else ts)
    headers = {
        "X-BAPI-API-KEY": key,
        "X-BAPI-TIMESTAMP": stamp,
        "X-BAPI-SIGN": sign(secret, stamp + key + (recv_window or ""), body),
        "X-BAPI-SIGN-TYPE": "2",
        "Content-Type": "application/json",
    }
    if recv_window is not None:
        headers["X-BAPI-RECV-WINDOW"] = recv_window
    if drop_header is not None:
        del headers[drop_header]
    headers.update(extra_headers or {})
    async with session.post(
        sim.url + PATH,
        data=body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.text())


async def get(session: aiohttp.ClientSession, url: str) -> Reply:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.text())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "_wall_ns", lambda: NOW_NS)


# -- market time and envelope ------------------------------------------------


@pytest.mark.usefixtures("frozen_clock")
async def test_market_time_shape_and_skew(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    reply = await get(session, sim.url + TIME_PATH)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.data == {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"timeSecond": "1688639403", "timeNano": str(NOW_NS)},
        "retExtInfo": {},
        "time": NOW_MS,
    }
    sim.clock_offset_ms = -2500
    data = (await get(session, sim.url + TIME_PATH)).data
    assert data["time"] == NOW_MS - 2500 == sim.server_time_ms()
    assert data["result"] == {
        "timeSecond": "1688639400",
        "timeNano": str(NOW_NS - 2_500_000_000),
    }


async def test_server_time_follows_wall_clock() -> None:
    sim = BybitSimulator(clock_offset_ms=60_000)
    before = time.time_ns() // 1_000_000
    assert before + 60_000 <= sim.server_time_ms() <= time.time_ns() // 1_000_000 + 60_000


async def test_unknown_path_and_wrong_method_are_404(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    # Outside /v5/: a plain 404.  Under /v5/ a path is authenticated first
    # (tests/test_sim_paths.py has the signed 404), market data excepted.
    assert (await get(session, sim.url + "/nowhere")).status == 404
    assert (await get(session, sim.url + "/v5/position/closed-pnl")).status == 401
    assert (await get(session, sim.url + PATH)).status == 401
    async with session.post(sim.url + TIME_PATH) as resp:
        assert resp.status == 404
        assert "POST /v5/market/time" in (await resp.json())["retMsg"]
    assert sim.count(status=404) == 2


def test_repr_hides_secret() -> None:
    sim = BybitSimulator(api_secret="s3cr3t-value")
    sim.add_account("other", "another-s3cr3t")
    assert "s3cr3t" not in repr(sim)
    assert "s3cr3t" not in repr(sim._accounts)


# -- auth ----------------------------------------------------------------------


async def test_signed_request_sets_flag(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    assert sim.auto_add_margin("BTCUSDT") == 0
    reply = await post(session, sim)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    data = reply.data
    assert (data["retCode"], data["retMsg"], data["result"], data["retExtInfo"]) == (
        0,
        "OK",
        {},
        {},
    )
    assert sim.auto_add_margin("BTCUSDT") == 1
    assert reply.headers["X-Bapi-Limit"] == str(ENDPOINT_LIMITS[PATH].limit)
    assert reply.headers["X-Bapi-Limit-Status"] == str(ENDPOINT_LIMITS[PATH].limit - 1)
    assert int(reply.headers["X-Bapi-Limit-Reset-Timestamp"]) <= sim.server_time_ms()

    reply = await post(session, sim, body_for(flag=0))
    assert reply.code == 0
    assert sim.auto_add_margin("BTCUSDT") == 0

    [first, _] = sim.requests
    assert first.method == "POST"
    assert first.path == PATH
    assert first.api_key == KEY
    assert orjson.loads(first.body) == body_for()
    assert first.query == ""
    assert first.timestamp is not None
    assert first.signature is not None
    assert len(first.signature) == 64
    assert (first.status, first.ret_code, first.fault) == (200, 0, None)


async def test_get_query_string_is_recorded_raw(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    await get(session, sim.url + TIME_PATH + "?a=1&b=x%20y")
    assert sim.requests[0].query == "a=1&b=x%20y"


async def test_bad_signature(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    reply = await post(session, sim, secret="wrong-secret")
    assert reply.code == 10004
    assert reply.data["retMsg"].startswith("error sign!")
    assert SECRET not in reply.text
    assert sim.auto_add_margin("BTCUSDT") == 0


async def test_signature_covers_recv_window(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    reply = await post(session, sim, extra_headers={"X-BAPI-RECV-WINDOW": "6000"})
    assert reply.code == 10004


async def test_unsupported_sign_type(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    reply = await post(session, sim, extra_headers={"X-BAPI-SIGN-TYPE": "1"})
    assert reply.code == 10004
    assert sim.auto_add_margin("BTCUSDT") == 0


async def test_unknown_key(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    reply = await post(session, sim, key="nobody", secret="whatever")
    assert (reply.status, reply.code, reply.data["retMsg"]) == (200, 10003, "API key is invalid.")


async def test_second_account(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    sim.add_account("k2", "s2")
    assert (await post(session, sim, key="k2", secret="s2")).code == 0
    assert sim.auto_add_margin("BTCUSDT", api_key="k2") == 1
    assert sim.auto_add_margin("BTCUSDT") == 0


@pytest.mark.parametrize("header", ["X-BAPI-API-KEY", "X-BAPI-TIMESTAMP", "X-BAPI-SIGN"])
async def test_missing_auth_header_is_401(
    sim: BybitSimulator, session: aiohttp.ClientSession, header: str
) -> None:
    reply = await post(session, sim, drop_header=header)
    assert reply.status == 401
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert header in reply.text
    assert sim.requests[0].ret_code is None
    assert sim.auto_add_margin("BTCUSDT") == 0


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize(
    ("ahead_ms", "recv_window", "code"),
    [
        (1000, "5000", 10002),
        (999, "5000", 0),
        (0, "5000", 0),
        (-4900, "5000", 0),
        (-5000, "5000", 0),
        (-5001, "5000", 10002),
        (-5000, None, 0),
        (-5001, None, 10002),
        (-9000, "10000", 0),
    ],
)
async def test_timestamp_window(
    sim: BybitSimulator,
    session: aiohttp.ClientSession,
    ahead_ms: int,
    recv_window: str | None,
    code: int,
) -> None:
    reply = await post(session, sim, ts=NOW_MS + ahead_ms, recv_window=recv_window)
    assert reply.code == code
    assert sim.auto_add_margin("BTCUSDT") == (1 if code == 0 else 0)
    if code == 10002:
        assert reply.data["retMsg"] == (
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{NOW_MS + ahead_ms}],server_timestamp[{NOW_MS}],"
            f"recv_window[{recv_window or 5000}]"
        )


async def test_clock_offset_applies_to_the_window(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    local = sim.server_time_ms()
    sim.clock_offset_ms = -1500
    assert (await post(session, sim, ts=local)).code == 10002
    sim.clock_offset_ms = 4000
    assert (await post(session, sim, ts=local)).code == 0


@pytest.mark.parametrize(
    "headers",
    [{"X-BAPI-TIMESTAMP": "12ab"}, {"X-BAPI-TIMESTAMP": "-1"}, {"X-BAPI-RECV-WINDOW": "5e3"}],
)
async def test_malformed_auth_headers(
    sim: BybitSimulator, session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    reply = await post(session, sim, extra_headers=headers)
    assert reply.code == 10001
    assert sim.auto_add_margin("BTCUSDT") == 0


# -- set-auto-add-margin -------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "words"),
    [
        (b"not json", "JSON"),
        (b"", "JSON"),
        (b"[1, 2]", "object"),
        ({"category": "linear", "symbol": "BTCUSDT", "autoAddmargin": 1}, "autoAddMargin"),
        ({"symbol": "BTCUSDT", "autoAddMargin": 1}, "category"),
        (body_for(category="inverse"), "category"),
        (body_for(symbol="btcusdt"), "symbol"),
        (body_for(symbol=""), "symbol"),
        (body_for(symbol=None), "symbol"),
        (body_for(flag=2), "autoAddMargin"),
        (body_for(flag=True), "autoAddMargin"),
        (body_for(flag="1"), "autoAddMargin"),
        (body_for(flag=1.0), "autoAddMargin"),
        (body_for(positionIdx=None), "positionIdx"),
        (body_for(positionIdx="0"), "positionIdx"),
        (body_for(positionIdx=3), "positionIdx"),
        (body_for(positionIdx=1), "position idx not match position mode"),
    ],
)
async def test_invalid_params(
    sim: BybitSimulator,
    session: aiohttp.ClientSession,
    params: Mapping[str, Any] | bytes,
    words: str,
) -> None:
    reply = await post(session, sim, params)
    assert reply.status == 200
    assert reply.code == 10001
    assert words in reply.data["retMsg"]
    assert sim.auto_add_margin("BTCUSDT") == 0


async def test_typo_key_message(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    params = {"category": "linear", "symbol": "BTCUSDT", "autoAddmargin": 1, "positionIdx": 0}
    reply = await post(session, sim, params)
    assert reply.data["retMsg"] == "params error: autoAddMargin is required"


async def test_explicit_position_idx_zero(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    assert (await post(session, sim, body_for(positionIdx=0))).code == 0
    assert sim.auto_add_margin("BTCUSDT", 0) == 1


async def test_cross_margin_position(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    sim.set_position("BTCUSDT", margin_mode="cross")
    reply = await post(session, sim)
    assert reply.code == 110076
    assert "isolated" in reply.data["retMsg"]
    assert sim.auto_add_margin("BTCUSDT") == 0
    assert (await post(session, sim, body_for("ETHUSDT"))).code == 0


async def test_cross_account_defaults_to_cross(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    sim.add_account("crossy", "s", margin_mode="cross")
    assert (await post(session, sim, key="crossy", secret="s")).code == 110076
    sim.set_position("BTCUSDT", api_key="crossy", margin_mode="isolated")
    assert (await post(session, sim, key="crossy", secret="s")).code == 0


async def test_portfolio_margin_account(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    sim.add_account("pm", "pm-secret", margin_mode="portfolio")
    reply = await post(session, sim, key="pm", secret="pm-secret")
    assert reply.code == 110077
    assert sim.auto_add_margin("BTCUSDT", api_key="pm") == 0


async def test_hedge_mode(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    sim.set_position("BTCUSDT", hedge=True)
    for params in (body_for(), body_for(positionIdx=0)):
        reply = await post(session, sim, params)
        assert (reply.code, reply.data["retMsg"]) == (10001, "position idx not match position mode")
    assert (await post(session, sim, body_for(positionIdx=2))).code == 0
    assert (sim.auto_add_margin("BTCUSDT", 1), sim.auto_add_margin("BTCUSDT", 2)) == (0, 1)
    with pytest.raises(ValueError, match="hedge"):
        sim.auto_add_margin("BTCUSDT")
    sim.set_position("BTCUSDT", hedge=False, auto_add_margin=1)
    assert sim.position("BTCUSDT").auto_add_margin == 1


async def test_not_modified(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    assert (await post(session, sim)).code == 0
    reply = await post(session, sim)
    assert (reply.code, reply.data["retMsg"]) == (10001, NOT_MODIFIED_MSG)
    assert sim.auto_add_margin("BTCUSDT") == 1
    sim.set_position("ETHUSDT", auto_add_margin=1)
    reply = await post(session, sim, body_for("ETHUSDT"))
    assert reply.data["retMsg"] == NOT_MODIFIED_MSG


def test_state_helpers_validate() -> None:
    sim = BybitSimulator()
    with pytest.raises(ValueError, match="margin_mode"):
        sim.set_position("BTCUSDT", margin_mode="portfolio")
    with pytest.raises(ValueError, match="auto_add_margin"):
        sim.set_position("BTCUSDT", auto_add_margin=2)
    with pytest.raises(ValueError, match="symbol"):
        sim.set_position("btcusdt")
    with pytest.raises(KeyError):
        sim.auto_add_margin("BTCUSDT", api_key="nobody")
    with pytest.raises(ValueError, match="margin_mode"):
        sim.add_account("k", "s", margin_mode="classic")
    with pytest.raises(ValueError, match="times"):
        sim.inject(Fault.drop(), times=0)
    with pytest.raises(ValueError, match="status"):
        Fault.http_status(42)
    with pytest.raises(ValueError, match="seconds"):
        Fault.stall(-1)
    with pytest.raises(RuntimeError):
        _ = sim.url


# -- rate limits -----------------------------------------------------------------


SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT", "ADAUSDT"]


async def test_endpoint_limit(session: aiohttp.ClientSession) -> None:
    async with BybitSimulator(endpoint_limits={PATH: 3}) as sim:
        replies = await asyncio.gather(*(post(session, sim, body_for(s)) for s in SYMBOLS))
        now = sim.server_time_ms()
        assert sorted(r.code for r in replies) == [0, 0, 0, 10006, 10006]
        left = sorted(r.headers["X-Bapi-Limit-Status"] for r in replies)
        assert left == ["0", "0", "0", "1", "2"]
        assert {r.headers["X-Bapi-Limit"] for r in replies} == {"3"}
        for reply in replies:
            reset = int(reply.headers["X-Bapi-Limit-Reset-Timestamp"])
            if reply.code == 10006:
                # Exceeded: when the oldest request leaves the window (+2 ms of rounding).
                assert now < reset <= now + 1002
            else:
                # Not exceeded, even the one that used the last request: the current time.
                assert reset <= now
        throttled = [r for r in replies if r.code == 10006]
        assert throttled[0].data["retMsg"] == "Too many visits!"
        flags = [sim.auto_add_margin(s) for s in SYMBOLS]
        assert sorted(flags) == [0, 0, 1, 1, 1]
        assert sim.count(PATH, ret_code=10006) == 2
        assert sim.max_in_window(PATH) == 5

        # Another UID has its own window; the public endpoint none.
        sim.add_account("k2", "s2")
        assert (await post(session, sim, key="k2", secret="s2")).code == 0
        reply = await get(session, sim.url + TIME_PATH)
        assert "X-Bapi-Limit" not in reply.headers


async def test_keys_of_one_uid_share_the_limit(session: aiohttp.ClientSession) -> None:
    async with BybitSimulator(endpoint_limits={PATH: 2}) as sim:
        uid = sim.add_account("k2", "s2", uid=sim.uid())
        assert uid == sim.uid() == sim.uid("k2")
        assert (await post(session, sim, body_for("BTCUSDT"))).code == 0
        reply = await post(session, sim, body_for("ETHUSDT"), key="k2", secret="s2")
        assert (reply.code, reply.headers["X-Bapi-Limit-Status"]) == (0, "0")
        assert (await post(session, sim, body_for("XRPUSDT"))).code == 10006
        # One account: k2's change is the default key's position too.
        assert sim.auto_add_margin("ETHUSDT") == 1
        sim.add_account("k3", "s3")
        assert sim.uid("k3") != uid
        assert (await post(session, sim, body_for("XRPUSDT"), key="k3", secret="s3")).code == 0


async def test_ip_limit_bans(session: aiohttp.ClientSession) -> None:
    async with BybitSimulator(ip_limit=3, ip_window=60) as sim:
        for _ in range(3):
            assert (await get(session, sim.url + TIME_PATH)).status == 200
        reply = await get(session, sim.url + TIME_PATH)
        assert (reply.status, reply.text) == (403, "access too frequent")
        # Banned: every path, signed or not, gets 403.
        assert (await post(session, sim)).status == 403
        assert (await get(session, sim.url + "/nowhere")).status == 403
        assert sim.count(status=403) == 3
        assert sim.auto_add_margin("BTCUSDT") == 0
        sim.reset_limits()
        assert (await post(session, sim)).code == 0


async def test_ip_ban_expires(session: aiohttp.ClientSession) -> None:
    async with BybitSimulator(ip_limit=1, ip_window=60, ip_ban_seconds=0.05) as sim:
        assert (await get(session, sim.url + TIME_PATH)).status == 200
        assert (await get(session, sim.url + TIME_PATH)).status == 403
        await asyncio.sleep(0.06)  # let the ban run out, not synchronisation
        assert (await get(session, sim.url + TIME_PATH)).status == 200


async def test_no_limits_still_counts(session: aiohttp.ClientSession) -> None:
    async with BybitSimulator(enforce_limits=False, ip_limit=1, endpoint_limits={PATH: 2}) as sim:
        replies = [await post(session, sim, body_for(s)) for s in SYMBOLS[:4]]
        assert [r.code for r in replies] == [0, 0, 0, 0]
        assert [r.headers["X-Bapi-Limit"] for r in replies] == ["2"] * 4
        assert [r.headers["X-Bapi-Limit-Status"] for r in replies] == ["1", "0", "0", "0"]
        now = sim.server_time_ms()
        assert all(int(r.headers["X-Bapi-Limit-Reset-Timestamp"]) <= now for r in replies)


def test_default_limits_come_from_ratelimit() -> None:
    sim = BybitSimulator()
    assert sim.endpoint_limits == ENDPOINT_LIMITS
    assert sim.endpoint_limits["/v5/position/list"] == EndpointLimit(50)
    assert sim.ip_limit == IP_LIMIT


# -- faults --------------------------------------------------------------------


async def test_http_status_fault(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    fault = Fault.http_status(503, "busy")
    sim.inject(fault)
    reply = await post(session, sim)
    assert (reply.status, reply.text) == (503, "busy")
    assert sim.auto_add_margin("BTCUSDT") == 0
    record = sim.requests[0]
    assert (record.status, record.ret_code, record.fault) == (503, None, fault)
    assert (await post(session, sim)).code == 0


async def test_fault_without_path_skips_public_endpoints(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    sim.inject(Fault.http_status(429))
    assert (await get(session, sim.url + TIME_PATH)).status == 200
    assert (await get(session, sim.url + "/nowhere")).status == 404
    assert (await post(session, sim)).status == 429
    # Every V5 path but market data is signed, modelled or not: it takes the fault.
    sim.inject(Fault.http_status(429))
    assert (await get(session, sim.url + "/v5/unknown")).status == 429
    sim.inject(Fault.http_status(503), path=TIME_PATH)
    assert (await post(session, sim)).code == 0
    assert (await get(session, sim.url + TIME_PATH)).status == 503


async def test_faults_are_fifo_and_counted(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    sim.inject(Fault.http_status(503), times=2)
    sim.inject(Fault.ret_code(10016))
    assert [(await post(session, sim)).status for _ in range(2)] == [503, 503]
    reply = await post(session, sim)
    assert (reply.code, reply.data["retMsg"]) == (10016, "Server error.")
    assert (await post(session, sim)).code == 0
    assert sim.count(PATH, status=503) == 2


async def test_html_fault(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    sim.inject(Fault.html(), path=PATH)
    reply = await post(session, sim)
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "<html>" in reply.text
    assert "502 Bad Gateway" in reply.text
    assert sim.auto_add_margin("BTCUSDT") == 0


async def test_ret_code_fault(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    sim.inject(Fault.ret_code(10000, "timeout, try again"))
    reply = await post(session, sim)
    assert reply.status == 200
    assert (reply.code, reply.data["retMsg"]) == (10000, "timeout, try again")
    assert sim.auto_add_margin("BTCUSDT") == 0
    assert sim.requests[0].ret_code == 10000
    assert Fault.ret_code(10006).msg == "Too many visits!"


@pytest.mark.parametrize("after_execution", [False, True])
async def test_drop_fault(
    sim: BybitSimulator, session: aiohttp.ClientSession, after_execution: bool
) -> None:
    # Warm a keep-alive connection first: a client's drop usually hits a pooled one.
    assert (await get(session, sim.url + TIME_PATH)).status == 200
    sim.inject(Fault.drop(after_execution=after_execution))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, sim)
    assert sim.auto_add_margin("BTCUSDT") == (1 if after_execution else 0)
    record = sim.requests[1]
    assert (record.status, record.ret_code) == (0, None)
    assert record.fault == Fault.drop(after_execution=after_execution)
    # The session recovers on a fresh connection.
    expected = NOT_MODIFIED_MSG if after_execution else "OK"
    assert (await post(session, sim)).data["retMsg"] == expected


async def test_short_stall_answers_normally(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    sim.inject(Fault.stall(0.05))
    started = time.monotonic()
    reply = await post(session, sim)
    assert time.monotonic() - started >= 0.045  # timers may fire a hair early
    assert reply.code == 0
    assert sim.auto_add_margin("BTCUSDT") == 1
    assert sim.requests[0].fault == Fault.stall(0.05)


async def test_stall_released_by_close(session: aiohttp.ClientSession) -> None:
    sim = BybitSimulator()
    await sim.start()
    try:
        sim.inject(Fault.stall())
        sim.inject(Fault.stall(30), path=TIME_PATH)
        pending = [
            asyncio.create_task(post(session, sim)),
            asyncio.create_task(get(session, sim.url + TIME_PATH)),
        ]
        await sim.wait_for_requests(2)
        assert [r.status for r in sim.requests] == [0, 0]
        assert all(not task.done() for task in pending)
    finally:
        await asyncio.wait_for(sim.close(), 5)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending[0]
    # aiohttp retries an idempotent GET once, which finds the port closed.
    with pytest.raises(aiohttp.ClientConnectorError):
        await pending[1]
    assert sim.auto_add_margin("BTCUSDT") == 0
    assert [(r.status, r.ret_code) for r in sim.requests] == [(0, None), (0, None)]
    await sim.close()  # idempotent


async def test_stall_outlasting_client_timeout(
    sim: BybitSimulator, session: aiohttp.ClientSession
) -> None:
    sim.inject(Fault.stall())
    with pytest.raises(asyncio.TimeoutError):
        await post(session, sim, timeout=0.05)
    # Under load the client can give up before the request is even accepted.
    await asyncio.wait_for(sim.wait_for_requests(1), 5)
    assert sim.requests[0].status == 0


# -- inspection helpers --------------------------------------------------------


def _record(at: float, path: str = PATH) -> RecordedRequest:
    return RecordedRequest(at, "POST", path, KEY, b"{}", "", None, None, 200, 0, None)


def test_max_in_window() -> None:
    sim = BybitSimulator()
    assert sim.max_in_window() == 0
    sim.requests.extend(_record(t) for t in (1.3, 0.0, 0.2, 0.4, 1.0, 1.1, 1.2))
    sim.requests.append(_record(1.05, TIME_PATH))
    # [0.4, 1.4) holds 0.4, 1.0, 1.1, 1.2 and 1.3.
    assert sim.max_in_window(PATH) == 5
    assert sim.max_in_window() == 6
    assert sim.max_in_window(TIME_PATH) == 1
    assert sim.max_in_window(PATH, window=0.3) == 3
    assert sim.max_in_window(PATH, window=10) == 7


def test_max_in_window_is_half_open() -> None:
    sim = BybitSimulator()
    sim.requests.extend([_record(5.0), _record(6.0), _record(7.0)])
    assert sim.max_in_window(PATH, 1.0) == 1
    assert sim.max_in_window(PATH, 1.000001) == 2


async def test_count_filters(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    await post(session, sim)
    await post(session, sim)
    await get(session, sim.url + TIME_PATH)
    assert sim.count() == 3
    assert sim.count(PATH) == 2
    assert sim.count(PATH, ret_code=10001) == 1
    assert sim.count(ret_code=0) == 2
    assert sim.count(TIME_PATH, status=200) == 1
    assert sim.count(status=500) == 0


async def test_wait_for_requests(sim: BybitSimulator, session: aiohttp.ClientSession) -> None:
    await sim.wait_for_requests(0)
    waiter = asyncio.create_task(sim.wait_for_requests(3))
    other = asyncio.create_task(sim.wait_for_requests(1))
    for _ in range(2):
        await get(session, sim.url + TIME_PATH)
    await asyncio.wait_for(other, 5)
    assert not waiter.done()
    await get(session, sim.url + TIME_PATH)
    await asyncio.wait_for(waiter, 5)
    assert sim._waiters == []


# -- command line ----------------------------------------------------------------


async def test_main_serves_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        "-W",
        "error",
        "-m",
        "bybit_async.testing",
        "--no-limits",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        name, _, url = line.decode().rstrip("\n").partition("=")
        assert name == "BYBIT_SIMULATOR_URL"
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as client:
            reply = await get(client, url + TIME_PATH)
        assert reply.code == 0
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert out == b""
        assert b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_start_on_a_busy_port_fails_cleanly(sim: BybitSimulator) -> None:
    port = int(sim.url.rsplit(":", 1)[1])
    other = BybitSimulator(port=port)
    with pytest.raises(OSError, match="in use"):
        await other.start()
    await other.close()
    with pytest.raises(RuntimeError):
        _ = other.url


# -- network delay -----------------------------------------------------------------


def test_network_delay_validates() -> None:
    for bad in (
        {"low": -0.1},
        {"low": 0.2, "high": 0.1},
        {"spike_probability": 1.5},
        {"spike_probability": -0.1},
        {"spike": -1.0},
    ):
        with pytest.raises(ValueError, match=r"low|spike"):
            NetworkDelay(**bad)
    assert BybitSimulator().network_delay is None


def test_network_delay_draws_are_seeded_and_per_direction() -> None:
    delay = NetworkDelay(0.0, 1.0, spike_probability=0.5, spike=10.0, seed=7)
    a, b = faults.DelayDraws(delay), faults.DelayDraws(delay)
    inbound = [a.inbound() for _ in range(50)]
    outbound = [a.outbound() for _ in range(50)]
    assert inbound == [b.inbound() for _ in range(50)]
    assert inbound != outbound
    assert all(0.0 <= d <= 11.0 for d in inbound + outbound)
    assert any(d >= 10.0 for d in inbound)
    assert any(d < 1.0 for d in inbound)


async def test_arrival_is_recorded_after_the_inbound_delay(
    session: aiohttp.ClientSession,
) -> None:
    one_way = 0.05
    async with BybitSimulator(network_delay=NetworkDelay(one_way, one_way)) as sim:
        sent = time.monotonic()
        reply = await post(session, sim)
        answered = time.monotonic()
    assert reply.code == 0
    [record] = sim.requests
    # Lower bounds only: a sleep never ends early (a millisecond for timer granularity).
    assert record.at - sent >= one_way - 0.001
    assert answered - record.at >= one_way - 0.001


async def test_spike_is_added(session: aiohttp.ClientSession) -> None:
    delay = NetworkDelay(spike_probability=1.0, spike=0.05)
    async with BybitSimulator(network_delay=delay) as sim:
        sent = time.monotonic()
        await get(session, sim.url + TIME_PATH)
    assert sim.requests[0].at - sent >= 0.049


async def test_delayed_requests_arrive_reordered(session: aiohttp.ClientSession) -> None:
    async with BybitSimulator(network_delay=NetworkDelay(0.0, 0.2, seed=3)) as sim:
        await asyncio.gather(*(get(session, f"{sim.url}{TIME_PATH}?n={i}") for i in range(10)))
    arrived = [int(r.query.removeprefix("n=")) for r in sim.requests]
    assert sorted(arrived) == list(range(10))
    assert arrived != sorted(arrived)
    assert [r.at for r in sim.requests] == sorted(r.at for r in sim.requests)


async def test_limits_are_counted_at_arrival(session: aiohttp.ClientSession) -> None:
    # One request per 0.1 s from an IP.
    async with BybitSimulator(ip_limit=1, ip_window=0.1) as sim:
        assert (await get(session, sim.url + TIME_PATH)).status == 200
        assert (await get(session, sim.url + TIME_PATH)).status == 403
        sim.reset_limits()
        assert (await get(session, sim.url + TIME_PATH)).status == 200
        # Sent at once, but it travels 0.15 s and arrives after the first left the window.
        sim.network_delay = NetworkDelay(0.15, 0.15)
        assert (await get(session, sim.url + TIME_PATH)).status == 200
    first, second = sim.requests[2:]
    assert second.at - first.at >= 0.149
