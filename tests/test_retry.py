"""Which failures are retried, how often, and that each retry is signed afresh."""

from __future__ import annotations

import socket

import pytest

from bybit_async import (
    AuthenticationError,
    BybitError,
    BybitSession,
    ConnectError,
    ConnectionDroppedError,
    ForbiddenError,
    HTTPStatusError,
    InvalidParameterError,
    InvalidResponseError,
    IPRateLimitError,
    PermissionDeniedError,
    PositionError,
    RateLimitError,
    RequestTimeout,
    ServerBusyError,
    ServerError,
    SessionHaltedError,
    TooManyRequestsError,
)
from bybit_async.testing import BybitSimulator, Fault

from .conftest import MakeSession

PATH = "/v5/position/set-auto-add-margin"

# Faults after which the request is known not to have run, and those after
# which its outcome is unknown; the class is what a session raises for them.
REJECTED = [
    (Fault.http_status(429, "Too Many Requests"), TooManyRequestsError),
    (Fault.ret_code(10006, "Too many visits!"), RateLimitError),
]
UNKNOWN = [
    (Fault.http_status(500, "Internal Server Error"), ServerError),
    (Fault.http_status(502), ServerError),
    (Fault.http_status(503, "Service Unavailable"), ServerError),
    (Fault.html(), ServerError),
    (Fault.html(status=200), InvalidResponseError),
    (Fault.drop(after_execution=True), ConnectionDroppedError),
    (Fault.drop(after_execution=False), ConnectionDroppedError),
    (Fault.ret_code(10000, "Server Timeout"), ServerBusyError),
    (Fault.ret_code(10016, "Internal error"), ServerBusyError),
]


def attempts(sim: BybitSimulator) -> list[tuple[int | None, str | None]]:
    return [(r.timestamp, r.signature) for r in sim.requests if r.path == PATH]


@pytest.mark.parametrize(("fault", "error"), REJECTED + UNKNOWN)
async def test_fault_recovers_with_fresh_signature(
    sim: BybitSimulator, make_session: MakeSession, fault: Fault, error: type[BybitError]
) -> None:
    sim.inject(fault, path=PATH)
    resp = await make_session().set_auto_add_margin("BTCUSDT", True)
    assert resp.attempts == 2
    assert resp.modified or fault.after_execution  # a dropped, executed first try set it
    assert sim.auto_add_margin("BTCUSDT") == 1
    (ts1, sig1), (ts2, sig2) = attempts(sim)
    assert ts1 is not None
    assert ts2 is not None
    assert ts2 > ts1
    assert sig1 != sig2


async def test_stalled_response_times_out_and_recovers(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.inject(Fault.stall(), path=PATH)
    resp = await make_session(timeout=0.2).set_auto_add_margin("BTCUSDT", True)
    assert resp.attempts == 2
    assert sim.count(PATH) == 2


@pytest.mark.parametrize(("fault", "error"), UNKNOWN)
async def test_unknown_outcome_not_retried_unless_idempotent(
    sim: BybitSimulator, make_session: MakeSession, fault: Fault, error: type[BybitError]
) -> None:
    sim.inject(fault, path=PATH)
    body = {"category": "linear", "symbol": "BTCUSDT", "autoAddMargin": 1}
    with pytest.raises(error) as info:
        await make_session().request("POST", PATH, body)
    assert info.value.attempts == 1
    assert sim.count(PATH) == 1


@pytest.mark.parametrize(("fault", "error"), REJECTED)
async def test_rejected_retried_even_when_not_idempotent(
    sim: BybitSimulator, make_session: MakeSession, fault: Fault, error: type[BybitError]
) -> None:
    sim.inject(fault, path=PATH)
    body = {"category": "linear", "symbol": "BTCUSDT", "autoAddMargin": 1}
    resp = await make_session().request("POST", PATH, body, idempotent=False)
    assert resp.attempts == 2
    assert sim.count(PATH) == 2


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.ret_code(10001, "params error"), InvalidParameterError),
        (Fault.ret_code(10003, "API key is invalid."), AuthenticationError),
        (Fault.ret_code(10004, "error sign!"), AuthenticationError),
        (Fault.ret_code(10005, "Permission denied"), PermissionDeniedError),
        (Fault.ret_code(10007, "User authentication failed."), AuthenticationError),
        (Fault.ret_code(10010, "Unmatched IP"), PermissionDeniedError),
        (Fault.ret_code(10018, "Exceeded the IP Rate Limit."), IPRateLimitError),
        (Fault.ret_code(110076, "not isolated"), PositionError),
        (Fault.ret_code(110077, "portfolio margin"), PositionError),
        (Fault.http_status(401, "Unauthorized"), HTTPStatusError),
        (Fault.http_status(404, "Not Found"), HTTPStatusError),
        (Fault.http_status(403, "access too frequent"), ForbiddenError),
    ],
)
async def test_never_retried(
    sim: BybitSimulator, make_session: MakeSession, fault: Fault, error: type[BybitError]
) -> None:
    sim.inject(fault, path=PATH)
    with pytest.raises(error) as info:
        await make_session().set_auto_add_margin("BTCUSDT", True)
    assert type(info.value) is error
    assert info.value.attempts == 1
    assert (info.value.method, info.value.path) == ("POST", PATH)
    assert sim.count(PATH) == 1
    assert sim.auto_add_margin("BTCUSDT") == 0


async def test_api_error_fields_and_key_hint(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    with pytest.raises(AuthenticationError) as info:
        await make_session(api_key="unknown-key").set_auto_add_margin("BTCUSDT", True)
    error = info.value
    assert error.ret_code == 10003
    assert error.ret_msg
    assert "testnet" in str(error)
    assert "demo" in str(error)


async def test_forbidden_message_has_body_start(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.inject(Fault.http_status(403, "access too frequent " + "x" * 1000), path=PATH)
    with pytest.raises(ForbiddenError) as info:
        await make_session().set_auto_add_margin("BTCUSDT", True)
    assert info.value.status == 403
    assert "access too frequent" in str(info.value)
    assert len(str(info.value)) < 400


async def test_gives_up_after_max_retries(sim: BybitSimulator, make_session: MakeSession) -> None:
    sim.inject(Fault.http_status(503), path=PATH, times=10)
    with pytest.raises(ServerError) as info:
        await make_session(max_retries=2).set_auto_add_margin("BTCUSDT", True)
    assert info.value.attempts == 3
    assert "3 attempts" in str(info.value)
    assert sim.count(PATH) == 3


async def test_max_retries_zero(sim: BybitSimulator, make_session: MakeSession) -> None:
    sim.inject(Fault.http_status(503), path=PATH)
    with pytest.raises(ServerError):
        await make_session(max_retries=0).set_auto_add_margin("BTCUSDT", True)
    assert sim.count(PATH) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_connection_refused_raises_connect_error_after_retries() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with BybitSession(
        "key", "secret", base_url=url, max_retries=2, backoff_initial=0.001, backoff_max=0.002
    ) as session:
        with pytest.raises(ConnectError) as info:
            await session.set_auto_add_margin("BTCUSDT", True)
    assert info.value.attempts == 3


async def test_connection_refused_retried_for_non_idempotent() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with BybitSession(
        "key", "secret", base_url=url, max_retries=1, backoff_initial=0.001, backoff_max=0.002
    ) as session:
        with pytest.raises(ConnectError) as info:
            await session.request("GET", "/v5/market/time", signed=False, idempotent=False)
    assert info.value.attempts == 2


async def test_request_timeout_is_final_for_non_idempotent(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.inject(Fault.stall(), path=PATH)
    with pytest.raises(RequestTimeout):
        await make_session(timeout=0.2).request("POST", PATH, {"symbol": "BTCUSDT"})
    assert sim.count(PATH) == 1


@pytest.mark.parametrize(
    "body",
    [
        "",
        "[]",
        '"OK"',
        '{"retMsg": "OK"}',
        '{"retCode": "0", "retMsg": "OK"}',
        "{not json",
    ],
)
async def test_body_that_is_not_an_envelope(
    sim: BybitSimulator, make_session: MakeSession, body: str
) -> None:
    sim.inject(Fault.http_status(200, body), path=PATH)
    with pytest.raises(InvalidResponseError):
        await make_session(max_retries=0).set_auto_add_margin("BTCUSDT", True)


async def test_odd_ret_msg_type_is_tolerated(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.inject(Fault.http_status(200, '{"retCode": 10001, "retMsg": 7}'), path=PATH)
    with pytest.raises(InvalidParameterError) as info:
        await make_session().set_auto_add_margin("BTCUSDT", True)
    assert info.value.ret_msg == "7"


@pytest.mark.parametrize(
    "fault",
    [Fault.http_status(403, "access too frequent"), Fault.ret_code(10018, "IP rate limit")],
)
async def test_ip_ban_halts_the_session(
    sim: BybitSimulator, make_session: MakeSession, fault: Fault
) -> None:
    session = make_session(rate_limits=None)
    sim.inject(fault, path=PATH)
    with pytest.raises((ForbiddenError, IPRateLimitError)) as first:
        await session.set_auto_add_margin("BTCUSDT", True)
    outcomes = await session.set_auto_add_margin_many(["ETHUSDT", "SOLUSDT", "XRPUSDT"], True)
    assert sim.count(PATH) == 1  # nothing more reached the banned IP
    for outcome in outcomes:
        assert isinstance(outcome, SessionHaltedError)
        assert outcome.cause is first.value
        assert outcome.resume_in > 500
        assert "not sent" in str(outcome)
    session.resume()
    resp = await session.set_auto_add_margin("ETHUSDT", True)
    assert resp.ret_code == 0
    assert sim.count(PATH) == 2


async def test_ban_cooldown_ends(sim: BybitSimulator, make_session: MakeSession) -> None:
    # A cool-off too short to wait for: the next call finds it over.
    session = make_session(ban_cooldown=1e-9)
    sim.inject(Fault.http_status(403, "access too frequent"), path=PATH)
    with pytest.raises(ForbiddenError):
        await session.set_auto_add_margin("BTCUSDT", True)
    assert (await session.set_auto_add_margin("BTCUSDT", True)).ret_code == 0
