"""The no-keys demo: 50 symbols through a real session against the built-in simulator."""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import BybitAPIError
from .models import ApiResponse
from .session import BybitSession
from .testing import BybitSimulator

__all__ = ["LIMIT", "SYMBOLS", "run_demo", "summary_line"]

#: The symbols the demo sets, in the order it reports them.
SYMBOLS = [
    f"{base}USDT"
    for base in [
        "BTC",
        "ETH",
        "SOL",
        "XRP",
        "DOGE",
        "ADA",
        "AVAX",
        "LINK",
        "DOT",
        "TRX",
        "TON",
        "SHIB",
        "LTC",
        "BCH",
        "NEAR",
        "UNI",
        "APT",
        "ICP",
        "ETC",
        "FIL",
        "ATOM",
        "ARB",
        "OP",
        "INJ",
        "SUI",
        "SEI",
        "TIA",
        "STX",
        "IMX",
        "HBAR",
        "VET",
        "MKR",
        "AAVE",
        "GRT",
        "RUNE",
        "ALGO",
        "EGLD",
        "SAND",
        "MANA",
        "AXS",
        "FTM",
        "THETA",
        "FLOW",
        "CHZ",
        "KAVA",
        "ZIL",
        "ENS",
        "LDO",
        "CRV",
        "DYDX",
    ]
]


#: The endpoint's limit the simulator enforces, per rolling second.
LIMIT = 10


def summary_line(
    ok: int, failed: int, elapsed: float, *, busiest: int, rejected: int, lowest_left: int | None
) -> str:
    """The demo's last line: what happened, and how the rate limit was kept.

    No average rate: 50 requests in 4 s average 12/s against a limit of 10
    per rolling second without breaking it (the first 10 go at once, then 10
    as each second rolls on); the busiest rolling second at the server is
    what the limit bounds.
    """
    return (
        f"{ok} ok, {failed} failed in {elapsed:.2f} s; busiest rolling second at the "
        f"server: {busiest} requests (limit {LIMIT}); 10006 answers: {rejected}; "
        f"lowest X-Bapi-Limit-Status seen: {lowest_left}"
    )


async def run_demo(out: Callable[[str], None] = print) -> int:
    """Run the demo, writing lines with *out*; return how many symbols failed."""
    async with BybitSimulator() as sim:
        # A few positions the endpoint refuses or has nothing to change on,
        # so the demo shows each kind of outcome.
        sim.set_position("XRPUSDT", margin_mode="cross")
        sim.set_position("DOGEUSDT", margin_mode="cross")
        sim.set_position("ETHUSDT", auto_add_margin=1)
        async with BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as session:
            out(f"simulator at {sim.url}; setting auto-add-margin on {len(SYMBOLS)} symbols")
            started = time.perf_counter()
            outcomes = await session.set_auto_add_margin_many(SYMBOLS, True)
            elapsed = time.perf_counter() - started

    failed = 0
    lowest_left: int | None = None
    for symbol, outcome in zip(SYMBOLS, outcomes, strict=True):
        if isinstance(outcome, ApiResponse):
            what = "set" if outcome.modified else "already on"
            if outcome.limit_status is not None:
                left = outcome.limit_status
                lowest_left = left if lowest_left is None else min(lowest_left, left)
            out(f"  {symbol:<10} {what:<11} retCode {outcome.ret_code}")
        else:
            failed += 1
            if isinstance(outcome, BybitAPIError):
                detail = f"retCode {outcome.ret_code}: {outcome.ret_msg}"
            else:
                detail = str(outcome)
            out(f"  {symbol:<10} {'failed':<11} {detail}")
    out(
        summary_line(
            len(SYMBOLS) - failed,
            failed,
            elapsed,
            busiest=sim.max_in_window("/v5/position/set-auto-add-margin", 1.0),
            rejected=sim.count(ret_code=10006),
            lowest_left=lowest_left,
        )
    )
    return failed
