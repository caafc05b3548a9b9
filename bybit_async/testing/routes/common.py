"""What the simulator's route modules share: the `Call`, outcomes and parameter checks."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..accounts import User

if TYPE_CHECKING:
    from ..server import BybitSimulator

_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")

#: (retCode, retMsg, result); retMsg None means the success message.
Outcome = tuple[int, str | None, dict[str, Any]]


@dataclass
class Call:
    """One authenticated request as a handler sees it.

    *user* is None for public (market) endpoints.  *params* are the query
    string's (strings, each name once) for GET, the JSON body's object for
    POST.  *now_ms* is the server clock read once for the request.
    """

    sim: BybitSimulator
    user: User | None
    params: dict[str, Any]
    now_ms: int
    api_key: str | None = None

    @property
    def account(self) -> User:
        """The signed request's account."""
        assert self.user is not None
        return self.user


Handler = Callable[[Call], Outcome]


def params_error(problem: str) -> Outcome:
    """Bybit's generic parameter error, retCode 10001."""
    return 10001, f"params error: {problem}", {}


def error(code: int, msg: str | None = None) -> Outcome:
    """An error answer with Bybit's usual message for *code* unless *msg* is given."""
    from ..protocol import default_message

    return code, msg if msg is not None else default_message(code), {}


def ok(result: dict[str, Any] | None = None) -> Outcome:
    """A success answer."""
    return 0, None, {} if result is None else result


class Refused(Exception):
    """Raised by a handler's checks: the request is answered with *code* and *msg*."""

    def __init__(self, code: int, msg: str | None = None) -> None:
        super().__init__(code, msg)
        self.outcome = error(code, msg)


def required(params: Mapping[str, Any], name: str) -> Any:
    """The parameter *name*; Refused with 10001 if it is missing, null or empty."""
    value = params.get(name)
    if value is None or value == "":
        raise Refused(10001, f"params error: {name} is required")
    return value


def category(params: Mapping[str, Any], allowed: tuple[str, ...] = ("linear",)) -> str:
    """The ``category`` parameter, one of *allowed*."""
    value = required(params, "category")
    if value not in allowed:
        raise Refused(10001, f"params error: category only support {', '.join(allowed)}")
    return str(value)


def listed_symbol(call: Call, name: str = "symbol") -> str:
    """The symbol parameter, a listed linear instrument."""
    value = required(call.params, name)
    if value not in call.sim.instruments:
        raise Refused(10001, f"params error: symbol invalid {value}")
    return str(value)


def decimal(params: Mapping[str, Any], name: str, *, signed: bool = False) -> Decimal:
    """A decimal-string parameter (positive unless *signed*)."""
    value = required(params, name)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise Refused(10001, f"params error: {name} must be a decimal string")
    number = Decimal(value)
    if not signed and number <= 0:
        raise Refused(10001, f"params error: {name} must be positive")
    return number


def text(number: Decimal) -> str:
    """*number* as Bybit writes it: plain decimal notation, no exponent, no trailing zeros."""
    if number == number.to_integral_value():
        return str(number.quantize(Decimal(1)))
    return format(number.normalize(), "f")
