"""Signed requests to any simulator path through plain aiohttp, for the simulator's tests."""

from __future__ import annotations

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
) -> Reply:
    """A signed *method* request to *path*: *params* as the query (GET) or JSON body (POST)."""
    if method == "GET":
        text = params if isinstance(params, str) else urlencode(dict(params or {}))
        assert isinstance(text, str)
        headers = signed_headers(sim, text.encode(), key, secret)
        url = URL(f"{sim.url}{path}" + (f"?{text}" if text else ""), encoded=True)
        async with client.get(url, headers=headers) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.text())
    body = params if isinstance(params, bytes) else orjson.dumps(params or {})
    headers = signed_headers(sim, body, key, secret)
    async with client.post(sim.url + path, data=body, headers=headers) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.text())


async def public(
    client: aiohttp.ClientSession, sim: BybitSimulator, path: str, query: str = ""
) -> Reply:
    """An unsigned GET of *path* with *query*."""
    url = URL(f"{sim.url}{path}" + (f"?{query}" if query else ""), encoded=True)
    async with client.get(url) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.text())
