"""Market endpoints: public, limited per IP only."""

from __future__ import annotations

from ..protocol import MARKET_TIME_PATH
from . import Call, Handler, Outcome, ok


def market_time(call: Call) -> Outcome:
    """``GET /v5/market/time``: the server clock in seconds and nanoseconds, as strings."""
    ns = call.sim.server_time_ns()
    return ok({"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)})


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", MARKET_TIME_PATH): market_time,
}
