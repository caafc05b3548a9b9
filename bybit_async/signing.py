"""Request signing for Bybit V5.

Bybit signs ``timestamp + api_key + recv_window + payload``, where *payload* is
the exact body of a POST or the exact query string of a GET.  HMAC keys sign
with lowercase hex HMAC-SHA256 and ``X-BAPI-SIGN-TYPE: 2``.

:class:`HmacSigner` computes HMAC's inner and outer SHA-256 states once per
secret (RFC 2104) and copies them for each message, which skips the key
schedule that ``hmac.new`` repeats on every call.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

__all__ = ["HmacSigner", "Signer"]

_BLOCK_SIZE = 64  # SHA-256 block size in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class Signer(Protocol):
    """Turns the string to sign into the value of ``X-BAPI-SIGN``."""

    #: The value of ``X-BAPI-SIGN-TYPE`` that goes with these signatures.
    sign_type: str

    def sign(self, message: bytes) -> str:
        """Return the signature of *message*."""
        ...


class HmacSigner:
    """HMAC-SHA256 signer for a Bybit API secret; the secret is kept only as hash states."""

    __slots__ = ("_inner", "_outer")

    sign_type = "2"

    def __init__(self, secret: str | bytes) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        elif not isinstance(secret, bytes):
            raise TypeError(f"secret must be str or bytes, not {type(secret).__name__}")
        if not secret:
            raise ValueError("secret must not be empty")
        if len(secret) > _BLOCK_SIZE:
            secret = hashlib.sha256(secret).digest()
        key = secret.ljust(_BLOCK_SIZE, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def sign(self, message: bytes) -> str:
        """Return the lowercase hex HMAC-SHA256 of *message*."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(secret=***)"
