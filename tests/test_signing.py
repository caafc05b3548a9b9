"""The HMAC signer against the standard library and a fixed vector."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bybit_async import HmacSigner

keys = st.one_of(
    st.binary(min_size=1, max_size=16),
    st.binary(min_size=64, max_size=64),
    st.binary(min_size=65, max_size=300),
)


@given(key=keys, message=st.binary(max_size=2048))
def test_matches_hmac_new(key: bytes, message: bytes) -> None:
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    assert HmacSigner(key).sign(message) == expected


@given(key=st.text(min_size=1, max_size=100), message=st.binary(max_size=256))
def test_str_secret_is_utf8(key: str, message: bytes) -> None:
    expected = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
    assert HmacSigner(key).sign(message) == expected


def test_fixed_vector() -> None:
    # timestamp + api_key + recv_window + body, as Bybit signs a POST.
    message = (
        b"1675255134857"
        b"xxxxxxxxxxxxxxxxxx"
        b"5000"
        b'{"category":"linear","symbol":"BTCUSDT","autoAddMargin":1}'
    )
    signer = HmacSigner("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
    assert signer.sign(message) == (
        "1d8ceff399e360f51bf98a523fdc9f7b13d84bd7385cc43d111dd05809979336"
    )


def test_signer_is_reusable() -> None:
    signer = HmacSigner(b"secret")
    assert signer.sign(b"a") == signer.sign(b"a") != signer.sign(b"b")


def test_repr_hides_secret() -> None:
    assert "hunter2" not in repr(HmacSigner("hunter2"))


@pytest.mark.parametrize("secret", ["", b""])
def test_empty_secret_rejected(secret: str | bytes) -> None:
    with pytest.raises(ValueError, match="empty"):
        HmacSigner(secret)


def test_secret_type_checked() -> None:
    with pytest.raises(TypeError):
        HmacSigner(123)  # type: ignore[arg-type]
