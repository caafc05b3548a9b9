"""The ``bybit-async ensure-auto-add-margin`` command, run as a subprocess against the simulator."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bybit_async.testing import POSITION_LIST_PATH, SET_AUTO_ADD_MARGIN_PATH, BybitSimulator, Fault

from .test_cli import (
    DEADLINE,
    EXIT_AFTER_SIGINT,
    FAST,
    Ran,
    assert_cli_page_documents_every_option,
    cli_env,
    finish,
    killed_on_failure,
    run,
    sigint_deliverable,
    start,
)

ENSURE = "ensure-auto-add-margin"
WRITE = SET_AUTO_ADD_MARGIN_PATH
LIST = POSITION_LIST_PATH
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
async def sim() -> AsyncIterator[BybitSimulator]:
    async with BybitSimulator(endpoint_limits={WRITE: 1000}, instruments=None) as simulator:
        yield simulator


def open_positions(sim: BybitSimulator, n: int, flag_on: int) -> list[str]:
    names = [f"E{i:03d}USDT" for i in range(n)]
    for i, name in enumerate(names):
        sim.set_position(name, size=1, auto_add_margin=int(i < flag_on))
    return names


def lines(ran: Ran) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in ran.out.splitlines()]
    return [r for r in records if "summary" not in r]


async def ensure(sim: BybitSimulator, *args: str) -> Ran:
    return await run(ENSURE, *args, "--base-url", sim.url, *FAST, env=cli_env(sim))


async def test_table_plan_then_outcome_writes_only_what_differs(sim: BybitSimulator) -> None:
    names = open_positions(sim, 30, 25)
    sim.set_position("XRPUSDT", margin_mode="cross", size=1)
    ran = await ensure(sim, "--on")
    assert ran.status == 0, ran.err  # a skipped position alone is not a failure
    ran.assert_clean()
    assert "plan: 31 positions (USDT; 1 read): 6 to turn on, 25 already on" in ran.out
    rows = ran.table()
    assert [row[0] for row in rows.values()].count("set") == 5
    assert [rows[name][0] for name in names[:25]] == ["already on"] * 25
    assert rows["XRPUSDT"][:2] == ["skipped", "110076"]
    assert "31 positions in " in ran.out
    assert ": 5 set, 25 already on, 1 skipped" in ran.out
    assert sim.count(WRITE) == 6
    assert sim.count(LIST) == 1


async def test_dry_run_json_prints_the_plan_and_writes_nothing(sim: BybitSimulator) -> None:
    open_positions(sim, 4, 1)
    ran = await ensure(sim, "--off", "--dry-run", "--json")
    assert ran.status == 0, ran.err
    assert sim.count(WRITE) == 0
    assert "plan: 4 positions (USDT; 1 read): 1 to turn off, 3 already off" in ran.err
    objects = lines(ran)
    assert [o["status"] for o in objects] == ["planned", "unchanged", "unchanged", "unchanged"]
    assert objects[0] == {
        "symbol": "E000USDT",
        "position_idx": 0,
        "status": "planned",
        "reason": "to turn off",
        "auto_add_margin": True,
        "size": "1",
        "trade_mode": 1,
        "ok": True,
        "written": False,
        "ret_code": None,
        "attempts": None,
        "error": None,
    }


async def test_named_symbols_hedge_sides_and_a_failure_exit_1(sim: BybitSimulator) -> None:
    sim.set_position("ETHUSDT", hedge=True)
    sim.set_position("ETHUSDT", position_idx=1, size=1, auto_add_margin=1)
    sim.set_position("BTCUSDT", size=1)
    sim.set_position("SOLUSDT", size=1)
    sim.inject(Fault.ret_code(10005), path=WRITE)
    ran = await ensure(sim, "ETHUSDT", "--on", "BTCUSDT", "SOLUSDT")
    assert ran.status == 1, ran.err
    rows = ran.table()
    assert list(rows) == ["ETHUSDT (buy)", "ETHUSDT (sell)", "BTCUSDT", "SOLUSDT"]
    outcomes = sorted(row[0] for row in rows.values())
    assert outcomes == ["already on", "failed", "set", "set"]
    assert sim.count(WRITE) == 3


async def test_named_symbols_with_nothing_open_are_written_without_a_read(
    sim: BybitSimulator,
) -> None:
    sim.set_position("ETHUSDT", hedge=True)  # hedge mode, nothing open
    sim.set_position("XRPUSDT", auto_add_margin=1)  # one-way, nothing open, already on
    ran = await ensure(sim, "ETHUSDT", "XRPUSDT", "BTCUSDT", "--on")
    assert ran.status == 0, ran.err
    ran.assert_clean()
    assert "3 not open, to write without a read" in ran.out
    rows = ran.table()
    assert list(rows) == ["ETHUSDT (buy)", "ETHUSDT (sell)", "XRPUSDT", "BTCUSDT"]
    assert [row[0] for row in rows.values()] == ["set", "set", "already on", "set"]
    # The page, then ETHUSDT's read once Bybit said it is in hedge mode.
    assert sim.count(LIST) == 2
    assert "4 positions in " in ran.out


async def test_json_failure_and_several_settle_coins(sim: BybitSimulator) -> None:
    sim.set_position("BTCPERP", size=1)
    sim.set_position("BTCUSDT", size=1)
    sim.inject(Fault.ret_code(10005), path=WRITE)
    ran = await ensure(sim, "--on", "--settle-coin", "USDT", "--settle-coin", "USDC", "--json")
    assert ran.status == 1
    by_symbol = {o["symbol"]: o for o in lines(ran)}
    assert sorted(by_symbol) == ["BTCPERP", "BTCUSDT"]
    statuses = sorted((o["status"], o["error"]) for o in by_symbol.values())
    assert statuses == [("changed", None), ("failed", "PermissionDeniedError")]
    assert "(USDT, USDC; 2 reads)" in ran.err


async def test_usage_errors_exit_2_before_any_request(sim: BybitSimulator) -> None:
    for args in (("--on", "--settle-coin", "usdt"), ("btcusdt", "--on"), ()):
        ran = await ensure(sim, *args)
        assert ran.status == 2, (args, ran.err)
        ran.assert_clean()
    assert sim.requests == []


async def test_a_failed_read_exits_1_and_writes_nothing(sim: BybitSimulator) -> None:
    sim.inject(Fault.ret_code(10005), path=LIST)
    ran = await ensure(sim, "--on", "--json")
    assert ran.status == 1
    assert "reading positions failed" in ran.err
    # No position to list: only the summary record, so a script still gets one.
    (record,) = [json.loads(line) for line in ran.out.splitlines()]
    assert record["summary"]["requests"] == len(sim.requests)
    assert sim.count(WRITE) == 0


async def test_help_documents_exit_status_and_skipped() -> None:
    ran = await run(ENSURE, "--help", env=cli_env())
    assert ran.status == 0
    text = " ".join(ran.out.split())
    assert "skipped alone is not a failure" in text
    assert "130 interrupted (SIGINT), 143 terminated (SIGTERM)" in text
    for option in ("--settle-coin", "--dry-run", "--classic", "--json"):
        assert option in ran.out
    for option in ("--failures-only", "--summary-only"):
        assert option in ran.out
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    section = " ".join(page[page.index(f"## `{ENSURE}`") :].split())
    assert "143" in section


async def test_failures_only_and_summary_only(sim: BybitSimulator) -> None:
    names = open_positions(sim, 6, 3)
    sim.inject(Fault.ret_code(10005), path=WRITE, times=1000)  # every write fails
    failures, summary, summary_json = await asyncio.gather(
        ensure(sim, "--on", "--failures-only"),
        ensure(sim, "--on", "--summary-only"),
        ensure(sim, "--on", "--summary-only", "--json"),
    )
    assert failures.status == summary.status == summary_json.status == 1
    rows = failures.table()
    assert list(rows) == names[3:], failures.out
    assert [row[0] for row in rows.values()] == ["failed"] * 3
    assert "6 positions in " in failures.out
    assert summary.table() == {}
    assert "6 positions in " in summary.out
    counts, last = (json.loads(line) for line in summary_json.out.splitlines())
    assert (counts["symbols"], counts["failed"], counts["already_on"]) == (6, 3, 3)
    assert "summary" in last


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_sigterm_during_the_reads_still_prints_the_summary(sim: BybitSimulator) -> None:
    open_positions(sim, 3, 1)
    sim.inject(Fault.stall(), path=LIST)
    proc = await start(
        ENSURE,
        "--on",
        "--base-url",
        sim.url,
        *FAST,
        "--json",
        env=cli_env(sim),
    )
    async with killed_on_failure(proc):
        await asyncio.wait_for(sim.wait_for_requests(2), DEADLINE)  # the clock sync, the read
    proc.send_signal(signal.SIGTERM)
    ran = await finish(proc, EXIT_AFTER_SIGINT)
    assert ran.status == 143
    ran.assert_clean()
    assert "terminated (SIGTERM) while reading positions: nothing was written" in ran.errors
    (record,) = [json.loads(line) for line in ran.out.splitlines()]
    assert record["summary"]["calls_failed"] == {"cancelled": 1}
    assert sim.count(WRITE) == 0


async def test_cli_page_documents_every_option() -> None:
    await assert_cli_page_documents_every_option(ENSURE)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_sigint_during_the_writes(sim: BybitSimulator) -> None:
    names = open_positions(sim, 23, 3)
    sim.inject(Fault.stall(0), path=WRITE, times=5)
    sim.inject(Fault.stall(), path=WRITE, times=15)
    with sigint_deliverable():
        proc = await start(
            ENSURE,
            "--on",
            "--base-url",
            sim.url,
            *FAST,
            "--json",
            env=cli_env(sim),
        )
    async with killed_on_failure(proc):
        assert proc.stdout is not None
        # The 3 positions already on, then the 5 answered writes, while the rest hang.
        early = [
            json.loads(await asyncio.wait_for(proc.stdout.readline(), DEADLINE)) for _ in range(8)
        ]
        await asyncio.wait_for(sim.wait_for_requests(1 + 1 + 20), DEADLINE)  # sync, read, 20
    proc.send_signal(signal.SIGINT)
    ran = await finish(proc, EXIT_AFTER_SIGINT)

    assert ran.status == 130
    ran.assert_clean()
    assert "interrupted: 8 of 23 positions done, 15 cancelled" in ran.errors
    assert sorted(o["status"] for o in early) == ["changed"] * 5 + ["unchanged"] * 3
    late = lines(ran)
    assert [o["status"] for o in late] == ["cancelled"] * 15
    assert not any(o["ok"] for o in late)
    assert sorted(o["symbol"] for o in early + late) == names


async def test_summary_counts_the_reads_writes_and_retries(sim: BybitSimulator) -> None:
    open_positions(sim, 5, 2)
    sim.inject(Fault.http_status(503), path=LIST)
    sim.inject(Fault.ret_code(10006), path=WRITE)
    ran = await ensure(sim, "--on", "--json")
    assert ran.status == 0, ran.err
    last = json.loads(ran.out.splitlines()[-1])
    summary = last["summary"]
    assert summary["requests"] == len(sim.requests) == 1 + 2 + 3 + 1
    assert summary["retries"] == {"HTTP 503": 1, "retCode 10006": 1}
    assert summary["rate_limited"] == sim.count(WRITE, ret_code=10006) == 1
    # The table's last line says the same.
    sim.inject(Fault.ret_code(10006), path=LIST)
    table = await ensure(sim, "--off")
    assert table.status == 0, table.err
    assert table.out.splitlines()[-1].startswith(
        f"requests: {len(sim.requests) - 7}, retries: 1 (retCode 10006: 1), 10006 seen: 1, "
    )
