"""Pytest fixtures around `tests.redis_server`; they skip, saying why, without a redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redis_server import NoRedisServer, RedisServer, running_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole test session."""
    try:
        with running_redis() as server:
            yield server
    except NoRedisServer as exc:
        pytest.skip(str(exc))


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may stop and start again."""
    try:
        with running_redis() as server:
            yield server
    except NoRedisServer as exc:
        pytest.skip(str(exc))
