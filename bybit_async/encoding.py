"""How request parameters are encoded: the query string of a GET, the JSON body of a POST.

Both are signed exactly as sent, so each value has one text: `encode_query`
refuses what a query cannot say plainly, and `json_body` what JSON cannot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

__all__ = ["encode_query", "json_body"]


def _query_value(key: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)  # an IntEnum's digits, not its name
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"query parameter {key!r} must be finite, got {value!r}")
        # repr is the shortest text that round-trips; Decimal drops the exponent.
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"query parameter {key!r} must be finite, got {value!r}")
        return format(value, "f")
    raise TypeError(
        f"query parameter {key!r} must be a str, int, float, Decimal, bool or None, "
        f"got {type(value).__name__}"
    )


def encode_query(params: Mapping[str, Any]) -> str:
    """Return *params* as the query string a GET request sends and signs.

    None values are left out, booleans are ``true``/``false``, numbers plain
    decimal text (never an exponent), strings as they are.  Raises `TypeError`
    for any other value and `ValueError` for NaN or an infinity.
    """
    pairs = []
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"query parameter names must be str, got {key!r}")
        if value is not None:
            pairs.append((key, _query_value(key, value)))
    return urlencode(pairs)


def json_body(value: Any, where: str = "params") -> Any:
    """Return *value* ready for orjson: any mapping as a dict, `Decimal` as plain text.

    Raises `ValueError` for NaN and infinities, which JSON cannot hold (orjson
    would send them as ``null``, signed).
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r} (JSON has no NaN)")
    elif isinstance(value, Decimal):
        # Bybit's numbers are strings in JSON; a JSON number would lose digits.
        if not value.is_finite():
            raise ValueError(f"{where} must be finite, got {value!r} (JSON has no NaN)")
        return format(value, "f")
    elif isinstance(value, Mapping):
        return {k: json_body(v, f"{where}[{k!r}]") for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        return [json_body(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
