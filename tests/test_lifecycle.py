"""Cancellation, closing, and keeping the secret out of everything printable."""

from __future__ import annotations

import asyncio
import logging
import traceback

import pytest

from bybit_async import AuthenticationError, BybitSession
from bybit_async.testing import BybitSimulator, Fault

from .conftest import MakeSession

PATH = "/v5/position/set-auto-add-margin"


def open_connections(session: BybitSession) -> int:
    """Connections the session's pool holds, idle or in use (aiohttp keeps no public count)."""
    http = session._http
    if http is None:
        return 0
    connector = http.connector
    assert connector is not None
    idle = sum(len(conns) for conns in connector._conns.values())  # type: ignore[attr-defined]
    return idle + len(connector._acquired)  # type: ignore[attr-defined]


async def test_cancelling_100_in_flight_calls(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    session = make_session(rate_limits=None)
    await session.get_server_time()
    sim.inject(Fault.stall(), path=PATH, times=100)
    tasks = [
        asyncio.create_task(session.set_auto_add_margin(f"S{i}USDT", True)) for i in range(100)
    ]
    await sim.wait_for_requests(1 + 1 + 100)  # time sync, get_server_time, 100 stalled
    assert open_connections(session) >= 100
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert open_connections(session) == 0
    await session.close()
    assert session._http is None


async def test_cancel_during_first_clock_sync(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.inject(Fault.stall(), path="/v5/market/time")
    session = make_session()
    task = asyncio.create_task(session.set_auto_add_margin("BTCUSDT", True))
    await sim.wait_for_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await session.close()


async def test_async_with_closes(sim: BybitSimulator) -> None:
    async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
        await session.set_auto_add_margin("BTCUSDT", True)
        assert session._http is not None
    assert session.closed
    assert session._http is None


SECRET = "s3cr3t-value-never-shown"


async def test_secret_never_printed(
    sim: BybitSimulator, make_session: MakeSession, caplog: pytest.LogCaptureFixture
) -> None:
    sim.add_account("other-key", SECRET)
    caplog.set_level(logging.DEBUG)
    session = make_session(api_key="other-key", api_secret=SECRET)
    await session.set_auto_add_margin("BTCUSDT", True)
    sim.inject(Fault.http_status(503), path=PATH)
    await session.set_auto_add_margin("BTCUSDT", False)

    wrong = make_session(api_key="other-key", api_secret=SECRET + "x")
    with pytest.raises(AuthenticationError) as info:
        await wrong.set_auto_add_margin("BTCUSDT", True)
    signatures = [r.signature for r in sim.requests if r.signature]
    shown = "\n".join(
        [
            caplog.text,
            repr(session),
            repr(wrong),
            str(info.value),
            repr(info.value),
            "".join(traceback.format_exception(info.value)),
        ]
    )
    assert caplog.records, "DEBUG logging must be on for this test to mean anything"
    assert SECRET not in shown
    for signature in signatures:
        assert signature not in shown
