"""A local Bybit V5 REST simulator for tests and benchmarks.

`BybitSimulator` serves ``GET /v5/market/time``,
``POST /v5/position/set-auto-add-margin`` and ``GET /v5/position/list`` on a
local port with Bybit's signing, timestamp window, rate limits, instruments
and error codes, keeps each account's positions in memory, records every
request it receives, and misbehaves on demand (see `Fault` and
`NetworkDelay`):

    async with BybitSimulator() as sim:
        sim.inject(Fault.http_status(503))
        ...  # point a client at sim.url with sim.api_key / sim.api_secret
        assert sim.auto_add_margin("BTCUSDT") == 1

``python -m bybit_async.testing`` runs one in the foreground, set up from
flags or a config file, with a control API under ``/_sim/``; see `main`.
The pytest plugin in `bybit_async.testing.pytest_plugin` gives the fixtures
``bybit_simulator`` and ``bybit_session``.

The modules: `server` (requests and routes), `accounts` (keys, UIDs,
positions, instruments), `limits`, `faults` (faults and network delay),
`control` (the ``/_sim/`` API), `stream` (the private WebSocket stream at
``/v5/private``), `cli` (the command line), `protocol`
(paths, messages, default instruments) and `pytest_plugin`.
"""

from __future__ import annotations

from .accounts import Position
from .cli import main
from .faults import Fault, NetworkDelay
from .limits import ENDPOINT_LIMITS
from .protocol import (
    CONTROL_PREFIX,
    DEFAULT_INSTRUMENTS,
    DEFAULT_MESSAGES,
    MARKET_TIME_PATH,
    NOT_MODIFIED_MSG,
    POSITION_LIST_PATH,
    SET_AUTO_ADD_MARGIN_PATH,
    SUCCESS_MESSAGES,
)
from .server import BybitSimulator, RecordedRequest

__all__ = [
    "CONTROL_PREFIX",
    "DEFAULT_INSTRUMENTS",
    "DEFAULT_MESSAGES",
    "ENDPOINT_LIMITS",
    "MARKET_TIME_PATH",
    "NOT_MODIFIED_MSG",
    "POSITION_LIST_PATH",
    "SET_AUTO_ADD_MARGIN_PATH",
    "SUCCESS_MESSAGES",
    "BybitSimulator",
    "Fault",
    "NetworkDelay",
    "Position",
    "RecordedRequest",
    "main",
]
