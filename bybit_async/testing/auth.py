"""Authentication as Bybit checks it: the API key, the timestamp window and the signature."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import NamedTuple

from .accounts import Accounts, ApiKey
from .protocol import DEFAULT_MESSAGES

#: X-BAPI-RECV-WINDOW when the header is absent, milliseconds.
DEFAULT_RECV_WINDOW = 5000
# Bybit rejects timestamps this many ms or more ahead of its clock.
_MAX_AHEAD_MS = 1000
# Sign types: 2 is HMAC-SHA256 or RSA by the key; Bybit's older clients send none.
_SIGN_TYPES = ("2",)


class Rejection(NamedTuple):
    """Why a request is refused: HTTP *status*, and retCode and retMsg (*code* None: plain text)."""

    status: int
    code: int | None
    msg: str


def authenticate(
    accounts: Accounts,
    method: str,
    headers: Mapping[str, str],
    query: str,
    body: bytes,
    server_time: int,
) -> ApiKey | Rejection:
    """Return the request's `ApiKey`, or why it is refused.

    The string to sign uses the headers exactly as sent (an absent
    ``X-BAPI-RECV-WINDOW`` contributes nothing); GET signs the query string
    exactly as sent, percent-encoding and order included, POST the body.
    """
    api_key = headers.get("X-BAPI-API-KEY")
    ts_text = headers.get("X-BAPI-TIMESTAMP")
    sign = headers.get("X-BAPI-SIGN")
    if api_key is None or ts_text is None or sign is None:
        missing = [
            name
            for name, value in (
                ("X-BAPI-API-KEY", api_key),
                ("X-BAPI-TIMESTAMP", ts_text),
                ("X-BAPI-SIGN", sign),
            )
            if value is None
        ]
        return Rejection(401, None, f"401 Unauthorized: missing {', '.join(missing)}")
    key = accounts.keys.get(api_key)
    if key is None:
        return Rejection(200, 10003, DEFAULT_MESSAGES[10003])
    rw_text = headers.get("X-BAPI-RECV-WINDOW")
    recv_window = DEFAULT_RECV_WINDOW if rw_text is None else parse_uint(rw_text)
    if recv_window is None:
        return Rejection(200, 10001, "params error: X-BAPI-RECV-WINDOW must be an integer")
    ts = parse_uint(ts_text)
    if ts is None:
        return Rejection(200, 10001, "params error: X-BAPI-TIMESTAMP must be an integer")
    if not server_time - recv_window <= ts < server_time + _MAX_AHEAD_MS:
        return Rejection(
            200,
            10002,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts}],server_timestamp[{server_time}],recv_window[{recv_window}]",
        )
    sign_type = headers.get("X-BAPI-SIGN-TYPE")
    if sign_type is not None and sign_type not in _SIGN_TYPES:
        return Rejection(200, 10004, f"error sign! unsupported X-BAPI-SIGN-TYPE {sign_type!r}")
    payload = body if method == "POST" else query.encode()
    origin = (ts_text + api_key + (rw_text or "")).encode() + payload
    signature = sign.encode("utf-8", "backslashreplace")
    if key.rsa_verify is not None:
        valid = key.rsa_verify(origin, signature)
    else:
        valid = hmac.compare_digest(key.hmac_hex(origin), signature)
    if not valid:
        shown = origin.decode("utf-8", "replace")
        return Rejection(200, 10004, f"error sign! origin_string[{shown}]")
    return key


def parse_uint(text: str) -> int | None:
    """*text* as a non-negative integer of ASCII digits, or None."""
    # int() would also take signs, spaces, underscores and non-ASCII digits.
    if text.isascii() and text.isdigit() and len(text) <= 19:
        return int(text)
    return None
