"""Fixtures: a simulator on loopback and sessions pointed at it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bybit_async import BybitSession, ServerClock
from bybit_async.clock import wall_clock_ms
from bybit_async.testing import BybitSimulator

MakeSession = Callable[..., BybitSession]


@pytest.fixture
async def sim() -> AsyncIterator[BybitSimulator]:
    """A simulator on loopback with its default limits."""
    async with BybitSimulator() as simulator:
        yield simulator


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client, for talking to the simulator without the SDK."""
    async with aiohttp.ClientSession() as session:
        yield session


def ticking_clock() -> ServerClock:
    """A clock that moves at least 1 ms per reading, so every attempt gets a new timestamp."""
    ticks = itertools.count()
    return ServerClock(local_ms=lambda: wall_clock_ms() + next(ticks))


@pytest.fixture
async def make_session(sim: BybitSimulator) -> AsyncIterator[MakeSession]:
    """Build sessions for the simulator (fast back-off); all are closed afterwards."""
    sessions: list[BybitSession] = []

    def make(**kwargs: Any) -> BybitSession:
        options: dict[str, Any] = {
            "base_url": sim.url,
            "backoff_initial": 0.001,
            "backoff_max": 0.005,
            "clock": ticking_clock(),
        }
        options.update(kwargs)
        session = BybitSession(
            options.pop("api_key", sim.api_key),
            options.pop("api_secret", sim.api_secret),
            **options,
        )
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()
