"""Self-made RSA keys: signing, key loading, and the simulator verifying them end to end."""

from __future__ import annotations

import logging
import sys
import traceback

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bybit_async import AuthenticationError, BybitSession, RsaSigner
from bybit_async.testing import BybitSimulator

PATH = "/v5/position/set-auto-add-margin"
PASSWORD = b"correct horse battery staple"


class KeyPair:
    def __init__(self, bits: int) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(
        self,
        fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
        password: bytes | None = None,
    ) -> str:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode()


@pytest.fixture(scope="module")
def key2048() -> KeyPair:
    return KeyPair(2048)


@pytest.fixture(scope="module")
def key4096() -> KeyPair:
    return KeyPair(4096)


async def rsa_session_call(sim: BybitSimulator, pair: KeyPair, **kwargs: object) -> BybitSession:
    sim.add_account("rsa-key", rsa_public_key=pair.public_pem)
    async with BybitSession("rsa-key", base_url=sim.url, **kwargs) as session:  # type: ignore[arg-type]
        resp = await session.set_auto_add_margin("BTCUSDT", True)
    assert resp.ret_code == 0
    assert sim.auto_add_margin("BTCUSDT", api_key="rsa-key") == 1
    return session


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
async def test_pem_as_secret_selects_rsa(
    sim: BybitSimulator, key2048: KeyPair, fmt: serialization.PrivateFormat
) -> None:
    pem = key2048.private_pem(fmt)
    sim.add_account("rsa-key", rsa_public_key=key2048.public_pem)
    async with BybitSession("rsa-key", pem, base_url=sim.url) as session:
        assert session.sign_type == "rsa"
        await session.set_auto_add_margin("BTCUSDT", True)
    assert sim.auto_add_margin("BTCUSDT", api_key="rsa-key") == 1


async def test_4096_bit_key(sim: BybitSimulator, key4096: KeyPair) -> None:
    signer = RsaSigner(key4096.private_pem())
    assert signer.key_size == 4096
    session = await rsa_session_call(sim, key4096, signer=signer)
    assert session.sign_type == "rsa"


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
async def test_encrypted_key_with_password(
    sim: BybitSimulator, key2048: KeyPair, fmt: serialization.PrivateFormat
) -> None:
    pem = key2048.private_pem(fmt, PASSWORD)
    await rsa_session_call(sim, key2048, signer=RsaSigner(pem, password=PASSWORD.decode()))


@pytest.mark.parametrize("password", [b"wrong password", None])
def test_encrypted_key_wrong_or_missing_password(key2048: KeyPair, password: bytes | None) -> None:
    pem = key2048.private_pem(password=PASSWORD)
    with pytest.raises(ValueError, match="RSA private key") as info:
        RsaSigner(pem, password=password)
    assert "MII" not in str(info.value)


async def test_wrong_key_is_10004_after_one_request(sim: BybitSimulator, key2048: KeyPair) -> None:
    other = KeyPair(2048)
    sim.add_account("rsa-key", rsa_public_key=key2048.public_pem)
    async with BybitSession("rsa-key", other.private_pem(), base_url=sim.url) as session:
        with pytest.raises(AuthenticationError) as info:
            await session.set_auto_add_margin("BTCUSDT", True)
    assert info.value.ret_code == 10004
    assert info.value.attempts == 1
    assert sim.count(PATH) == 1


@pytest.mark.parametrize(
    "pem",
    [
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\ntruncated",
    ],
)
async def test_malformed_pem_fails_before_any_request(sim: BybitSimulator, pem: str) -> None:
    with pytest.raises(ValueError, match="RSA private key"):
        BybitSession("rsa-key", pem, base_url=sim.url)
    assert sim.requests == []


def test_public_key_as_secret_is_refused(key2048: KeyPair) -> None:
    with pytest.raises(ValueError, match="public key"):
        BybitSession("rsa-key", key2048.public_pem.decode())


def test_ec_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError, match="RSA"):
        RsaSigner(pem)


def test_hmac_secret_stays_hmac() -> None:
    assert BybitSession("key", "not-a-pem-secret").sign_type == "hmac"


def test_missing_cryptography_names_the_extra(
    key2048: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "cryptography" or name.startswith("cryptography."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(ImportError, match=r"bybit-async\[rsa\]"):
        BybitSession("rsa-key", key2048.private_pem())


async def test_private_key_never_printed(
    sim: BybitSimulator, key2048: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pem = key2048.private_pem()
    body_lines = [line for line in pem.splitlines() if not line.startswith("-----")]
    other = KeyPair(2048)
    sim.add_account("rsa-key", rsa_public_key=other.public_pem)
    session = BybitSession("rsa-key", pem, base_url=sim.url, max_retries=0)
    async with session:
        with pytest.raises(AuthenticationError) as info:
            await session.set_auto_add_margin("BTCUSDT", True)
    shown = "\n".join(
        [
            caplog.text,
            repr(session),
            repr(RsaSigner(pem)),
            str(info.value),
            "".join(traceback.format_exception(info.value)),
        ]
    )
    assert caplog.records
    for line in body_lines:
        assert line not in shown
