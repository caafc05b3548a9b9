"""The pytest plugin: fixtures ``bybit_simulator`` and ``bybit_session``.

Installed with the package (entry point ``pytest11``); it needs
pytest-asyncio, which ``pip install 'bybit-async[testing]'`` brings.  Name a
fixture in an ``async def`` test, directly or through your own
``@pytest_asyncio.fixture`` built on it, and the test runs against a fresh
simulator with no marker and no configuration file, in pytest-asyncio's
strict and auto modes; ``asyncio_default_fixture_loop_scope`` defaults to
``function`` when you have not set it, so ``-W error`` runs clean::

    async def test_turns_it_on(bybit_simulator, bybit_session):
        await bybit_session.set_auto_add_margin("BTCUSDT", True)
        assert bybit_simulator.auto_add_margin("BTCUSDT") == 1

Override the fixture ``bybit_simulator_options`` (a dict of `BybitSimulator`
keyword arguments) or ``bybit_session_options`` (of `BybitSession` ones) to
change either.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from .server import BybitSimulator

_FIXTURES = ("bybit_simulator", "bybit_session")

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without the [testing] extra
    pytest_asyncio = None  # type: ignore[assignment]


@pytest.fixture
def bybit_simulator_options() -> dict[str, Any]:
    """Keyword arguments for the ``bybit_simulator`` fixture's `BybitSimulator` (none by default).

    Successes answer retMsg ``OK``, as Bybit documents; return
    ``{"success_messages": SUCCESS_MESSAGES}`` for ``OK``, ``success`` and an
    empty retMsg in turn.
    """
    return {}


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


_LOOP_SCOPE_OPTION = "asyncio_default_fixture_loop_scope"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Default pytest-asyncio's fixture loop scope to ``function`` when the user set none.

    pytest-asyncio warns at start-up while the option is unset, and a run
    with ``-W error`` stops on that warning.  Runs before pytest-asyncio's
    own ``pytest_configure`` reads the option; a value from the user's
    configuration file or ``-o`` is left alone.
    """
    if pytest_asyncio is None:
        return
    try:
        if config.getini(_LOOP_SCOPE_OPTION):
            return
    except ValueError:  # pragma: no cover - an old pytest-asyncio without the option
        return
    cache = getattr(config, "_inicache", None)
    if isinstance(cache, dict):
        # getini() answers from this cache from now on, for pytest-asyncio too.
        cache[_LOOP_SCOPE_OPTION] = "function"


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> Generator[None, Any, None]:
    """Mark coroutine tests that use the fixtures, directly or through other fixtures.

    The innermost wrapper: it marks the collected items ``asyncio`` before
    pytest-asyncio's wrapper looks for the mark, so that strict mode needs
    no marker either, also for a test that uses only the user's own
    ``@pytest_asyncio.fixture`` built on ``bybit_session``.
    """
    outcome = yield
    if pytest_asyncio is None or not inspect.iscoroutinefunction(obj):
        return
    try:
        collected = outcome.get_result()
    except BaseException:
        return
    items = collected if isinstance(collected, list) else [collected]
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if item.get_closest_marker("asyncio") is not None:
            continue
        if any(name in _FIXTURES for name in item.fixturenames):
            item.add_marker(pytest.mark.asyncio)
