"""The official SDK (pybit) against the simulator: fidelity checked by code nobody here wrote."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bybit_async.testing import POSITION_LIST_PATH, SET_AUTO_ADD_MARGIN_PATH, BybitSimulator

unified_trading = pytest.importorskip("pybit.unified_trading")
exceptions = pytest.importorskip("pybit.exceptions")


def pybit_http(sim: BybitSimulator) -> Any:
    """A pybit HTTP session pointed at *sim* (pybit builds its host from flags; set it after)."""
    http = unified_trading.HTTP(
        api_key=sim.api_key,
        api_secret=sim.api_secret,
        max_retries=1,
        logging_level=logging.CRITICAL,
    )
    http.endpoint = sim.url
    return http


async def call(http: Any, method: str, **params: Any) -> Any:
    """Run a pybit call in a thread: it is synchronous (requests)."""
    return await asyncio.to_thread(getattr(http, method), **params)


@pytest.fixture
def http(sim: BybitSimulator) -> Iterator[Any]:
    session = pybit_http(sim)
    yield session
    session.client.close()


async def test_signed_post_accepted(sim: BybitSimulator, http: Any) -> None:
    reply = await call(
        http, "set_auto_add_margin", category="linear", symbol="BTCUSDT", autoAddMargin=1
    )
    assert (reply["retCode"], reply["result"]) == (0, {})
    assert sim.auto_add_margin("BTCUSDT") == 1
    assert sim.count(SET_AUTO_ADD_MARGIN_PATH, ret_code=0) == 1


async def test_hedge_mode_call(sim: BybitSimulator, http: Any) -> None:
    sim.set_position("ETHUSDT", hedge=True)
    params = {"category": "linear", "symbol": "ETHUSDT", "autoAddMargin": 1, "positionIdx": 1}
    reply = await call(http, "set_auto_add_margin", **params)
    assert reply["retCode"] == 0
    assert (sim.auto_add_margin("ETHUSDT", 1), sim.auto_add_margin("ETHUSDT", 2)) == (1, 0)


async def test_docs_misspelling_rejected(sim: BybitSimulator, http: Any) -> None:
    # Bybit's own Python example spells it autoAddmargin; Bybit wants autoAddMargin.
    with pytest.raises(exceptions.InvalidRequestError) as caught:
        await call(
            http, "set_auto_add_margin", category="linear", symbol="BTCUSDT", autoAddmargin=1
        )
    assert caught.value.status_code == 10001
    assert "autoAddMargin" in caught.value.message
    assert sim.auto_add_margin("BTCUSDT") == 0


async def test_signed_get_of_the_position_list(sim: BybitSimulator, http: Any) -> None:
    sim.set_position("XRPUSDT", size="10", side="Buy", auto_add_margin=1)
    reply = await call(http, "get_positions", category="linear", symbol="XRPUSDT")
    assert reply["retCode"] == 0
    [item] = reply["result"]["list"]
    assert (item["symbol"], item["size"], item["side"], item["autoAddMargin"]) == (
        "XRPUSDT",
        "10",
        "Buy",
        1,
    )
    # pybit sorts the parameters; the simulator checked the signature over them as sent.
    assert sim.requests[-1].query == "category=linear&symbol=XRPUSDT"
    assert sim.count(POSITION_LIST_PATH, ret_code=0) == 1


async def test_unknown_symbol_raises_in_pybit(sim: BybitSimulator, http: Any) -> None:
    with pytest.raises(exceptions.InvalidRequestError) as caught:
        await call(http, "get_positions", category="linear", symbol="NOPEUSDT")
    assert caught.value.status_code == 10001
