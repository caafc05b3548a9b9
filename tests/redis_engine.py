"""One trading engine, for the multi-process tests and benchmarks of `RedisLimiter`.

Run as ``python tests/redis_engine.py CONFIG_JSON``.  CONFIG_JSON holds
``base_url``, ``api_key``, ``api_secret``, ``symbols`` (a list), ``limit``
(requests per second on set-auto-add-margin) and ``limiter``: ``"redis"``
(with ``redis_url``, ``account`` and optionally ``ip_scope`` and ``lease``) or ``"local"``.

It sets auto-add-margin on every symbol through one session and prints one
JSON line: ``{"ok": N, "errors": {class name: count}, "seconds": S}``.  With
``"hold": true`` it then takes every endpoint permit of the limiter, prints
``HOLDING``, and waits to be killed: a process that dies with its permits out.
With ``"barrier": true`` it prints ``READY`` once its session is warm and
waits for a line on stdin before the sweep, so that several engines start
together.  With ``"stall_after_grant": true`` it prints ``GRANTED`` and
stops itself (SIGSTOP) as soon as Redis has granted its first permits, before
any is used: a stalled engine, to be resumed with SIGCONT.  ``handover`` and
``fallback`` are passed to `RedisLimiter`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bybit_async import ApiResponse, BybitSession, Limiter, LocalLimiter, RateLimits, RedisLimiter
from bybit_async.redis_limiter import DEFAULT_HANDOVER

PATH = "/v5/position/set-auto-add-margin"


class _StallingLimiter(RedisLimiter):
    """Stops its own process (SIGSTOP) right after Redis grants its first permits.

    The calls then hold permits they have not used yet: a stalled engine.
    """

    armed = False

    def _hand_out(self, reply: Any, asked: Any, sent_at: float, at: int = 2) -> None:
        super()._hand_out(reply, asked, sent_at, at)
        if self.armed and any(int(reply[at + 5 * i]) for i in range(len(asked))):
            self.armed = False
            print("GRANTED", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)


async def run(config: dict[str, Any]) -> None:
    limits = RateLimits(endpoints={PATH: config["limit"]})
    limiter: Limiter
    redis_limiter: RedisLimiter | None = None
    if config["limiter"] == "redis":
        cls = _StallingLimiter if config.get("stall_after_grant") else RedisLimiter
        limiter = redis_limiter = cls(
            config["redis_url"],
            account=config.get("account"),
            ip_scope=config.get("ip_scope"),
            limits=limits,
            lease=config.get("lease"),
            handover=config.get("handover", DEFAULT_HANDOVER),
            fallback=config.get("fallback", "closed"),
        )
    else:
        limiter = LocalLimiter(limits)
    try:
        async with BybitSession(
            config["api_key"],
            config["api_secret"],
            base_url=config["base_url"],
            limiter=limiter,
            # A lease shorter than the session's timeout is refused: keep them equal.
            timeout=config.get("lease") or 10.0,
            backoff_initial=0.01,
            backoff_max=0.05,
        ) as session:
            await session.warm_up()
            if redis_limiter is not None:
                await redis_limiter.warm_up()
            if isinstance(limiter, _StallingLimiter):
                limiter.armed = True
            if config.get("barrier"):
                print("READY", flush=True)
                await asyncio.to_thread(sys.stdin.readline)  # the go signal
            started = time.perf_counter()
            outcomes = await session.set_auto_add_margin_many(config["symbols"], True)
            seconds = time.perf_counter() - started
        errors: dict[str, int] = {}
        for outcome in outcomes:
            if not isinstance(outcome, ApiResponse):
                errors[type(outcome).__name__] = errors.get(type(outcome).__name__, 0) + 1
        ok = sum(isinstance(o, ApiResponse) for o in outcomes)
        print(json.dumps({"ok": ok, "errors": errors, "seconds": seconds}), flush=True)
        if config.get("hold"):
            # Every endpoint permit, taken and never given back.
            for _ in range(config["limit"]):
                await limiter.acquire(PATH)
            print("HOLDING", flush=True)
            await asyncio.Event().wait()
    finally:
        if redis_limiter is not None:
            await redis_limiter.aclose()


if __name__ == "__main__":
    asyncio.run(run(json.loads(sys.argv[1])))
