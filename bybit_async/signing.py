"""Request signing for Bybit V5.

Bybit signs ``timestamp + api_key + recv_window + payload``, where *payload* is
the exact body of a POST or the exact query string of a GET.  System-made
(HMAC) keys sign with lowercase hex HMAC-SHA256; self-made (RSA) keys with a
base64 RSASSA-PKCS1-v1_5 SHA-256 signature.  Either goes in ``X-BAPI-SIGN``.

`HmacSigner` computes HMAC's inner and outer SHA-256 states once per
secret (RFC 2104) and copies them for each message, which skips the key
schedule that ``hmac.new`` repeats on every call.  `RsaSigner` parses
its PEM key once; it needs the ``cryptography`` package (``bybit-async[rsa]``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = ["HmacSigner", "RsaSigner", "Signer", "looks_like_pem_private_key", "signer_for"]

_BLOCK_SIZE = 64  # SHA-256 block size in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class Signer(Protocol):
    """Turns the string to sign into the value of ``X-BAPI-SIGN``."""

    #: The kind of key: ``"hmac"`` or ``"rsa"``.
    sign_type: str

    def sign(self, message: bytes) -> str:
        """Return the signature of *message*."""
        ...


class HmacSigner:
    """HMAC-SHA256 signer for a Bybit API secret; the secret is kept only as hash states."""

    __slots__ = ("_inner", "_outer")

    sign_type = "hmac"

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


_RSA_EXTRA = "RSA keys need the 'cryptography' package: pip install 'bybit-async[rsa]'"


def _rsa_modules() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise ImportError(_RSA_EXTRA) from None
    return hashes, serialization, padding, rsa


class RsaSigner:
    """RSASSA-PKCS1-v1_5 SHA-256 signer for a self-made Bybit key.

    *private_key_pem* is a PEM private key, PKCS#1 or PKCS#8, encrypted with
    *password* if given.  The key is parsed once; a malformed key, a wrong
    password or a non-RSA key raises `ValueError`.
    """

    __slots__ = ("_hash", "_key", "_padding")

    sign_type = "rsa"

    def __init__(self, private_key_pem: str | bytes, password: str | bytes | None = None) -> None:
        hashes, serialization, padding, rsa = _rsa_modules()
        if isinstance(private_key_pem, str):
            private_key_pem = private_key_pem.encode()
        elif not isinstance(private_key_pem, bytes):
            raise TypeError(
                f"private_key_pem must be str or bytes, not {type(private_key_pem).__name__}"
            )
        if isinstance(password, str):
            password = password.encode()
        try:
            key = serialization.load_pem_private_key(private_key_pem, password=password)
        except TypeError as exc:
            # cryptography says TypeError for a missing or unexpected password.
            raise ValueError(f"cannot load the RSA private key: {exc}") from None
        except ValueError:
            # Its message may quote the PEM; say only what went wrong.
            raise ValueError(
                "cannot load the RSA private key: malformed PEM or wrong password"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"expected an RSA private key, got {type(key).__name__}")
        self._key: RSAPrivateKey = key
        self._padding = padding.PKCS1v15()
        self._hash = hashes.SHA256()

    @property
    def key_size(self) -> int:
        """The key's size in bits."""
        return self._key.key_size

    def sign(self, message: bytes) -> str:
        """Return the base64 RSASSA-PKCS1-v1_5 SHA-256 signature of *message*."""
        return base64.b64encode(self._key.sign(message, self._padding, self._hash)).decode()

    def __repr__(self) -> str:
        return f"RsaSigner(key_size={self.key_size})"


def _pem_header(secret: str | bytes) -> str:
    # The first line of a PEM block, such as "-----BEGIN RSA PRIVATE KEY-----".
    text = secret.decode("ascii", "replace") if isinstance(secret, bytes) else secret
    return text.strip().split("\n", 1)[0]


def looks_like_pem_private_key(secret: str | bytes) -> bool:
    """Return whether *secret* is unmistakably a PEM private key rather than an HMAC secret."""
    header = _pem_header(secret)
    return header.startswith("-----BEGIN ") and "PRIVATE KEY-----" in header


def signer_for(secret: str | bytes) -> Signer:
    """Return the signer for an API secret: RSA for a PEM private key, HMAC otherwise."""
    if looks_like_pem_private_key(secret):
        return RsaSigner(secret)
    if _pem_header(secret).startswith("-----BEGIN "):
        raise ValueError(
            "the secret is a PEM block but not a private key: sign with the private key "
            "and register its public key with Bybit"
        )
    return HmacSigner(secret)
