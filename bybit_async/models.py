"""Values that requests take and return."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["ApiResponse", "PositionIdx"]


class PositionIdx(enum.IntEnum):
    """Which position a request is about: Bybit's ``positionIdx``."""

    ONE_WAY = 0
    HEDGE_BUY = 1
    HEDGE_SELL = 2


# Not frozen: a frozen dataclass sets each field through object.__setattr__,
# which costs a microsecond on every response.
@dataclass(slots=True)
class ApiResponse:
    """A successful answer from Bybit: the envelope and the rate-limit headers."""

    #: ``retCode``: 0, or a code that a not-modified answer carries.
    ret_code: int
    #: ``retMsg``: Bybit's message, which varies (``OK``, ``success``, empty).
    ret_msg: str
    #: ``result``: the endpoint's payload (``{}`` for set-auto-add-margin).
    result: Any
    #: ``retExtInfo``.
    ret_ext_info: Any
    #: ``time``: the server's time of the answer in Unix ms, if given.
    time: int | None
    #: ``X-Bapi-Limit``: the endpoint's limit per window, if sent.
    limit: int | None = None
    #: ``X-Bapi-Limit-Status``: requests left in the current window, if sent.
    limit_status: int | None = None
    #: ``X-Bapi-Limit-Reset-Timestamp``: server time in ms when the window resets, if sent.
    limit_reset_timestamp: int | None = None
    #: False when Bybit answered that the setting already had the requested value.
    modified: bool = True
    #: Attempts it took, retries included.
    attempts: int = 1
