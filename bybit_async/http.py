"""One HTTP exchange's helpers: the pool's connector, aiohttp's errors mapped, capped reads.

What `bybit_async.session` needs of aiohttp below the request path: whether a
request got a connection (so a failure before it is known unsent), which
`TransportError` an aiohttp error means, copies of errors without the signed
headers, the answer's integer headers, and a body read up to a cap.  Internal:
nothing here is part of the public API.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from contextvars import ContextVar

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .errors import ConnectError, ConnectionDroppedError, RequestTimeout, TransportError

__all__ = [
    "CONNECTED",
    "TRANSPORT_ERRORS",
    "Connector",
    "close_sockets",
    "frameless",
    "int_header",
    "read_capped",
    "redirect_detail",
    "scrubbed",
    "transport_error",
]

_log = logging.getLogger("bybit_async")


# Set in the calling task once the pool hands out a connection: a failure before
# it means the request cannot have left this machine (a pool-wait timeout, say).
CONNECTED: ContextVar[bool] = ContextVar("bybit_async_connected", default=False)


class Connector(aiohttp.TCPConnector):
    """A `TCPConnector` that notes in `CONNECTED` when a request got its connection."""

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[aiohttp.tracing.Trace],
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        CONNECTED.set(True)
        return connection


# aiohttp's exceptions -> ours; the most derived listed class of an error applies.
# Any failure before the pool gave a connection is a ConnectError (not sent);
# a timeout after it may follow the send.
TRANSPORT_ERRORS: Mapping[type[BaseException], type[TransportError]] = {
    aiohttp.ConnectionTimeoutError: ConnectError,
    aiohttp.ClientConnectorError: ConnectError,
    aiohttp.ServerDisconnectedError: ConnectionDroppedError,
    aiohttp.ClientOSError: ConnectionDroppedError,
    aiohttp.ClientPayloadError: ConnectionDroppedError,
    aiohttp.ServerTimeoutError: RequestTimeout,
    asyncio.TimeoutError: RequestTimeout,
    TimeoutError: RequestTimeout,
    aiohttp.ClientError: TransportError,
}


def transport_error(exc: BaseException, method: str, path: str, connected: bool) -> TransportError:
    """The `TransportError` that aiohttp's *exc* means; not *connected*: a `ConnectError`."""
    if connected:
        cls = next(
            (c for k in type(exc).__mro__ if (c := TRANSPORT_ERRORS.get(k)) is not None),
            TransportError,
        )
    else:
        cls = ConnectError
    detail = str(exc) or type(exc).__name__
    return cls(f"{type(exc).__name__}: {detail}", method=method, path=path)


def scrubbed(exc: BaseException) -> BaseException:
    """*exc*, or a copy of it that no longer holds the signed request.

    aiohttp's response errors keep the request's headers (the key and the
    signature) in ``request_info``; the copy keeps its URL and method only,
    and none of the original's chain.
    """
    info = getattr(exc, "request_info", None)
    if not isinstance(info, aiohttp.RequestInfo):
        return exc
    clean = aiohttp.RequestInfo(
        info.url, info.method, CIMultiDictProxy(CIMultiDict()), info.real_url
    )
    copied = copy.copy(exc)
    vars(copied).update(request_info=clean, history=())
    copied.args = (clean, ())
    return copied


def frameless(error: BaseException | None) -> BaseException | None:
    """Return *error* with the tracebacks of it and of its whole chain dropped."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        link = stack.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        link.__traceback__ = None
        stack += (link.__cause__, link.__context__)
    return error


def int_header(headers: Mapping[str, str], name: str) -> int | None:
    """Return header *name* as an int of at most 19 ASCII digits, so no arithmetic overflows."""
    value = headers.get(name)
    if value is None:
        return None
    if len(value) <= 19 and value.isdigit() and value.isascii():
        return int(value)
    # A hostile or broken value is ignored, never raised: the answer may be a success.
    _log.debug("ignoring header %s: %.40r", name, value)
    return None


def redirect_detail(location: str | None) -> str:
    """Why a redirect to *location* was not followed, naming its host only."""
    if not location:
        return "redirect without a Location, not followed"
    try:
        host = URL(location).host
    except (ValueError, TypeError):
        host = None
    where = repr(host) if host else "a relative or unreadable Location"
    return f"redirect to {where} not followed (credentials go to the session's host only)"


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """Read *resp*'s body, decompressed, up to *cap* bytes; return it and whether it is whole."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > cap:
            chunks.append(chunk[: len(chunk) - (size - cap)])
            resp.close()  # the rest is never read: the connection cannot be reused
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"".join(chunks), True


def close_sockets(connector: aiohttp.BaseConnector) -> None:
    """Close the sockets of *connector*'s connections without their event loop.

    Only for a pool whose loop is closed: aiohttp closes a connection through
    its loop, which can no longer run anything, so the socket would stay open
    until garbage collection, with a warning.
    """
    protocols = [proto for conns in connector._conns.values() for proto, _ in conns]
    protocols.extend(connector._acquired)
    for proto in protocols:
        transport = proto.transport
        if transport is None:
            continue
        # What the loop would have run next: close the socket, tell the protocol.
        lost = getattr(transport, "_call_connection_lost", None)
        try:
            if lost is not None:
                lost(None)
            else:
                transport.abort()
        except Exception as exc:  # the protocol's callbacks need the closed loop
            _log.debug("closing a connection of a closed loop: %r", exc)
    connector._conns.clear()
    connector._acquired.clear()
    connector._closed = True
