"""Configuration helpers of `bybit_async.redis_limiter.RedisLimiter`.

The Redis URL with its password put in from a file or the environment
(`redis_url_with_password`), the account name derived from an API key
(`account_for_api_key`), the forms of a URL or client that are safe to show
(no password), and the check of a limiter's durations.  The public names
are documented, and importable, from `bybit_async.redis_limiter`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

__all__ = ["PASSWORD_ENV", "account_for_api_key", "redis_url_with_password"]

#: The environment variable `redis_url_with_password` reads the password from.
PASSWORD_ENV = "BYBIT_REDIS_PASSWORD"


def account_for_api_key(api_key: str) -> str:
    """Return the account name `RedisLimiter` uses for *api_key* when none is given.

    The first 16 hex digits of the key's SHA-256: the key itself never
    reaches Redis or a log.
    """
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def redis_url_with_password(
    url: str,
    *,
    env: Mapping[str, str] = os.environ,
    password_file: str | os.PathLike[str] | None = None,
) -> str:
    """Return *url* with the Redis password put in, so that it need not be on a command line.

    The password comes from *password_file* (its first line) when given,
    else from the environment variable ``BYBIT_REDIS_PASSWORD`` in *env*
    when set; a URL that already holds a password is returned as it is,
    unless a file is given too (`ValueError`: two passwords).  A username
    in the URL is kept.  Works for ``redis://``, ``rediss://`` and
    ``unix://`` URLs.
    """
    parts = urlsplit(url)
    if password_file is not None:
        if parts.password is not None:
            raise ValueError("the Redis URL has a password and a password file is given too")
        lines = Path(password_file).read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
        if not password:
            raise ValueError(f"the Redis password file {os.fspath(password_file)!r} is empty")
    else:
        if parts.password is not None:
            return url
        password = env.get(PASSWORD_ENV, "")
        if not password:
            return url
    host = parts.netloc.rpartition("@")[2]
    user = quote(parts.username or "", safe="")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _redacted(url: str) -> str:
    """*url* without its password, in its user part or its query, if it has one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if parts.query:
        # redis-py also takes the password as a query parameter (unix:// URLs need it).
        query = [
            (name, "***" if name.lower() == "password" else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def _describe_client(client: Any) -> str:
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port, db = kwargs.get("host", "?"), kwargs.get("port", "?"), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"


def _check_seconds(name: str, value: object, *, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (value >= 0 if zero_ok else value > 0) or math.isinf(value):
        raise ValueError(f"{name} must be {'zero or more' if zero_ok else 'positive'}: {value!r}")
    return float(value)
