"""Reading positions and ensuring auto-add-margin, against the simulator on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from urllib.parse import parse_qsl

import orjson
import pytest

from bybit_async import (
    ApiResponse,
    BybitSession,
    EnsureReport,
    InvalidParameterError,
    InvalidResponseError,
    PermissionDeniedError,
    Position,
    PositionIdx,
)
from bybit_async.positions import parse_positions, position_list_params
from bybit_async.testing import (
    NOT_MODIFIED_MSG,
    POSITION_LIST_PATH,
    SET_AUTO_ADD_MARGIN_PATH,
    BybitSimulator,
    Fault,
)

from .conftest import MakeSession

LIST = POSITION_LIST_PATH
WRITE = SET_AUTO_ADD_MARGIN_PATH


@pytest.fixture
async def sim() -> AsyncIterator[BybitSimulator]:
    # Any well-formed symbol is listed, so that tests can make up 200 of them.
    async with BybitSimulator(instruments=None) as simulator:
        yield simulator


def open_positions(sim: BybitSimulator, n: int, flag_on: int, prefix: str = "P") -> list[str]:
    """*n* open one-way isolated positions; the first *flag_on* have the flag on."""
    names = [f"{prefix}{i:03d}USDT" for i in range(n)]
    for i, name in enumerate(names):
        sim.set_position(name, size=1, auto_add_margin=int(i < flag_on))
    return names


def writes(sim: BybitSimulator) -> list[dict[str, object]]:
    return [orjson.loads(r.body) for r in sim.requests if r.path == WRITE]


def list_queries(sim: BybitSimulator) -> list[dict[str, str]]:
    return [dict(parse_qsl(r.query)) for r in sim.requests if r.path == LIST]


# -- get_positions ---------------------------------------------------------------------


async def test_get_positions_follows_the_cursor_to_the_end(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    names = open_positions(sim, 250, 100)
    sim.set_position("ZEROUSDT", size=0)  # not open: not in a settleCoin read
    positions = await make_session().get_positions(settle_coin="USDT")
    assert [p.symbol for p in positions] == names
    assert all(isinstance(p, Position) and p.is_open for p in positions)
    assert sum(p.auto_add_margin for p in positions) == 100
    queries = list_queries(sim)
    assert [q.get("cursor") for q in queries] == [None, "page-200"]
    assert all(q["limit"] == "200" and q["settleCoin"] == "USDT" for q in queries)


async def test_get_positions_by_symbol_types_every_field(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.set_position("ETHUSDT", hedge=True)
    sim.set_position("ETHUSDT", position_idx=2, size="0.5", auto_add_margin=1)
    sim.set_position("XRPUSDT", margin_mode="cross")
    session = make_session()
    eth = await session.get_positions(symbol="ETHUSDT")
    assert [(p.position_idx, p.side, p.size, p.auto_add_margin) for p in eth] == [
        (PositionIdx.HEDGE_BUY, "", Decimal(0), False),
        (PositionIdx.HEDGE_SELL, "Sell", Decimal("0.5"), True),
    ]
    assert eth[1].raw["symbol"] == "ETHUSDT"
    assert eth[1].trade_mode == 1
    (xrp,) = await session.get_positions(symbol="XRPUSDT")
    assert xrp.trade_mode == 0
    assert not xrp.is_open


def test_position_parses_bybit_s_none_side_and_rejects_a_bad_item() -> None:
    item = {"symbol": "BTCUSD", "positionIdx": 0, "side": "None", "size": "0", "tradeMode": 0}
    position = Position.from_json(item | {"autoAddMargin": 1})
    assert position.side == ""
    assert position.auto_add_margin
    bad = ApiResponse(0, "OK", {"list": [item | {"positionIdx": 7}]}, {}, None)
    with pytest.raises(InvalidResponseError):
        parse_positions(bad)


def test_position_list_params_are_strings_and_checked() -> None:
    assert position_list_params(settle_coin="USDT", cursor="c") == {
        "category": "linear",
        "settleCoin": "USDT",
        "limit": "200",
        "cursor": "c",
    }
    for kwargs, problem in (
        ({}, "give symbol or settle_coin"),
        ({"symbol": "btcusdt"}, "uppercase"),
        ({"settle_coin": "usdt"}, "uppercase"),
        ({"symbol": "X", "limit": 0}, "limit"),
    ):
        with pytest.raises(ValueError, match=problem):
            position_list_params(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="linear"):
        position_list_params("inverse", symbol="BTCUSD")


async def test_a_repeating_cursor_is_an_error_not_a_loop(make_session: MakeSession) -> None:
    class Stuck:
        reads = 0

        async def request(self, *args: object, **kwargs: object) -> ApiResponse:
            self.reads += 1
            # A new position on every page, so that only the cursor stops it.
            item = {"symbol": f"P{self.reads}USDT", "positionIdx": 0, "size": "1"}
            return ApiResponse(0, "OK", {"list": [item], "nextPageCursor": "same"}, {}, None)

    stuck = Stuck()
    from bybit_async.positions import get_positions

    with pytest.raises(InvalidResponseError, match="repeats"):
        await get_positions(stuck, settle_coin="USDT")  # type: ignore[arg-type]
    assert stuck.reads == 2


# -- ensure_auto_add_margin ------------------------------------------------------------


async def test_200_open_positions_190_already_on_write_10(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    names = open_positions(sim, 200, 190)
    report = await make_session().ensure_auto_add_margin(None, True)
    assert sim.count(WRITE) == 10
    assert sorted(w["symbol"] for w in writes(sim)) == names[190:]
    assert sim.count(LIST) == 1
    assert (report.changed, report.unchanged, report.writes, report.reads) == (10, 190, 10, 1)
    assert report.ok
    assert not report.dry_run
    assert [r.symbol for r in report.rows] == names  # by symbol
    assert all(sim.auto_add_margin(name) == 1 for name in names)
    assert str(report) == "auto-add-margin on: 200 positions: 10 changed, 190 unchanged " + (
        "(1 read, 10 writes)"
    )
    # Again: nothing left to write.
    again = await make_session().ensure_auto_add_margin(None, True)
    assert (again.unchanged, again.writes, sim.count(WRITE)) == (200, 0, 10)


async def test_named_symbols_not_open_are_written_without_a_read(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    names = open_positions(sim, 200, 190)
    closed = ["C1USDT", "C2USDT"]
    sim.set_position("C2USDT", auto_add_margin=1)
    asked = [names[195], *closed, names[0], names[195]]  # a duplicate is asked once
    report = await make_session().ensure_auto_add_margin(asked, True)
    (first,) = list_queries(sim)
    assert "symbol" not in first
    assert report.reads == 1
    assert [(r.symbol, r.status, r.position_idx) for r in report.rows] == [
        (names[195], "changed", 0),
        ("C1USDT", "changed", None),  # written without positionIdx, as one-way
        ("C2USDT", "unchanged", None),  # Bybit: not modified
        (names[0], "unchanged", 0),
    ]
    assert sorted(w["symbol"] for w in writes(sim)) == sorted([names[195], *closed])
    assert all("positionIdx" not in w for w in writes(sim) if w["symbol"] in closed)


async def test_a_dry_run_reads_the_named_symbols_not_open(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    names = open_positions(sim, 200, 190)
    closed = ["C1USDT", "C2USDT"]
    sim.set_position("C2USDT", auto_add_margin=1)
    asked = [names[195], *closed, names[0]]
    report = await make_session().ensure_auto_add_margin(asked, True, dry_run=True)
    first, *by_symbol = list_queries(sim)
    assert "symbol" not in first
    assert sorted(q["symbol"] for q in by_symbol) == closed
    assert report.reads == 3
    assert [(r.symbol, r.status) for r in report.rows] == [
        (names[195], "planned"),
        ("C1USDT", "planned"),
        ("C2USDT", "unchanged"),
        (names[0], "unchanged"),
    ]
    assert all(r.position_idx == 0 for r in report.rows)
    assert writes(sim) == []


async def test_hedge_mode_is_handled_per_side(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.set_position("ETHUSDT", hedge=True)
    sim.set_position("ETHUSDT", position_idx=1, size=2, auto_add_margin=1)
    sim.set_position("SOLUSDT", hedge=True)
    sim.set_position("SOLUSDT", position_idx=2, size=1)
    session = make_session()
    # Every open position: one side of each is open.
    report = await session.ensure_auto_add_margin(None, True)
    assert [(r.symbol, r.position_idx, r.status) for r in report.rows] == [
        ("ETHUSDT", 1, "unchanged"),
        ("SOLUSDT", 2, "changed"),
    ]
    assert writes(sim) == [
        {"category": "linear", "symbol": "SOLUSDT", "autoAddMargin": 1, "positionIdx": 2}
    ]
    # Named: both sides; the closed one written without a read, with its index.
    report = await session.ensure_auto_add_margin(["ETHUSDT"], True)
    assert [(r.position_idx, r.status) for r in report.rows] == [(1, "unchanged"), (2, "changed")]
    assert "symbol" not in list_queries(sim)[-1]
    assert writes(sim)[-1]["positionIdx"] == 2
    assert sim.auto_add_margin("ETHUSDT", 2) == 1


async def test_a_hedge_mode_symbol_with_nothing_open_is_read_after_bybit_says_so(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.set_position("ETHUSDT", hedge=True)
    sim.set_position("ETHUSDT", position_idx=2, auto_add_margin=1)
    report = await make_session().ensure_auto_add_margin(["ETHUSDT"], True)
    assert [(r.position_idx, r.status) for r in report.rows] == [(1, "changed"), (2, "unchanged")]
    assert report.reads == 2
    assert list_queries(sim)[-1]["symbol"] == "ETHUSDT"
    # The write without positionIdx, refused for the mode, then the buy side's.
    assert [w.get("positionIdx") for w in writes(sim)] == [None, 1]
    assert (sim.auto_add_margin("ETHUSDT", 1), sim.auto_add_margin("ETHUSDT", 2)) == (1, 1)


async def test_a_cross_margin_position_is_reported_not_hidden(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.set_position("XRPUSDT", margin_mode="cross", size=1)
    sim.set_position("BTCUSDT", size=1)
    session = make_session()
    # tradeMode 0 may be a unified account's: the write is tried and Bybit's refusal reported.
    report = await session.ensure_auto_add_margin(["XRPUSDT", "BTCUSDT"], True)
    xrp, btc = report.rows
    assert (xrp.status, xrp.written, xrp.ret_code) == ("skipped", True, 110076)
    assert "cross margin" in xrp.reason
    assert "Only isolated mode" in xrp.reason
    assert btc.status == "changed"
    assert report.ok
    assert (report.skipped, report.changed) == (1, 1)
    # In a classic account tradeMode says so: skipped without a write.
    before = sim.count(WRITE)
    report = await session.ensure_auto_add_margin(["XRPUSDT"], True, classic=True)
    (xrp,) = report.rows
    assert (xrp.status, xrp.written, sim.count(WRITE)) == ("skipped", False, before)
    assert "tradeMode 0" in xrp.reason


async def test_a_portfolio_margin_account_is_skipped(make_session: MakeSession) -> None:
    async with BybitSimulator(instruments=None) as sim:
        sim.add_account("pm-key", "pm-secret", margin_mode="portfolio")
        session = make_session(base_url=sim.url, api_key="pm-key", api_secret="pm-secret")
        report = await session.ensure_auto_add_margin(["BTCUSDT"], True)
    (row,) = report.rows
    assert (row.status, row.ret_code) == ("skipped", 110077)


async def test_a_failed_write_leaves_the_others_done(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    names = open_positions(sim, 20, 10)
    sim.inject(Fault.ret_code(10005), path=WRITE)
    report = await make_session().ensure_auto_add_margin(None, True)
    failed = [r for r in report.rows if r.status == "failed"]
    assert len(failed) == 1
    assert isinstance(failed[0].error, PermissionDeniedError)
    assert failed[0].ret_code == 10005
    assert failed[0].written
    assert (report.changed, report.unchanged, report.failed) == (9, 10, 1)
    assert not report.ok
    assert sum(sim.auto_add_margin(name) for name in names) == 19


async def test_dry_run_sends_no_write(sim: BybitSimulator, make_session: MakeSession) -> None:
    names = open_positions(sim, 30, 25)
    sim.set_position("XRPUSDT", margin_mode="cross", size=1)
    report = await make_session().ensure_auto_add_margin(None, True, dry_run=True)
    assert sim.count(WRITE) == 0
    assert report.dry_run
    assert (report.planned, report.unchanged, report.writes) == (6, 25, 0)
    assert [r.symbol for r in report.rows if r.status == "planned"] == [*names[25:], "XRPUSDT"]
    assert sum(sim.auto_add_margin(name) for name in names) == 25
    assert str(report).startswith("dry run: auto-add-margin on: 31 positions: 6 planned")


async def test_turning_off_and_a_not_modified_write(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    open_positions(sim, 3, 2)
    # As if another client set the flag between the read and the write.
    sim.inject(Fault.ret_code(10001, NOT_MODIFIED_MSG), path=WRITE)
    report = await make_session().ensure_auto_add_margin(None, False)
    statuses = sorted((r.status, r.written) for r in report.rows)
    assert statuses == [("changed", True), ("unchanged", False), ("unchanged", True)]
    assert report.writes == 2
    assert report.ok


async def test_an_unknown_symbol_is_a_failed_row(make_session: MakeSession) -> None:
    async with BybitSimulator() as sim:  # the default instruments: NOPEUSDT is not listed
        session = make_session(base_url=sim.url)
        report = await session.ensure_auto_add_margin(["NOPEUSDT", "BTCUSDT"], True)
    nope, btc = report.rows
    assert (nope.status, nope.position_idx, nope.ret_code) == ("failed", None, 10001)
    assert isinstance(nope.error, InvalidParameterError)
    assert "symbol invalid" in nope.reason
    assert btc.status == "changed"
    assert report.failed == 1
    assert sim.count(WRITE) == 2  # neither is open: both written without a read


async def test_bad_arguments_raise_before_anything_is_sent(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    session = make_session()
    with pytest.raises(ValueError, match="uppercase"):
        await session.ensure_auto_add_margin(["BTCUSDT", "ethusdt"], True)
    with pytest.raises(TypeError):
        await session.ensure_auto_add_margin("BTCUSDT", True)
    with pytest.raises(ValueError, match="1/0"):
        await session.ensure_auto_add_margin(None, 2)
    with pytest.raises(ValueError, match="uppercase"):
        await session.ensure_auto_add_margin(None, True, settle_coin="usdt")
    assert sim.requests == []


async def test_several_settle_coins_and_an_empty_list(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    sim.set_position("BTCPERP", size=1)
    sim.set_position("BTCUSDT", size=1)
    session = make_session()
    report = await session.ensure_auto_add_margin(settle_coin=["USDT", "USDC"])
    assert [r.symbol for r in report.rows] == ["BTCPERP", "BTCUSDT"]
    assert sorted(q["settleCoin"] for q in list_queries(sim)) == ["USDC", "USDT"]
    empty = await session.ensure_auto_add_margin([], True)
    assert empty.rows == ()
    assert empty.reads == 0
    assert sim.count(LIST) == 2


async def test_report_table_and_json_carry_no_secret(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    open_positions(sim, 2, 1)
    sim.inject(Fault.ret_code(10004), path=WRITE)
    report: EnsureReport = await make_session().ensure_auto_add_margin(None, True)
    text = report.table() + repr(report) + str([r.as_json() for r in report.rows])
    assert sim.api_secret not in text
    lines = report.table().splitlines()
    assert lines[0].split() == ["symbol", "idx", "status", "reason"]
    assert lines[-1] == str(report)
    assert report.rows[1].as_json()["error"] == "AuthenticationError"


async def test_the_session_method_and_a_closed_session(make_session: MakeSession) -> None:
    session: BybitSession = make_session()
    await session.close()
    with pytest.raises(RuntimeError, match="closed"):
        await session.ensure_auto_add_margin(["BTCUSDT"], True)


async def test_a_failed_settle_coin_read_raises_and_writes_nothing(
    sim: BybitSimulator, make_session: MakeSession
) -> None:
    open_positions(sim, 3, 0)
    sim.inject(Fault.ret_code(10005), path=LIST)
    with pytest.raises(PermissionDeniedError):
        await make_session().ensure_auto_add_margin(None, True, settle_coin=["USDT", "USDC"])
    assert sim.count(LIST) == 2
    assert sim.count(WRITE) == 0
