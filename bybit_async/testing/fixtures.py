"""Fixture routes: fixed answers the user registers for paths the simulator does not model.

A fixture is answered like any other path: after authentication (market
paths are public) and the IP and per-UID limits of its budget key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .protocol import PUBLIC_PREFIX, V5_PREFIX, default_message

_METHODS = ("GET", "POST")


@dataclass(frozen=True)
class Fixture:
    """The answer to *method* *path*: retCode *ret_code* with *ret_msg* and *result*.

    *ret_msg* None is ``OK`` for a success and Bybit's usual message for an
    error code.  Each answer carries a fresh copy of *result*.
    """

    method: str
    path: str
    result: dict[str, Any] = field(default_factory=dict)
    ret_code: int = 0
    ret_msg: str | None = None

    def __post_init__(self) -> None:
        """Check the fields: a fixture that cannot be served is refused when it is added."""
        if self.method not in _METHODS:
            raise ValueError(f"method must be GET or POST, got {self.method!r}")
        if not isinstance(self.path, str) or not self.path.startswith(V5_PREFIX):
            raise ValueError(f"path must start with {V5_PREFIX}, got {self.path!r}")
        if self.path.startswith(PUBLIC_PREFIX) and self.method != "GET":
            raise ValueError(f"market paths are GET only, got {self.method} {self.path}")
        if not isinstance(self.result, dict):
            kind = type(self.result).__name__
            raise TypeError(f"result must be a JSON object (dict), got {kind}")
        if type(self.ret_code) is not int:
            raise TypeError(f"retCode must be an int, got {self.ret_code!r}")
        if self.ret_msg is not None and not isinstance(self.ret_msg, str):
            raise TypeError(f"retMsg must be a string, got {self.ret_msg!r}")

    def answer(self) -> tuple[int, str | None, dict[str, Any]]:
        """(retCode, retMsg, result); retMsg None stands for the success message."""
        msg = self.ret_msg
        if msg is None and self.ret_code != 0:
            msg = default_message(self.ret_code)
        return self.ret_code, msg, copy.deepcopy(self.result)

    def to_json(self) -> dict[str, Any]:
        """The fixture as the control API and config file write it."""
        out: dict[str, Any] = {"method": self.method, "path": self.path, "result": self.result}
        if self.ret_code:
            out["retCode"] = self.ret_code
        if self.ret_msg is not None:
            out["retMsg"] = self.ret_msg
        return out

    @classmethod
    def from_json(cls, data: Any) -> Fixture:
        """Build a fixture from ``{"method", "path", "result", "retCode", "retMsg"}``."""
        if not isinstance(data, dict):
            raise TypeError("a route must be a JSON object")
        unknown = set(data) - {"method", "path", "result", "retCode", "retMsg"}
        if unknown:
            raise ValueError(f"unknown route keys: {', '.join(sorted(unknown))}")
        if "path" not in data:
            raise ValueError("a route needs a path")
        return cls(
            str(data.get("method", "GET")).upper(),
            data["path"],
            data.get("result", {}),
            data.get("retCode", 0),
            data.get("retMsg"),
        )


class Fixtures:
    """The registered fixtures by method and path."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Fixture] = {}

    def add(self, fixture: Fixture) -> None:
        """Register *fixture*, replacing one for the same method and path."""
        self.routes[fixture.method, fixture.path] = fixture

    def get(self, method: str, path: str) -> Fixture | None:
        """The fixture for *method* *path*, if any."""
        return self.routes.get((method, path))

    def remove(self, method: str, path: str) -> bool:
        """Drop the fixture for *method* *path*; True if there was one."""
        return self.routes.pop((method, path), None) is not None
