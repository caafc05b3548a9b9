"""The pytest plugin, as a user's test suite sees it: fixtures by name, nothing else."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
from bybit_async.testing import SET_AUTO_ADD_MARGIN_PATH


async def test_sets_the_flag(bybit_simulator, bybit_session):
    resp = await bybit_session.set_auto_add_margin("BTCUSDT", True)
    assert resp.modified
    assert bybit_simulator.auto_add_margin("BTCUSDT") == 1
    assert bybit_simulator.count(SET_AUTO_ADD_MARGIN_PATH) == 1


async def test_a_fresh_simulator_for_each_test(bybit_simulator):
    assert bybit_simulator.requests == []
    assert bybit_simulator.auto_add_margin("BTCUSDT") == 0


async def test_comparing_retmsg_fails_as_it_would_against_bybit(bybit_session):
    messages = [
        (await bybit_session.set_auto_add_margin(s, True)).ret_msg
        for s in ("BTCUSDT", "ETHUSDT", "XRPUSDT")
    ]
    assert sorted(messages) == ["", "OK", "success"]
"""


# pytest-asyncio itself warns when its loop scope option is unset; -W error would fail on that.
OPTIONS = (
    "-p",
    "no:cacheprovider",
    "-W",
    "error",
    "-o",
    "asyncio_default_fixture_loop_scope=function",
)


def test_fixtures_need_no_set_up(pytester: pytest.Pytester) -> None:
    # Strict mode: no asyncio marks, no asyncio_mode setting; the plugin marks the tests.
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(*OPTIONS, "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=3)


def test_options_fixture_changes_the_simulator(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
import pytest


@pytest.fixture
def bybit_simulator_options():
    return {"clock_offset_ms": 60_000, "instruments": None}


async def test_skewed(bybit_simulator, bybit_session):
    await bybit_session.set_auto_add_margin("MADEUPUSDT", True)
    assert bybit_simulator.count(ret_code=10002) == 0
    assert bybit_simulator.auto_add_margin("MADEUPUSDT") == 1
"""
    )
    result = pytester.runpytest_subprocess(*OPTIONS)
    result.assert_outcomes(passed=1)
