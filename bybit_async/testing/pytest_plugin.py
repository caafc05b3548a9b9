"""The pytest plugin: fixtures ``bybit_simulator`` and ``bybit_session``.

Installed with the package (entry point ``pytest11``); it needs
pytest-asyncio, which ``pip install 'bybit-async[testing]'`` brings.  Name a
fixture in an ``async def`` test and it runs against a fresh simulator, with
no other set-up, whatever pytest-asyncio's mode::

    async def test_turns_it_on(bybit_simulator, bybit_session):
        await bybit_session.set_auto_add_margin("BTCUSDT", True)
        assert bybit_simulator.auto_add_margin("BTCUSDT") == 1

Override the fixture ``bybit_simulator_options`` (a dict of `BybitSimulator`
keyword arguments) or ``bybit_session_options`` (of `BybitSession` ones) to
change either.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .protocol import SUCCESS_MESSAGES
from .server import BybitSimulator

_FIXTURES = ("bybit_simulator", "bybit_session")

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without the [testing] extra
    pytest_asyncio = None  # type: ignore[assignment]


@pytest.fixture
def bybit_simulator_options() -> dict[str, Any]:
    """Keyword arguments for the ``bybit_simulator`` fixture's `BybitSimulator`.

    By default successes answer ``OK``, ``success`` and an empty retMsg in
    turn, as Bybit's endpoints differ, so a client that compares retMsg fails.
    """
    return {"success_messages": SUCCESS_MESSAGES}


@pytest.fixture
def bybit_session_options() -> dict[str, Any]:
    """Keyword arguments for the ``bybit_session`` fixture's session, besides keys and URL."""
    return {}


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def bybit_simulator(
        bybit_simulator_options: dict[str, Any],
    ) -> AsyncIterator[BybitSimulator]:
        """A started `BybitSimulator` on loopback, a fresh one for each test."""
        async with BybitSimulator(**bybit_simulator_options) as simulator:
            yield simulator

    @pytest_asyncio.fixture
    async def bybit_session(
        bybit_simulator: BybitSimulator, bybit_session_options: dict[str, Any]
    ) -> AsyncIterator[Any]:
        """A `bybit_async.BybitSession` connected to ``bybit_simulator`` with its default keys."""
        from bybit_async import BybitSession

        async with BybitSession(
            bybit_simulator.api_key,
            bybit_simulator.api_secret,
            base_url=bybit_simulator.url,
            **bybit_session_options,
        ) as session:
            yield session

else:  # pragma: no cover

    @pytest.fixture
    def bybit_simulator() -> None:
        """Unavailable: needs pytest-asyncio."""
        pytest.fail("bybit_simulator needs pytest-asyncio: pip install 'bybit-async[testing]'")

    @pytest.fixture
    def bybit_session() -> None:
        """Unavailable: needs pytest-asyncio."""
        pytest.fail("bybit_session needs pytest-asyncio: pip install 'bybit-async[testing]'")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark coroutine tests that take the fixtures for pytest-asyncio, in strict mode too.

    Runs before pytest-asyncio looks for the mark; collects nothing itself.
    """
    if pytest_asyncio is None or not inspect.iscoroutinefunction(obj):
        return
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    marks = getattr(obj, "pytestmark", [])
    if any(name in parameters for name in _FIXTURES) and not any(
        mark.name == "asyncio" for mark in marks
    ):
        pytest.mark.asyncio(obj)
