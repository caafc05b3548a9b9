"""Hardening, second pass (issue 23): what a hostile server or a careless caller can push on.

Each test drives a small server on loopback (`tests.hostile`) or the
simulator.  ``asyncio.wait_for`` bounds only turn an old hang into a failure;
no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from bybit_async import BybitSession, InvalidResponseError, RequestTimeout
from bybit_async.positions import MAX_PAGES, POSITION_LIST

from .hostile import HostileServer, envelope, serve

GUARD = 30  # seconds: turns a hang into a failure, measures nothing


@pytest.fixture
async def server() -> AsyncIterator[HostileServer]:
    async for started in serve():
        yield started


def session_for(server: HostileServer, **kwargs: Any) -> BybitSession:
    options: dict[str, Any] = {"base_url": server.url, "backoff_initial": 0.001}
    options.update(kwargs)
    return BybitSession("key", "secret", **options)


def item(symbol: str, idx: int = 0, size: str = "1", flag: int = 0) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "positionIdx": idx,
        "side": "Buy",
        "size": size,
        "tradeMode": 1,
        "autoAddMargin": flag,
    }


def pages(make: Callable[[int], tuple[list[dict[str, Any]], str]]) -> Any:
    """A handler answering the position list's page n (from 0) with ``make(n)``."""
    count = itertools.count()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path != POSITION_LIST:
            return envelope()
        items, cursor = make(next(count))
        return envelope(result={"list": items, "nextPageCursor": cursor})

    return handler


def reads(server: HostileServer) -> int:
    return server.paths().count(POSITION_LIST)


# -- 1. endless position pages ------------------------------------------------------


async def test_new_cursors_with_new_positions_forever_stop_at_the_page_cap(
    server: HostileServer,
) -> None:
    server.handler = pages(lambda n: ([item(f"P{n}USDT")], f"cursor-{n}"))
    async with session_for(server) as session:
        with pytest.raises(InvalidResponseError, match="pages"):
            await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)
        assert reads(server) == MAX_PAGES
        with pytest.raises(InvalidResponseError, match="pages"):
            await asyncio.wait_for(session.ensure_auto_add_margin(None, True), GUARD)
        assert "/v5/position/set-auto-add-margin" not in server.paths()


async def test_new_cursors_over_the_same_positions_end_the_list(server: HostileServer) -> None:
    server.handler = pages(lambda n: ([item("BTCUSDT"), item("ETHUSDT")], f"cursor-{n}"))
    async with session_for(server) as session:
        positions = await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)
    assert [p.symbol for p in positions] == ["BTCUSDT", "ETHUSDT"]
    assert reads(server) == 2


async def test_each_position_is_returned_once(server: HostileServer) -> None:
    listed = [
        [item("BTCUSDT"), item("BTCUSDT"), item("ETHUSDT", 1), item("ETHUSDT", 2)],
        [item("ETHUSDT", 1), item("XRPUSDT")],
        [],
    ]
    server.handler = pages(lambda n: (listed[n % 3], f"cursor-{n}" if n % 3 < 2 else ""))
    async with session_for(server) as session:
        positions = await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)
        report = await asyncio.wait_for(
            session.ensure_auto_add_margin(None, True, dry_run=True), GUARD
        )
    keys = [(p.symbol, int(p.position_idx)) for p in positions]
    assert keys == [("BTCUSDT", 0), ("ETHUSDT", 1), ("ETHUSDT", 2), ("XRPUSDT", 0)]
    assert [(r.symbol, r.position_idx) for r in report.rows] == keys


async def test_a_page_longer_than_the_limit_is_refused(server: HostileServer) -> None:
    server.handler = pages(lambda n: ([item(f"P{i}USDT") for i in range(201)], ""))
    async with session_for(server) as session:
        with pytest.raises(InvalidResponseError, match="more than the limit of 200"):
            await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)


async def test_the_deadline_bounds_the_whole_read_not_each_page(server: HostileServer) -> None:
    # Each page comes well within the deadline; all of them together do not.
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)  # latency, not synchronization
        return await endless(request)

    endless = pages(lambda n: ([item(f"P{n}USDT")], f"cursor-{n}"))
    server.handler = slow
    async with session_for(server, deadline=1.0) as session:
        with pytest.raises(RequestTimeout, match="deadline of 1 s"):
            await asyncio.wait_for(session.get_positions(settle_coin="USDT"), GUARD)
        assert reads(server) < MAX_PAGES
        before = reads(server)
        with pytest.raises(RequestTimeout, match="deadline of 1 s"):
            await asyncio.wait_for(session.ensure_auto_add_margin(["BTCUSDT"], True), GUARD)
        assert reads(server) - before < MAX_PAGES
