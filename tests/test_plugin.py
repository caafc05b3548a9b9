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


async def test_every_success_says_ok(bybit_session):
    messages = [
        (await bybit_session.set_auto_add_margin(s, True)).ret_msg
        for s in ("BTCUSDT", "ETHUSDT", "XRPUSDT")
    ]
    assert messages == ["OK", "OK", "OK"]
"""


# No configuration file and no loop scope option: pytest-asyncio warns when its loop scope
# option is unset, and -W error would stop on that unless the plugin sets a default.
OPTIONS = ("-p", "no:cacheprovider", "-W", "error")

# A user's own async fixture on top of bybit_session, as docs/testing.md shows it.
USER_FIXTURE_TESTS = """
import pytest_asyncio


@pytest_asyncio.fixture
async def flagged(bybit_session):
    await bybit_session.set_auto_add_margin("ETHUSDT", True)
    return bybit_session


async def test_through_my_fixture(flagged):
    resp = await flagged.set_auto_add_margin("ETHUSDT", False)
    assert resp.modified


async def test_my_fixture_and_the_simulator(flagged, bybit_simulator):
    assert bybit_simulator.auto_add_margin("ETHUSDT") == 1
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_fixtures_need_no_set_up(pytester: pytest.Pytester, mode: str) -> None:
    # No asyncio marks, no configuration file; the plugin marks the tests.
    pytester.makepyfile(test_user=USER_TESTS, test_mine=USER_FIXTURE_TESTS)
    result = pytester.runpytest_subprocess(*OPTIONS, "-o", f"asyncio_mode={mode}")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*asyncio_default_fixture_loop_scope=function*"])


def test_default_mode_is_strict_and_works(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine=USER_FIXTURE_TESTS)
    result = pytester.runpytest_subprocess(*OPTIONS)
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines([r".*mode=(Mode\.)?(STRICT|strict)\b.*"])


def test_the_users_loop_scope_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\n"
        "asyncio_default_fixture_loop_scope = module\n"
        "asyncio_default_test_loop_scope = module\n"
    )
    pytester.makepyfile(test_mine=USER_FIXTURE_TESTS)
    result = pytester.runpytest_subprocess(*OPTIONS)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*asyncio_default_fixture_loop_scope=module*"])


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
