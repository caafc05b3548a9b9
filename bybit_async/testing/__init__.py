"""A local Bybit V5 REST simulator for tests and benchmarks.

`BybitSimulator` serves Bybit's V5 paths on a local port: every one signed
(market data public) with Bybit's timestamp window and counted against the
IP and per-UID limits of the client's own table; the family around
set-auto-add-margin and what clients call at start-up answered from state it
keeps per account (margin mode, balances, positions, instruments), the rest
from fixture routes; records every request it receives, and misbehaves on
demand (see `Fault` and `NetworkDelay`):

    async with BybitSimulator() as sim:
        sim.inject(Fault.http_status(503))
        ...  # point a client at sim.url with sim.api_key / sim.api_secret
        assert sim.auto_add_margin("BTCUSDT") == 1

``python -m bybit_async.testing`` runs one in the foreground, set up from
flags or a config file, with a control API under ``/_sim/``; see `main`.
The pytest plugin in `bybit_async.testing.pytest_plugin` gives the fixtures
``bybit_simulator`` and ``bybit_session``.

The modules: `server` (the request path and the simulator's methods),
`auth` (signatures and the timestamp window), `routes` (the built-in
answers, one module per section of Bybit's docs), `fixtures` (user routes),
`accounts` (keys, UIDs, positions, instruments), `limits`, `faults` (faults
and network delay), `control` (the ``/_sim/`` API), `stream` (the private WebSocket
stream at ``/v5/private``), `cli` (the command
line), `protocol` (paths, messages, defaults) and `pytest_plugin`.
"""

from __future__ import annotations

from .accounts import DEFAULT_BALANCES, Position
from .cli import main
from .faults import Fault, NetworkDelay
from .fixtures import Fixture
from .limits import ENDPOINT_LIMITS
from .protocol import (
    CONTROL_PREFIX,
    DEFAULT_INSTRUMENTS,
    DEFAULT_MESSAGES,
    DEFAULT_PRICES,
    MARKET_TIME_PATH,
    NOT_MODIFIED_MSG,
    ORDER_CREATE_PATH,
    POSITION_LIST_PATH,
    SET_AUTO_ADD_MARGIN_PATH,
    SUCCESS_MESSAGES,
)
from .requestlog import RecordedRequest
from .server import BybitSimulator

__all__ = [
    "CONTROL_PREFIX",
    "DEFAULT_BALANCES",
    "DEFAULT_INSTRUMENTS",
    "DEFAULT_MESSAGES",
    "DEFAULT_PRICES",
    "ENDPOINT_LIMITS",
    "MARKET_TIME_PATH",
    "NOT_MODIFIED_MSG",
    "ORDER_CREATE_PATH",
    "POSITION_LIST_PATH",
    "SET_AUTO_ADD_MARGIN_PATH",
    "SUCCESS_MESSAGES",
    "BybitSimulator",
    "Fault",
    "Fixture",
    "NetworkDelay",
    "Position",
    "RecordedRequest",
    "main",
]
