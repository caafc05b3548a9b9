"""The ``bybit-async guard-auto-add-margin`` command, run as a subprocess against the simulator."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bybit_async.testing import SET_AUTO_ADD_MARGIN_PATH, BybitSimulator

from .test_cli import (
    DEADLINE,
    EXIT_AFTER_SIGINT,
    FAST,
    assert_cli_page_documents_every_option,
    cli_env,
    finish,
    killed_on_failure,
    run,
    sigint_deliverable,
)
from .test_cli import start as start_command

GUARD = "guard-auto-add-margin"
WRITE = SET_AUTO_ADD_MARGIN_PATH


@pytest.fixture
async def sim() -> AsyncIterator[BybitSimulator]:
    async with BybitSimulator(endpoint_limits={WRITE: 1000}, instruments=None) as simulator:
        yield simulator


async def start(sim: BybitSimulator, *args: str) -> asyncio.subprocess.Process:
    with sigint_deliverable():
        return await start_command(
            GUARD,
            *args,
            "--base-url",
            sim.url,
            *FAST,
            env=cli_env(sim),
        )


async def line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    text = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
    assert text, "the command ended early"
    record: dict[str, Any] = json.loads(text)
    return record


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_json_lines_per_action_then_sigterm(sim: BybitSimulator) -> None:
    sim.set_position("AAAUSDT", size=1, auto_add_margin=1)
    sim.set_position("BBBUSDT", size=1)
    sim.set_position("XRPUSDT", size=1, margin_mode="cross")
    proc = await start(sim, "--on", "--json")
    async with killed_on_failure(proc):
        first = {r["symbol"]: r for r in [await line(proc) for _ in range(3)]}
        assert first["AAAUSDT"]["status"] == "unchanged"
        assert first["BBBUSDT"]["status"] == "changed"
        assert first["XRPUSDT"]["status"] == "skipped"
        assert {r["trigger"] for r in first.values()} == {"reconcile"}
        # A position opened later is written as its push arrives.
        sim.set_position("NEWUSDT", size=2)
        opened = await line(proc)
    proc.send_signal(signal.SIGTERM)
    ran = await finish(proc, EXIT_AFTER_SIGINT)
    assert ran.status == 143, ran.err
    ran.assert_clean()
    assert (opened["symbol"], opened["status"], opened["trigger"]) == (
        "NEWUSDT",
        "changed",
        "update",
    )
    assert opened["written"] is True
    assert set(ran.summary()) >= {"requests", "elapsed_s"}
    assert "terminated (SIGTERM): 4 actions" in ran.errors
    assert sim.auto_add_margin("NEWUSDT") == 1
    assert sim.auto_add_margin("BBBUSDT") == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_table_then_ctrl_c(sim: BybitSimulator) -> None:
    sim.set_position("BBBUSDT", size=1)
    proc = await start(sim, "--on")
    async with killed_on_failure(proc):
        while sim.count(WRITE) < 1:
            await asyncio.wait_for(sim.wait_for_requests(len(sim.requests) + 1), DEADLINE)
    proc.send_signal(signal.SIGINT)
    ran = await finish(proc, EXIT_AFTER_SIGINT)
    assert ran.status == 130, ran.err
    assert "interrupted:" in ran.errors
    assert "action" in ran.out
    assert "requests:" in ran.out


async def test_refused_key_exits_1(sim: BybitSimulator) -> None:
    env = {**cli_env(sim), "BYBIT_API_SECRET": "s3cr3t-not-this-one"}
    ran = await run(GUARD, "--on", "--json", "--base-url", sim.url, *FAST, env=env)
    assert ran.status == 1, ran.err
    assert "signature" in ran.errors
    assert "s3cr3t" not in ran.out + ran.err
    assert sim.stream.connects == 1


async def test_usage_errors_exit_2_before_any_request(sim: BybitSimulator) -> None:
    for args in (("--on", "--settle-coin", "usdt"), ("btcusdt", "--on"), ("--on", "--off")):
        ran = await run(GUARD, *args, "--base-url", sim.url, env=cli_env(sim))
        assert ran.status == 2, (args, ran.err)
    assert sim.requests == []


async def test_help_documents_exit_status() -> None:
    ran = await run(GUARD, "--help", env=cli_env())
    assert ran.status == 0
    text = " ".join(ran.out.split())
    assert "143 stopped by SIGTERM" in text
    for option in ("--settle-coin", "--json", "--on", "--off"):
        assert option in ran.out


async def test_cli_page_documents_every_option() -> None:
    await assert_cli_page_documents_every_option(GUARD)
