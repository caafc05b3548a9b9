"""One egress, one IP: the IP budget and the IP-ban halt that a process's sessions share.

Bybit limits and bans by IP address, whatever the account: 600 requests per
5 seconds to the host and its regional twins, and after HTTP 403 nothing
for at least ten minutes.  Every `BybitSession` of a process that leaves
through the same egress therefore shares one `Egress`: the IP permits of
its limiter come from one `bybit_async.ratelimit.IpBudget`, and a ban seen
by any session halts all of them until it ends.

A session's egress is named by its ``egress=`` argument, or else by its
proxy (or none) and the host family of its ``base_url``: Bybit's mainnet
hosts (``api.bybit.com``, ``api.bytick.com`` and the regional hosts) are one
family; any other host is a family of its own (host and port).  Egresses
are per event loop: sessions running in different loops (threads) do not
share.  An egress lives as long as a session uses it.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Protocol

from yarl import URL

if TYPE_CHECKING:
    from .errors import BybitError

__all__ = ["Egress", "HaltListener", "egress_for", "egress_name"]

# Bybit's mainnet hosts share one IP limit ("api.bybit.com, api.bytick.com, and
# local site hostnames such as api.bybit.kz": Bybit's rate-limit page).
_MAINNET_HOSTS = frozenset(
    {
        "api.bybit.com",
        "api.bytick.com",
        "api.bybit.nl",
        "api.bybit.tr",
        "api.bybit.kz",
        "api.bybitgeorgia.ge",
        "api.bybit.ae",
        "api.bybit.id",
        "api.bybit.eu",
        "api.manepa.jp",
    }
)


class HaltListener(Protocol):
    """What an egress tells of halts: a session."""

    def egress_halted(
        self, halted: tuple[float, BybitError] | None, cooldown: float, early: bool
    ) -> None:
        """A halt of *cooldown* s started (*halted*: (until, cause)) or ended (None).

        *early* tells that it ended by `Egress.resume`.
        """


def egress_name(base_url: str, proxy: str | None) -> str:
    """Return the default egress name of a session with *base_url* and *proxy*."""
    url = URL(base_url)
    host = url.host or ""
    family = "bybit-mainnet" if host in _MAINNET_HOSTS else f"{host}:{url.port}"
    return f"{family} via {proxy or 'direct'}"


class Egress:
    """The IP-ban state shared by the sessions of one egress.

    *name* identifies it.  `halt` stops every attached session for a
    cool-off; `resume` lets them all send again.  Its methods must be called
    from its event loop.
    """

    __slots__ = ("__weakref__", "_cooldown", "_halted", "_listeners", "name")

    _listeners: weakref.WeakSet[HaltListener]

    def __init__(self, name: str) -> None:
        self.name = name
        # (time.monotonic() until which nothing is sent, the error that banned).
        self._halted: tuple[float, BybitError] | None = None
        self._cooldown = 0.0
        # Weak: a session that is dropped without close() leaves the egress.
        self._listeners = weakref.WeakSet()

    def __repr__(self) -> str:
        state = "halted" if self.halted is not None else "open"
        return f"<Egress {self.name!r} {state}, {len(self._listeners)} sessions>"

    @property
    def halted(self) -> tuple[float, BybitError] | None:
        """(monotonic time the halt ends, its cause) while a halt is on, else None."""
        halted = self._halted
        if halted is not None and halted[0] <= time.monotonic():
            self._halted = halted = None
        return halted

    def attach(self, listener: HaltListener) -> None:
        """Tell *listener* of halts from now on, and at once of one under way."""
        self._listeners.add(listener)
        halted = self.halted
        if halted is not None:
            listener.egress_halted(halted, self._cooldown, False)

    def detach(self, listener: HaltListener) -> None:
        """Stop telling *listener* of halts."""
        self._listeners.discard(listener)

    def halt(self, cause: BybitError, cooldown: float) -> None:
        """Stop every session of this egress for *cooldown* seconds because of *cause*."""
        until = time.monotonic() + cooldown
        if self._halted is not None and self._halted[0] >= until:
            return
        self._halted = (until, cause)
        self._cooldown = cooldown
        for listener in list(self._listeners):
            listener.egress_halted(self._halted, cooldown, False)

    def resume(self) -> None:
        """End a halt early: every session of this egress may send again."""
        if self._halted is None:
            return
        self._halted = None
        for listener in list(self._listeners):
            listener.egress_halted(None, 0.0, True)


_EGRESSES: weakref.WeakValueDictionary[tuple[asyncio.AbstractEventLoop, str], Egress] = (
    weakref.WeakValueDictionary()
)


def egress_for(loop: asyncio.AbstractEventLoop, name: str) -> Egress:
    """Return the process's egress called *name* in *loop*, made if new."""
    key = (loop, name)
    egress = _EGRESSES.get(key)
    if egress is None:
        egress = _EGRESSES[key] = Egress(name)
    return egress
