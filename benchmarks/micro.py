"""Per-call costs in one process: signing (section 1) and request preparation (section 2).

Every variant runs once per round, in an order that rotates from round to
round, so that a slow moment of the machine hits all of them alike; the
figures are medians over rounds.  The garbage collector is off while a loop
is timed, as :mod:`timeit` does.  Figures are ns per call including the
``for`` loop itself (about 10 ns, not subtracted).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from itertools import repeat

import orjson

from bybit_async.session import BybitSession, auto_add_margin_params
from bybit_async.signing import HmacSigner, RsaSigner

from .common import SET_AUTO_ADD_MARGIN, Config, Json, log, summary

# Shaped like real credentials: Bybit API keys have 18 characters, secrets 36.
BENCH_KEY = "Fx3kT9qLm2Vb7Hc4Nw"
BENCH_SECRET = "Qy8rT2vX9pL4mN7bK3hJ6gF1dS5aZ0wE8cU2"
RECV_WINDOW = 5000

#: What :func:`measure_prepare` mirrors, shown next to its figures.
PREPARE_MIRRORS = (
    "BybitSession.set_auto_add_margin + BybitSession._send up to http.request, signed, "
    "clock synced, rate_limits=None: auto_add_margin_params, _url, orjson.dumps, the "
    "sync and limiter checks, clock.generation, str(clock.now_ms()), "
    "_signer.sign(timestamp.encode() + _key_window + body), "
    "{**_auth_headers, X-BAPI-TIMESTAMP, X-BAPI-SIGN}; no coroutine, retry or aiohttp work"
)

SIGNING_VARIANTS: dict[str, str] = {
    "signer": "HmacSigner(secret).sign(msg): the session's signer",
    "hmac_new": "hmac.new(secret, msg, sha256).hexdigest() per call (the official SDK)",
    "hmac_copy": "one hmac object, .copy() per call",
    "floor": "precomputed inner/outer SHA-256 states, copied (inline, no call)",
    "sha256": "a single sha256(msg).hexdigest()",
}

PREPARE_STEPS: dict[str, str] = {
    "total": "all of it, as the session does it",
    "validate": "auto_add_margin_params(...)",
    "serialize": "orjson.dumps(params)",
    "timestamp": "str(clock.now_ms())",
    "sign": "_signer.sign(timestamp.encode() + _key_window + body)",
    "headers": "{**_auth_headers, X-BAPI-TIMESTAMP, X-BAPI-SIGN}",
}


def signing_message() -> bytes:
    """The string Bybit has signed for set-auto-add-margin: timestamp, key, window, body."""
    body = orjson.dumps(auto_add_margin_params("BTCUSDT", True))
    return f"{time.time_ns() // 1_000_000}{BENCH_KEY}{RECV_WINDOW}".encode() + body


def _rounds(timers: Mapping[str, Callable[[int], float]], rounds: int, calls: int) -> Json:
    """Run every timer once per round in rotating order; return ns/call summaries by name."""
    names = list(timers)
    results: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up: caches, specialization of the loops
        timers[name](max(calls // 10, 100))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                results[name].append(timers[name](calls))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: summary(values) for name, values in results.items()}


def _ratio_summary(numerator: list[float], denominator: list[float]) -> Json:
    # Ratios within a round: both sides saw the same state of the machine.
    return summary([a / b for a, b in zip(numerator, denominator, strict=True)])


def measure_signing(config: Config) -> Json:
    """Section 1: ns per signature for the session's signer and the alternatives."""
    secret = BENCH_SECRET.encode()
    message = signing_message()
    sha256 = hashlib.sha256
    signer = HmacSigner(BENCH_SECRET)
    prototype = hmac.new(secret, digestmod=sha256)
    # The floor: RFC 2104's inner and outer states, computed here and not by the library.
    key = secret.ljust(64, b"\0")
    inner = sha256(bytes(b ^ 0x36 for b in key))
    outer = sha256(bytes(b ^ 0x5C for b in key))

    expected = hmac.new(secret, message, sha256).hexdigest()
    floor_check = inner.copy()
    floor_check.update(message)
    outer_check = outer.copy()
    outer_check.update(floor_check.digest())
    if not signer.sign(message) == outer_check.hexdigest() == expected:
        raise AssertionError("the signing variants disagree")

    def time_signer(n: int) -> float:
        sign, m = signer.sign, message
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            sign(m)
        return (time.perf_counter_ns() - t0) / n

    def time_hmac_new(n: int) -> float:
        new, s, m, h = hmac.new, secret, message, sha256
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            new(s, m, h).hexdigest()
        return (time.perf_counter_ns() - t0) / n

    def time_hmac_copy(n: int) -> float:
        copy, m = prototype.copy, message
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            h = copy()
            h.update(m)
            h.hexdigest()
        return (time.perf_counter_ns() - t0) / n

    def time_floor(n: int) -> float:
        inner_copy, outer_copy, m = inner.copy, outer.copy, message
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            i = inner_copy()
            i.update(m)
            o = outer_copy()
            o.update(i.digest())
            o.hexdigest()
        return (time.perf_counter_ns() - t0) / n

    def time_sha256(n: int) -> float:
        h, m = sha256, message
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            h(m).hexdigest()
        return (time.perf_counter_ns() - t0) / n

    log(f"signing: {config.micro_rounds} rounds x {config.signing_calls} calls x 5 variants")
    timers = {
        "signer": time_signer,
        "hmac_new": time_hmac_new,
        "hmac_copy": time_hmac_copy,
        "floor": time_floor,
        "sha256": time_sha256,
    }
    variants = _rounds(timers, config.micro_rounds, config.signing_calls)
    per_round = {name: variants[name]["values"] for name in variants}
    return {
        "message": message.decode(),
        "message_bytes": len(message),
        "calls_per_round": config.signing_calls,
        "descriptions": SIGNING_VARIANTS,
        "variants": variants,
        "ratios": {
            # How many times faster the signer is than hmac.new per call.
            "hmac_new_over_signer": _ratio_summary(per_round["hmac_new"], per_round["signer"]),
            "hmac_copy_over_signer": _ratio_summary(per_round["hmac_copy"], per_round["signer"]),
            # How close the signer is to the floor (1.0 = no overhead).
            "signer_over_floor": _ratio_summary(per_round["signer"], per_round["floor"]),
            "floor_over_sha256": _ratio_summary(per_round["floor"], per_round["sha256"]),
        },
    }


def measure_prepare(config: Config) -> Json:
    """Section 2: ns to prepare one set-auto-add-margin request, as the session does, no network."""
    session = BybitSession(BENCH_KEY, BENCH_SECRET, base_url="http://127.0.0.1:9", rate_limits=None)
    # As after the first request's clock sync: prepared requests are signed with an offset.
    session.clock.offset_ms = 0
    symbol = "BTCUSDT"
    params = auto_add_margin_params(symbol, True, category="linear", position_idx=None)
    payload = orjson.dumps(params)
    timestamp = str(session.clock.now_ms())
    signature = session._signer.sign(timestamp.encode() + session._key_window + payload)
    check = hmac.new(
        BENCH_SECRET.encode(),
        f"{timestamp}{BENCH_KEY}{RECV_WINDOW}".encode() + payload,
        hashlib.sha256,
    ).hexdigest()
    if signature != check:
        raise AssertionError("the mirrored preparation signs something else than Bybit expects")

    def time_total(n: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            # BybitSession.set_auto_add_margin
            params = auto_add_margin_params(symbol, True, category="linear", position_idx=None)
            _url = session._url(SET_AUTO_ADD_MARGIN)
            payload = orjson.dumps(params)
            # BybitSession._send, signed, after the first sync, without a limiter
            clock = session._clock
            if clock.offset_ms is None or session._limiter is not None:
                raise AssertionError("the session is not in the state measured")
            _generation = clock.generation
            timestamp = str(clock.now_ms())
            signature = session._signer.sign(timestamp.encode() + session._key_window + payload)
            _headers = {
                **session._auth_headers,
                "X-BAPI-TIMESTAMP": timestamp,
                "X-BAPI-SIGN": signature,
            }
        return (time.perf_counter_ns() - t0) / n

    def time_validate(n: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            auto_add_margin_params(symbol, True, category="linear", position_idx=None)
        return (time.perf_counter_ns() - t0) / n

    def time_serialize(n: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            orjson.dumps(params)
        return (time.perf_counter_ns() - t0) / n

    def time_timestamp(n: int) -> float:
        clock = session._clock
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            str(clock.now_ms())
        return (time.perf_counter_ns() - t0) / n

    def time_sign(n: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            session._signer.sign(timestamp.encode() + session._key_window + payload)
        return (time.perf_counter_ns() - t0) / n

    def time_headers(n: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            _headers = {
                **session._auth_headers,
                "X-BAPI-TIMESTAMP": timestamp,
                "X-BAPI-SIGN": signature,
            }
        return (time.perf_counter_ns() - t0) / n

    log(f"prepare: {config.micro_rounds} rounds x {config.prepare_calls} calls x 6 timers")
    try:
        steps = _rounds(
            {
                "total": time_total,
                "validate": time_validate,
                "serialize": time_serialize,
                "timestamp": time_timestamp,
                "sign": time_sign,
                "headers": time_headers,
            },
            config.micro_rounds,
            config.prepare_calls,
        )
    finally:
        asyncio.run(session.close())
    return {
        "mirrors": PREPARE_MIRRORS,
        "calls_per_round": config.prepare_calls,
        "descriptions": PREPARE_STEPS,
        "steps": steps,
    }


#: RSA key sizes measured.  RSA costs about a thousand HMACs, so rounds are short.
RSA_KEY_SIZES = (2048, 4096)
_RSA_CALLS = 200


def measure_rsa_signing(config: Config) -> Json:
    """Section 1b: µs per signature with a self-made RSA key, next to the HMAC signer."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        return {"available": False, "reason": "cryptography is not installed"}
    message = signing_message()
    rounds = max(3, config.micro_rounds // 3)
    calls = _RSA_CALLS if config.name == "full" else _RSA_CALLS // 4

    def timer(sign: Callable[[bytes], str]) -> Callable[[int], float]:
        def run(n: int) -> float:
            t0 = time.perf_counter_ns()
            for _ in repeat(None, n):
                sign(message)
            return (time.perf_counter_ns() - t0) / n

        return run

    # Interleaved in the same rounds as the HMAC signer, so the ratio compares like with like.
    timers = {"hmac": timer(HmacSigner(BENCH_SECRET).sign)}
    for bits in RSA_KEY_SIZES:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        timers[f"rsa{bits}"] = timer(RsaSigner(pem).sign)
    log(f"rsa signing: {rounds} rounds x {calls} calls x {len(timers)} variants")
    return {
        "available": True,
        "message_bytes": len(message),
        "calls_per_round": calls,
        "variants": _rounds(timers, rounds, calls),
    }
