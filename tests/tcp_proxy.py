"""A small TCP proxy on a free loopback port, for the tests and benchmarks of `RedisLimiter`.

It forwards every connection to a target (the test redis-server) and can

* delay each direction by a fixed time (the benchmark's "Redis in another
  zone"), keeping the order of the bytes;
* hold the replies (target to client) instead of forwarding them, counting
  them as they arrive: the client's request reaches Redis and is carried
  out, but its answer does not come back (a timeout the server never saw);
* call a function when a reply arrives, before forwarding it.

Imports nothing but the standard library, so that the benchmarks can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class TcpProxy:
    """Forward connections on ``127.0.0.1:port`` to *host*:*target_port*."""

    def __init__(self, host: str, target_port: int, *, delay: float = 0.0) -> None:
        self.host = host
        self.target_port = target_port
        self.delay = delay
        self.port: int | None = None
        self.holding = False
        self.held = 0
        self.on_reply: Callable[[], None] | None = None
        self._held_changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def wait_held(self, count: int) -> None:
        """Wait until *count* replies have been held back."""
        while self.held < count:
            self._held_changed.clear()
            await self._held_changed.wait()

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            self._spawn(self._pump(reader, up_writer, replies=False)),
            self._spawn(self._pump(up_reader, writer, replies=True)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = self._spawn(self._send(queue, writer))
        try:
            while data := await reader.read(65536):
                if replies:
                    if self.on_reply is not None:
                        self.on_reply()
                    if self.holding:
                        self.held += 1
                        self._held_changed.set()
                        continue
                queue.put_nowait((loop.time() + self.delay, data))
            await queue.join()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            at, data = await queue.get()
            if at > loop.time():
                await asyncio.sleep(at - loop.time())  # the delay itself, not synchronization
            writer.write(data)
            await writer.drain()
            queue.task_done()
