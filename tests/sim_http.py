"""Signed requests to any simulator path through plain aiohttp, for the simulator's tests."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from yarl import URL

from bybit_async.testing import BybitSimulator
from tests.test_sim_strict import KEY, SECRET, Reply, signed_headers

__all__ = ["Reply", "call", "public"]


async def call(
    client: aiohttp.ClientSession,
    sim: BybitSimulator,
    method: str,
    path: str,
    params: Mapping[str, Any] | bytes | str | None = None,
    *,
    key: str = KEY,
    secret: str = SECRET,
    skew_ms: int = 0,
) -> Reply:
    """A signed *method* request to *path*: *params* as the query (GET) or JSON body (POST).

    *skew_ms* moves the signed timestamp away from the server's clock.
    """
    if method == "GET":
        text = params if isinstance(params, str) else urlencode(dict(params or {}))
        assert isinstance(text, str)
        headers = _headers(sim, text.encode(), key, secret, skew_ms)
        url = URL(f"{sim.url}{path}" + (f"?{text}" if text else ""), encoded=True)
        async with client.get(url, headers=headers) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.text())
    body = params if isinstance(params, bytes) else orjson.dumps(params or {})
    headers = _headers(sim, body, key, secret, skew_ms)
    async with client.post(sim.url + path, data=body, headers=headers) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.text())


def _headers(
    sim: BybitSimulator, payload: bytes, key: str, secret: str, skew_ms: int
) -> dict[str, str]:
    if not skew_ms:
        return signed_headers(sim, payload, key, secret)
    stamp = str(sim.server_time_ms() + skew_ms)
    text = (stamp + key + "5000").encode() + payload
    return {
        "X-BAPI-API-KEY": key,
        "X-BAPI-TIMESTAMP": stamp,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": hmac.new(secret.encode(), text, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }


async def public(
    client: aiohttp.ClientSession, sim: BybitSimulator, path: str, query: str = ""
) -> Reply:
    """An unsigned GET of *path* with *query*."""
    url = URL(f"{sim.url}{path}" + (f"?{query}" if query else ""), encoded=True)
    async with client.get(url) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.text())
