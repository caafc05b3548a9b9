"""Small hostile upstreams on loopback, for what the simulator will not send.

`HostileServer` answers ``GET /v5/market/time`` with the real time unless told
otherwise, and every other request with whatever `HostileServer.handler`
returns; it records what it received.  Tests drive it with events, never
with sleeps.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bybit_async import BybitSession

TIME = "/v5/market/time"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Received:
    """One request as the hostile server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def envelope(ret_code: int = 0, result: Any = None, **headers: str) -> web.Response:
    """A Bybit JSON envelope with *headers*."""
    return web.json_response(
        {"retCode": ret_code, "retMsg": "OK", "result": {} if result is None else result},
        headers=headers,
    )


def server_time(nano: object = None) -> web.Response:
    """An answer of ``/v5/market/time``; *nano* replaces ``timeNano`` when given."""
    now = time.time_ns()
    value = str(now) if nano is None else nano
    return envelope(result={"timeSecond": str(now // 10**9), "timeNano": value})


async def ok(request: web.Request) -> web.StreamResponse:
    """Answer success."""
    return envelope()


def gzip_bomb(inflated: int) -> bytes:
    """A gzip body that inflates to *inflated* zero bytes (about 1000 times its size)."""
    return gzip.compress(b"\0" * inflated, compresslevel=9)


async def endless(request: web.Request) -> web.StreamResponse:
    """A 200 whose chunked body never ends (until the client hangs up)."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    chunk = b"[" * 65536
    while True:
        await resp.write(chunk)


class HostileServer:
    """A loopback server whose answers the test writes."""

    def __init__(self) -> None:
        self.url = ""
        self.host = "127.0.0.1"
        self.handler: Handler = ok
        self.time_handler: Handler = lambda request: _now(server_time())
        self.received: list[Received] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def paths(self) -> list[str]:
        """The paths received other than the clock's."""
        return [r.path for r in self.received if r.path != TIME]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.method, request.path, dict(request.headers), body))
        self.arrived.set()
        if request.path == TIME:
            return await self.time_handler(request)
        return await self.handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _now(resp: web.StreamResponse) -> web.StreamResponse:
    return resp


async def serve() -> AsyncIterator[HostileServer]:
    """Yield a started `HostileServer`; stop it afterwards."""
    server = HostileServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def session_for(server: HostileServer, **kwargs: Any) -> BybitSession:
    """A session against *server*, with back-off scaled down to a millisecond."""
    options: dict[str, Any] = {"base_url": server.url, "backoff_initial": 0.001}
    options.update(kwargs)
    return BybitSession("key", "secret", **options)
