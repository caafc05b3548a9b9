"""The simulator's private WebSocket stream at ``/v5/private``.

It serves what Bybit's private stream does for positions: ``auth`` (the
signature over ``"GET/realtime" + expires``, HMAC or RSA, checked as the
REST signature is), ``ping`` answered with ``pong``, ``subscribe`` to
``position`` or ``position.linear``, and a ``position`` push whenever one of
the account's positions changes: through set-auto-add-margin, or through
`BybitSimulator.set_position` (the control API and the pytest fixture use
it).  Every change gives the position a new ``seq``, which the position list
shows too, so a client can tell an old push from a new one.

Faults: `StreamHub.drop_all` cuts every connection without a close frame,
`StreamHub.answer_pings` false stops the pongs, and `StreamHub.push_delay`
(plus the simulator's `NetworkDelay`, one way) delays every push, in order.
Messages in and pushes out are in the simulator's request log, with method
``"WS"`` (from the client) or ``"PUSH"`` (to it) and path ``/v5/private``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from .accounts import Position
from .requestlog import RecordedRequest

if TYPE_CHECKING:
    from .server import BybitSimulator

__all__ = ["PRIVATE_STREAM_PATH", "StreamHub"]

#: Where the simulator serves the private stream.
PRIVATE_STREAM_PATH = "/v5/private"
_TOPICS = ("position", "position.linear")


class _Connection:
    """One client connection: its socket, account once authenticated, topics and send queue."""

    def __init__(
        self,
        hub: StreamHub,
        ws: web.WebSocketResponse,
        conn_id: str,
        transport: asyncio.Transport | None,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.conn_id = conn_id
        self.api_key: str | None = None
        self.uid: str | None = None
        self.topics: set[str] = set()
        # (loop time due, text): sent in order, each not before it is due.
        self.queue: deque[tuple[float, bytes]] = deque()
        self.wake = asyncio.Event()
        self.last_due = 0.0

    def send(self, message: dict[str, Any], delay: float = 0.0) -> None:
        self.send_raw(orjson.dumps(message), delay)

    def send_raw(self, data: bytes, delay: float = 0.0) -> None:
        due = max(self.last_due, time.monotonic() + delay)
        self.last_due = due
        self.queue.append((due, data))
        self.wake.set()

    async def sender(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                due, data = self.queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.queue.popleft()
                if self.ws.closed:
                    return
                self.hub.record("PUSH", self.api_key, data)
                try:
                    await self.ws.send_str(data.decode())
                except (ConnectionError, RuntimeError):
                    return


class StreamHub:
    """The private stream of one `BybitSimulator`: its connections, pushes and faults.

    *answer_pings* false leaves every ``ping`` unanswered; *push_delay*
    (seconds) holds every push that long before it goes out.  Both may be
    changed at any time; `reset` restores them.
    """

    def __init__(self, sim: BybitSimulator) -> None:
        self.sim = sim
        self.answer_pings = True
        self.push_delay = 0.0
        self._connections: set[_Connection] = set()
        self._ids = itertools.count(1)
        self._seq = itertools.count(1_000_001)
        self._tasks: set[asyncio.Task[None]] = set()
        self._connects = 0

    # -- set-up -------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        """Serve the stream on *app* at ``/v5/private``; close it on shutdown."""
        app.router.add_route("GET", PRIVATE_STREAM_PATH, self.handle)
        app.on_shutdown.append(self._shutdown)

    def reset(self) -> None:
        """Answer pings again and push without delay."""
        self.answer_pings = True
        self.push_delay = 0.0

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    @property
    def connects(self) -> int:
        """Connections accepted since start."""
        return self._connects

    def drop_all(self) -> int:
        """Cut every connection at once, without a close frame; return how many."""
        dropped = list(self._connections)
        for conn in dropped:
            if conn.transport is not None:
                conn.transport.abort()
        return len(dropped)

    async def _shutdown(self, app: web.Application) -> None:
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.ws.close()

    # -- pushes -------------------------------------------------------------

    def changed(self, uid: str, position: Position) -> None:
        """A position of *uid* changed: give it a new seq and push it to the subscribers."""
        position.seq = next(self._seq)
        targets = [c for c in self._connections if c.uid == uid and c.topics]
        if not targets:
            return
        now_ms = self.sim.server_time_ms()
        item = {**position.to_json(), "category": "linear"}
        delay = self.sim.network_delay
        for conn in targets:
            message = {
                "id": f"{conn.conn_id}-{item['seq']}",
                "topic": "position.linear" if "position.linear" in conn.topics else "position",
                "creationTime": now_ms,
                "data": [item],
            }
            extra = 0.0 if delay is None else self.sim._draws(delay).outbound()
            conn.send(message, self.push_delay + extra)

    def push_raw(self, text: str, *, api_key: str | None = None) -> int:
        """Send *text* as it is to every subscribed connection of *api_key*'s account.

        For pushes Bybit would not send: malformed ones, or old ones.  *api_key*
        None means the default key.  Returns how many connections it went to.
        """
        uid = self.sim.uid(api_key)
        targets = [c for c in self._connections if c.uid == uid and c.topics]
        for conn in targets:
            conn.send_raw(text.encode(), self.push_delay)
        return len(targets)

    # -- the connection -----------------------------------------------------

    def record(self, method: str, api_key: str | None, data: bytes) -> None:
        """Log one stream message in the request log."""
        self.sim.requests.append(
            RecordedRequest(
                at=time.monotonic(),
                method=method,
                path=PRIVATE_STREAM_PATH,
                api_key=api_key,
                body=data,
                query="",
                timestamp=None,
                signature=None,
                status=101,
                time_ms=time.time_ns() // 1_000_000,
            )
        )
        if self.sim._waiters:
            self.sim._notify()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one WebSocket connection until either side closes it."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Connection(self, ws, f"sim{next(self._ids)}", request.transport)
        self._connections.add(conn)
        self._connects += 1
        sender = asyncio.create_task(conn.sender())
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                self.record("WS", conn.api_key, data)
                self._on_message(conn, data)
        finally:
            self._connections.discard(conn)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    def _on_message(self, conn: _Connection, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            conn.send({"success": False, "ret_msg": "error:invalid json", "conn_id": conn.conn_id})
            return
        if not isinstance(message, dict):
            conn.send({"success": False, "ret_msg": "error:invalid op", "conn_id": conn.conn_id})
            return
        op = message.get("op")
        req_id = message.get("req_id")
        reply: dict[str, Any]
        if op == "ping":
            if not self.answer_pings:
                return
            reply = {"op": "pong", "args": [str(self.sim.server_time_ms())]}
        elif op == "auth":
            reply = self._auth(conn, message.get("args"))
        elif op == "subscribe":
            reply = self._subscribe(conn, message.get("args"))
        else:
            reply = {"success": False, "ret_msg": f"error:invalid op {op!r}", "op": op}
        if req_id is not None:
            reply["req_id"] = req_id
        reply["conn_id"] = conn.conn_id
        conn.send(reply)

    def _auth(self, conn: _Connection, args: Any) -> dict[str, Any]:
        def refuse(text: str) -> dict[str, Any]:
            return {"success": False, "ret_msg": text, "op": "auth"}

        if conn.uid is not None:
            return refuse("error:already authed")
        if not isinstance(args, list) or len(args) != 3:
            return refuse("Params Error")
        api_key, expires, signature = args
        if isinstance(expires, str) and expires.isdigit():
            expires = int(expires)
        if (
            not isinstance(api_key, str)
            or type(expires) is not int
            or not isinstance(signature, str)
        ):
            return refuse("Params Error")
        # Bybit answers an expired request as a malformed one.
        if expires <= self.sim.server_time_ms():
            return refuse("Params Error")
        key = self.sim._accounts.keys.get(api_key)
        if key is None:
            return refuse("error:apikey invalid")
        origin = f"GET/realtime{expires}".encode()
        if key.rsa_verify is not None:
            valid = key.rsa_verify(origin, signature.encode("utf-8", "backslashreplace"))
        else:
            valid = hmac.compare_digest(
                key.hmac_hex(origin), signature.encode("utf-8", "backslashreplace")
            )
        if not valid:
            return refuse("error:signature verification failed")
        conn.api_key = api_key
        conn.uid = key.uid
        return {"success": True, "ret_msg": "", "op": "auth"}

    def _subscribe(self, conn: _Connection, args: Any) -> dict[str, Any]:
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            return {"success": False, "ret_msg": "Params Error", "op": "subscribe"}
        unknown = [a for a in args if a not in _TOPICS]
        if unknown:
            return {
                "success": False,
                "ret_msg": f"error:handler not found,topic:{unknown[0]}",
                "op": "subscribe",
            }
        if conn.uid is None:
            return {
                "success": False,
                "ret_msg": f"error:topic:{args[0]} needs auth first",
                "op": "subscribe",
            }
        if len(set(args)) > 1:
            # Bybit: the all-in-one topic and a category's cannot share one request.
            return {"success": False, "ret_msg": "error:topic conflict", "op": "subscribe"}
        conn.topics.update(args)
        return {"success": True, "ret_msg": "", "op": "subscribe"}


def control_endpoints() -> dict[tuple[str, str], Callable[[BybitSimulator, Any, Any], Any]]:
    """The control API's stream endpoints: state, settings and the drop fault."""

    def state(sim: BybitSimulator, request: Any, data: Any) -> Any:
        hub = sim.stream
        return {
            "connections": hub.connections,
            "connects": hub.connects,
            "answerPings": hub.answer_pings,
            "pushDelay": hub.push_delay,
        }

    def change(sim: BybitSimulator, request: Any, data: Any) -> Any:
        unknown = set(data) - {"answerPings", "pushDelay"}
        if unknown:
            raise ValueError(f"unknown stream settings: {', '.join(sorted(unknown))}")
        pings = data.get("answerPings", sim.stream.answer_pings)
        delay = data.get("pushDelay", sim.stream.push_delay)
        if not isinstance(pings, bool):
            raise ValueError("answerPings must be true or false")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ValueError("pushDelay must be a non-negative number of seconds")
        sim.stream.answer_pings = pings
        sim.stream.push_delay = float(delay)
        return state(sim, request, data)

    def drop(sim: BybitSimulator, request: Any, data: Any) -> Any:
        return {"dropped": sim.stream.drop_all()}

    return {
        ("GET", "stream"): state,
        ("PATCH", "stream"): change,
        ("POST", "stream/drop"): drop,
    }
