"""The auto-add-margin guard, against the simulator's REST endpoints and WebSocket stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from bybit_async import AuthenticationError, BybitSession, EnsureRow
from bybit_async.events import Event, GuardActed, StreamConnected, StreamReconnected
from bybit_async.testing import (
    POSITION_LIST_PATH,
    SET_AUTO_ADD_MARGIN_PATH,
    BybitSimulator,
    Fault,
)

from .conftest import MakeSession
from .test_stream import FAST, client_tasks, push

WRITE = SET_AUTO_ADD_MARGIN_PATH
#: Seconds without a row or event after which a wait fails the test.
STUCK = 60.0


@pytest.fixture
async def sim() -> AsyncIterator[BybitSimulator]:
    async with BybitSimulator(instruments=None) as simulator:
        yield simulator


class Actions:
    """The guard's on_action and on_event: every row, and a way to await some."""

    def __init__(self) -> None:
        self.rows: list[EnsureRow] = []
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, row: EnsureRow) -> None:
        self.rows.append(row)
        self._changed.set()

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, symbol: str, status: str | None = None) -> list[EnsureRow]:
        return [
            r for r in self.rows if r.symbol == symbol and (status is None or r.status == status)
        ]

    async def wait(self, symbol: str, status: str, count: int = 1) -> list[EnsureRow]:
        while len(self.of(symbol, status)) < count:
            await self._next(f"{count} {status!r} row(s) of {symbol}")
        return self.of(symbol, status)

    async def wait_event(self, kind: type[Any], count: int = 1) -> None:
        while sum(isinstance(e, kind) for e in self.events) < count:
            await self._next(f"{count} {kind.__name__} event(s)")

    async def _next(self, what: str) -> None:
        # A bound, should it never come: the test then fails saying what it
        # saw instead of hanging the whole run.
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), STUCK)
        except asyncio.TimeoutError:
            seen = [(r.symbol, r.status, r.reason) for r in self.rows]
            kinds = [type(e).__name__ for e in self.events]
            pytest.fail(f"no {what} in {STUCK} s; rows {seen}; events {kinds}")


@pytest.fixture
def actions() -> Actions:
    return Actions()


@pytest.fixture
def session(make_session: MakeSession, actions: Actions) -> BybitSession:
    return make_session(on_event=actions.on_event)


@contextlib.asynccontextmanager
async def guarding(
    session: BybitSession, actions: Actions, *args: Any, **kwargs: Any
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(
        session.guard_auto_add_margin(
            *args,
            on_action=actions,
            retry_initial=0.001,
            retry_max=0.005,
            **{**FAST, **kwargs},
        )
    )
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def writes(sim: BybitSimulator, symbol: str | None = None) -> list[dict[str, Any]]:
    bodies = [orjson.loads(r.body) for r in sim.requests if r.path == WRITE]
    return [b for b in bodies if symbol is None or b["symbol"] == symbol]


async def test_start_reconciles_writing_only_what_differs(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.set_position("AAAUSDT", size=1, auto_add_margin=1)
    sim.set_position("BBBUSDT", size=1)
    sim.set_position("CCCUSDT", size=0)  # not open: not guarded when symbols is None
    async with guarding(session, actions):
        (row,) = await actions.wait("BBBUSDT", "changed")
        await actions.wait("AAAUSDT", "unchanged")
    assert row.written
    assert [w["symbol"] for w in writes(sim)] == ["BBBUSDT"]
    assert sim.auto_add_margin("BBBUSDT") == 1
    assert sim.auto_add_margin("CCCUSDT") == 0
    acted = [e for e in actions.events if isinstance(e, GuardActed)]
    assert {(e.row.symbol, e.trigger) for e in acted} >= {("BBBUSDT", "reconcile")}


async def test_a_new_position_gets_one_write(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    async with guarding(session, actions):
        await _connected(session, actions)
        sim.set_position("NEWUSDT", size=1)
        (row,) = await actions.wait("NEWUSDT", "changed")
        # More pushes of the same position, now on: nothing more to do.
        sim.set_position("NEWUSDT", size=2)
        sim.set_position("LATERUSDT", size=1)
        await actions.wait("LATERUSDT", "changed")
    assert len(writes(sim, "NEWUSDT")) == 1
    assert len(actions.of("NEWUSDT", "changed")) == 1
    assert row.reason == "turned on"


async def _connected(session: BybitSession, actions: Actions) -> None:
    await actions.wait_event(StreamConnected)


async def test_no_second_write_while_one_is_in_flight(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    async with guarding(session, actions):
        await _connected(session, actions)
        sim.inject(Fault.stall(0.2), path=WRITE)
        sim.set_position("SLOWUSDT", size=1)
        # The write is held by the server; meanwhile the position changes again and again.
        await _write_arrived(sim, 1)
        for size in (2, 3, 4):
            sim.set_position("SLOWUSDT", size=size)
        await actions.wait("SLOWUSDT", "changed")
        sim.set_position("OTHERUSDT", size=1)
        await actions.wait("OTHERUSDT", "changed")
    assert len(writes(sim, "SLOWUSDT")) == 1


async def _write_arrived(sim: BybitSimulator, n: int) -> None:
    while sum(r.path == WRITE for r in sim.requests) < n:
        await sim.wait_for_requests(len(sim.requests) + 1)


async def test_a_stale_push_after_a_confirmed_write_is_read_not_written(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.set_position("BTCUSDT", size=1)
    # Pushes lag behind REST answers, as they may on Bybit: a push of the state
    # before the write arrives after the write's answer.
    sim.stream.push_delay = 0.5
    async with guarding(session, actions, pong_timeout=10.0):
        await _connected(session, actions)
        sim.stream.push_raw(push("BTCUSDT", 1, autoAddMargin=0))
        # The simulator's own push of the write comes long after: were it due
        # with the stale one (a loop late by the few ms between them), the
        # stream would hand on only the newer state, and there is nothing to read.
        sim.stream.push_delay = 30.0
        await actions.wait("BTCUSDT", "changed")
        (row,) = await actions.wait("BTCUSDT", "unchanged")
    assert row.reason == "already on (read)"
    assert len(writes(sim, "BTCUSDT")) == 1
    reads = [r for r in sim.requests if r.path == POSITION_LIST_PATH and "BTCUSDT" in r.query]
    assert len(reads) == 1


async def test_a_real_change_after_the_write_is_written_again(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.set_position("BTCUSDT", size=1)
    async with guarding(session, actions):
        await actions.wait("BTCUSDT", "changed")
        sim.set_position("BTCUSDT", auto_add_margin=0)  # someone turned it off
        await actions.wait("BTCUSDT", "changed", 2)
    assert len(writes(sim, "BTCUSDT")) == 2
    assert sim.auto_add_margin("BTCUSDT") == 1


async def test_refused_positions_are_skipped_once(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.set_position("XRPUSDT", size=1, margin_mode="cross")
    async with guarding(session, actions):
        (row,) = await actions.wait("XRPUSDT", "skipped")
        for size in (2, 3):
            sim.set_position("XRPUSDT", size=size)
        sim.set_position("ETHUSDT", size=1)
        await actions.wait("ETHUSDT", "changed")
        # Once isolated, it is written.
        sim.set_position("XRPUSDT", margin_mode="isolated")
        await actions.wait("XRPUSDT", "changed")
    assert row.ret_code == 110076
    assert len(writes(sim, "XRPUSDT")) == 2


async def test_changes_while_disconnected_are_caught_on_reconnect(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.set_position("BTCUSDT", size=1, auto_add_margin=1)
    async with guarding(session, actions):
        await actions.wait("BTCUSDT", "unchanged")
        sim.stream.drop_all()
        # No connection is up: these changes reach the guard only through the read.
        sim.set_position("BTCUSDT", auto_add_margin=0)
        sim.set_position("ETHUSDT", size=1)
        await actions.wait_event(StreamReconnected)
        await actions.wait("BTCUSDT", "changed")
        await actions.wait("ETHUSDT", "changed")
    assert len(writes(sim, "BTCUSDT")) == 1
    assert len(writes(sim, "ETHUSDT")) == 1


async def test_a_failed_write_is_tried_again(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.inject(Fault.ret_code(10005), path=WRITE)  # permission denied: not retried by the session
    sim.set_position("BTCUSDT", size=1)
    async with guarding(session, actions):
        (failed,) = await actions.wait("BTCUSDT", "failed")
        await actions.wait("BTCUSDT", "changed")
    assert failed.ret_code == 10005
    assert len(writes(sim, "BTCUSDT")) == 2
    assert sim.auto_add_margin("BTCUSDT") == 1


async def test_named_symbols_only_and_closed_ones_too(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.set_position("ETHUSDT", size=1)
    async with guarding(session, actions, True, ["BTCUSDT"]):
        await actions.wait("BTCUSDT", "changed")  # not open, but named
        sim.set_position("SOLUSDT", size=1)
        sim.set_position("BTCUSDT", size=1, auto_add_margin=0)
        await actions.wait("BTCUSDT", "changed", 2)
    assert writes(sim, "ETHUSDT") == []
    assert writes(sim, "SOLUSDT") == []


async def test_hedge_mode_sides_are_written_each(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.set_position("ETHUSDT", hedge=True, size=1)
    async with guarding(session, actions):
        rows = await actions.wait("ETHUSDT", "changed", 2)
    assert sorted(int(r.position_idx or 0) for r in rows) == [1, 2]
    assert sorted(w["positionIdx"] for w in writes(sim, "ETHUSDT")) == [1, 2]
    assert sim.auto_add_margin("ETHUSDT", 1) == sim.auto_add_margin("ETHUSDT", 2) == 1


async def test_off_turns_it_off(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.set_position("BTCUSDT", size=1, auto_add_margin=1)
    async with guarding(session, actions, False):
        (row,) = await actions.wait("BTCUSDT", "changed")
    assert row.reason == "turned off"
    assert sim.auto_add_margin("BTCUSDT") == 0


async def test_usdc_positions_are_not_guarded_for_usdt(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    async with guarding(session, actions):
        await _connected(session, actions)
        sim.set_position("BTCPERP", size=1)
        sim.set_position("ETHUSDT", size=1)
        await actions.wait("ETHUSDT", "changed")
    assert writes(sim, "BTCPERP") == []


async def test_cancelling_leaves_nothing_behind(
    sim: BybitSimulator, session: BybitSession, actions: Actions
) -> None:
    sim.inject(Fault.stall(None), path=WRITE)  # held until the simulator closes
    sim.set_position("BTCUSDT", size=1)
    async with guarding(session, actions) as task:
        await _write_arrived(sim, 1)
        assert client_tasks()
    assert task.cancelled()
    assert client_tasks() == []
    assert session.stats().calls_failed.get("cancelled", 0) >= 1


async def test_a_refused_key_raises(
    sim: BybitSimulator, make_session: MakeSession, actions: Actions
) -> None:
    session = make_session(api_secret="wrong")
    with pytest.raises(AuthenticationError):
        await session.guard_auto_add_margin(on_action=actions, **FAST)
    assert sim.stream.connects == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"on": 2}, ValueError),
        ({"on": "yes"}, TypeError),
        ({"symbols": "BTCUSDT"}, TypeError),
        ({"symbols": ["btcusdt"]}, ValueError),
        ({"settle_coin": "usdt"}, ValueError),
        ({"on_action": 3}, TypeError),
    ],
)
async def test_bad_arguments_fail_before_any_io(
    sim: BybitSimulator, session: BybitSession, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await session.guard_auto_add_margin(**kwargs)
    assert sim.requests == []


class _HeldSession:
    """A session whose writes wait for the test, and whose reads answer a set flag.

    The guard's decisions alone, with the order of events fixed by the test: no
    socket is involved, so nothing here stands in for one.
    """

    def __init__(self) -> None:
        self.flag = 0
        self.writes = 0
        self.reads = 0
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.written = asyncio.Event()

    def _stream_link(self) -> Any:
        from bybit_async.stream import StreamLink

        return StreamLink("ws://held", None, "k", str)  # type: ignore[arg-type]

    async def set_auto_add_margin(self, symbol: str, flag: bool, **kwargs: Any) -> Any:
        from bybit_async import ApiResponse

        self.writes += 1
        self.entered.set()
        await self.release.wait()
        self.release.clear()
        self.flag = int(flag)
        self.written.set()
        return ApiResponse(0, "OK", {}, {}, 0, None, None, None, True, 1)

    async def get_positions(self, **kwargs: Any) -> list[Any]:
        self.reads += 1
        return [_position("BTCUSDT", self.flag)]


def _position(symbol: str, flag: int) -> Any:
    from bybit_async import Position

    item = {"symbol": symbol, "positionIdx": 0, "size": "1", "tradeMode": 1, "autoAddMargin": flag}
    return Position.from_json(item)


async def test_a_change_while_the_write_is_in_flight_is_not_lost() -> None:
    from bybit_async.guard import _Guard

    held = _HeldSession()
    rows: list[EnsureRow] = []
    guard = _Guard(held, True, None, "USDT", rows.append, 0.001, 0.005)  # type: ignore[arg-type]
    guard.consider(_position("BTCUSDT", 0), "update")
    await held.entered.wait()
    held.entered.clear()
    guard.consider(_position("BTCUSDT", 0), "update")  # while the write is held
    held.release.set()
    await held.written.wait()
    held.written.clear()
    # Someone turned it off right after the write: the update that came meanwhile
    # is read, the read shows it off, so it is written again.
    held.flag = 0
    await asyncio.wait_for(held.entered.wait(), 10)  # a bound, should the write never come
    held.release.set()
    await held.written.wait()
    await asyncio.gather(*guard.tasks)
    assert (held.writes, held.reads) == (2, 1)
    assert [r.status for r in rows] == ["changed", "changed"]
