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
    """A successful answer from Bybit: the envelope and the rate-limit headers.

    :ivar ret_code: ``retCode``: 0, or the code of a not-modified answer.
    :ivar ret_msg: ``retMsg``: Bybit's message, which varies (``OK``, ``success``, empty).
    :ivar result: ``result``: the endpoint's payload, decoded from JSON (``{}`` for
        set-auto-add-margin).
    :ivar ret_ext_info: ``retExtInfo``, decoded from JSON (usually ``{}``).
    :ivar time: ``time``: the server's time of the answer in Unix ms, or None if absent.
    :ivar limit: ``X-Bapi-Limit``: the endpoint's limit per window, or None if not sent
        (public endpoints do not send it).
    :ivar limit_status: ``X-Bapi-Limit-Status``: requests left in the current window,
        or None if not sent.
    :ivar limit_reset_timestamp: ``X-Bapi-Limit-Reset-Timestamp``: server time in Unix
        ms when the window resets, or None if not sent.
    :ivar modified: False when Bybit answered that the setting already had the
        requested value (an answer listed in ``errors.NOT_MODIFIED``, as for
        set-auto-add-margin); True for every other success.  On reads and on
        endpoints with no not-modified answer it is always True and says
        nothing beyond success.
    :ivar attempts: attempts it took, retries included (1 when the first attempt
        succeeded).
    """

    ret_code: int
    ret_msg: str
    result: Any
    ret_ext_info: Any
    time: int | None
    limit: int | None = None
    limit_status: int | None = None
    limit_reset_timestamp: int | None = None
    modified: bool = True
    attempts: int = 1
