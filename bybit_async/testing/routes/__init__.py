"""The endpoints the simulator answers itself, one module per section of Bybit's docs.

Each handler takes a `Call` (the simulator, the account, the parsed
parameters) and returns an `Outcome`: ``(retCode, retMsg, result)``, retMsg
``None`` meaning the success message.  `ROUTES` is the one table of them,
keyed by method and path.  Authentication, limits, faults and the envelope
are the server's; a handler sees only requests that passed them.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import account, asset, market, order, position, user
from .common import Call, Handler, Outcome, Refused

__all__ = ["ROUTES", "Call", "Handler", "Outcome", "Refused"]


def _table() -> Mapping[tuple[str, str], Handler]:
    table: dict[tuple[str, str], Handler] = {}
    for module in (market, account, position, asset, order, user):
        for (method, path), handler in module.ROUTES.items():
            table[method, path] = handler
    return table


#: (method, path) -> handler: every endpoint the simulator answers itself.
ROUTES: Mapping[tuple[str, str], Handler] = _table()
