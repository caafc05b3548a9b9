"""Reading positions, and keeping auto-add-margin in a desired state on many of them.

`get_positions` reads ``GET /v5/position/list`` to the last page.
`plan_auto_add_margin` reads what is there and decides, position by position,
what a request to set auto-add-margin would change; `apply_plan` sends only
the writes that change something.  `BybitSession.get_positions` and
`BybitSession.ensure_auto_add_margin` are the same calls on a session.

What the position list says about margin modes, and what this module trusts of
it, is in docs/protocol-notes.md ("Desired state").
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, Protocol, TypeAlias, TypeVar, cast

import orjson

from .errors import (
    BybitAPIError,
    BybitError,
    InvalidResponseError,
    PositionError,
    RequestTimeout,
)
from .models import ApiResponse, PositionIdx

__all__ = [
    "POSITION_LIST",
    "EnsureReport",
    "EnsureRow",
    "EnsureStatus",
    "Position",
    "PositionKey",
    "apply_plan",
    "auto_add_margin_params",
    "ensure_auto_add_margin",
    "get_positions",
    "parse_positions",
    "plan_auto_add_margin",
    "position_list_params",
    "settle_coin_of",
]

POSITION_LIST: Final = "/v5/position/list"
#: The position list's largest page: the fewest reads.
PAGE_SIZE: Final = 200
#: The most positions one query can list: Bybit has fewer than 1,000 linear
#: contracts per settle coin, and hedge mode gives each two positions.
MAX_POSITIONS: Final = 2000
#: Pages read for one query before the list counts as endless: twice what
#: `MAX_POSITIONS` fills, for room.
MAX_PAGES: Final = 2 * -(-MAX_POSITIONS // PAGE_SIZE)
#: Settle coin read when none is given.
DEFAULT_SETTLE_COIN: Final = "USDT"

T = TypeVar("T")

# retCodes of set-auto-add-margin that say the position cannot have the flag at all.
_NOT_APPLICABLE: Final = {110076: "cross margin", 110077: "portfolio margin"}

# The same pattern as the session's check of set-auto-add-margin's symbol.
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9-]*\Z")
_COIN = re.compile(r"[A-Z0-9]+\Z")

#: What happened to one position: see `EnsureRow.status`.
EnsureStatus = Literal["unchanged", "changed", "skipped", "failed", "planned"]


class _Client(Protocol):
    """What this module needs of a session."""

    async def request(
        self,
        method: Literal["GET", "POST"],
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        signed: bool = True,
        idempotent: bool | None = None,
    ) -> ApiResponse: ...

    async def set_auto_add_margin(
        self,
        symbol: str,
        auto_add_margin: bool | int,
        *,
        category: str = "linear",
        position_idx: int | PositionIdx | None = None,
    ) -> ApiResponse: ...


# -- settle coins --------------------------------------------------------------------


def settle_coin_of(symbol: str) -> str:
    """The settle coin of a linear *symbol* by its name.

    USDT when the name holds ``USDT`` (perpetuals and ``BASEUSDT-DDMMMYY``
    futures); USDC for ``...PERP``, ``...USDC`` and ``BASE-DDMMMYY`` futures.
    """
    if "USDT" in symbol:
        return "USDT"
    if symbol.endswith("PERP") or "USDC" in symbol or "-" in symbol:
        return "USDC"
    return "USDT"


# -- set-auto-add-margin's parameters ------------------------------------------------


def auto_add_margin_params(
    symbol: str,
    auto_add_margin: bool | int,
    *,
    category: str = "linear",
    position_idx: int | None = None,
) -> dict[str, Any]:
    """Validate the arguments of set-auto-add-margin and return its JSON body.

    Raises `TypeError` or `ValueError` for anything Bybit would reject.
    """
    if not isinstance(symbol, str):
        raise TypeError(f"symbol must be a str, got {type(symbol).__name__}")
    if not _SYMBOL.match(symbol):
        hint = f"; did you mean {symbol.upper()!r}?" if _SYMBOL.match(symbol.upper()) else ""
        raise ValueError(
            f"symbol must be uppercase letters, digits and hyphens, got {symbol!r}{hint}"
        )
    if category != "linear":
        raise ValueError(f"set-auto-add-margin supports category 'linear' only, got {category!r}")
    if isinstance(auto_add_margin, bool) or (
        isinstance(auto_add_margin, int) and auto_add_margin in (0, 1)
    ):
        flag = int(auto_add_margin)
    elif isinstance(auto_add_margin, int):
        raise ValueError(f"auto_add_margin must be True/False or 1/0, got {auto_add_margin!r}")
    else:
        raise TypeError(f"auto_add_margin must be a bool or 0/1, got {auto_add_margin!r}")
    params: dict[str, Any] = {"category": category, "symbol": symbol, "autoAddMargin": flag}
    if position_idx is not None:
        if isinstance(position_idx, bool) or not isinstance(position_idx, int):
            raise TypeError(f"position_idx must be 0, 1, 2 or a PositionIdx, got {position_idx!r}")
        if position_idx not in (0, 1, 2):
            raise ValueError(f"position_idx must be 0, 1 or 2, got {position_idx!r}")
        params["positionIdx"] = int(position_idx)
    return params


# -- the position list -------------------------------------------------------------


#: A position's identity: (symbol, position index).
PositionKey: TypeAlias = "tuple[str, PositionIdx]"


@dataclass(frozen=True, slots=True)
class Position:
    """One position as ``GET /v5/position/list`` shows it."""

    #: ``symbol``, such as ``"BTCUSDT"``.
    symbol: str
    #: ``positionIdx``: 0 one-way mode, 1 hedge-mode buy side, 2 hedge-mode sell side.
    position_idx: PositionIdx
    #: ``side``: ``"Buy"``, ``"Sell"``, or ``""`` for an empty position (Bybit's ``"None"`` too).
    side: str
    #: ``size``: 0 for an empty position.
    size: Decimal
    #: ``tradeMode``: 0 cross, 1 isolated margin in a classic account; always 0 in a
    #: unified account, whatever the margin mode (see `ensure_auto_add_margin`).
    trade_mode: int
    #: ``autoAddMargin``: whether auto-add-margin is on.  In a unified account it
    #: means something only in isolated margin mode.
    auto_add_margin: bool
    #: The whole item as Bybit sent it, every field included.
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        """Whether the position has a size."""
        return self.size != 0

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Position:
        """Parse one item of the list; raises `ValueError` or `TypeError` if malformed.

        A size that is not a finite number (``NaN``, ``Infinity``) is malformed.
        """
        symbol = item["symbol"]
        idx = item["positionIdx"]
        trade_mode = item.get("tradeMode", 0)
        flag = item.get("autoAddMargin", 0)
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbol {symbol!r}")
        for name, value in (("positionIdx", idx), ("tradeMode", trade_mode)):
            if type(value) is not int:
                raise TypeError(f"{name} {value!r}")
        if type(flag) is not int or flag not in (0, 1):
            raise ValueError(f"autoAddMargin {flag!r}")
        side = item.get("side") or ""
        try:
            size = Decimal(str(item.get("size") or "0"))
        except InvalidOperation:
            raise ValueError(f"size {item.get('size')!r}") from None
        if not size.is_finite():
            # NaN, sNaN and Infinity parse, but no position has such a size
            # (and comparing sNaN raises).
            raise ValueError(f"size {item.get('size')!r}")
        return cls(
            symbol,
            PositionIdx(idx),
            "" if side == "None" else str(side),
            size,
            trade_mode,
            bool(flag),
            item,
        )


def position_list_params(
    category: str = "linear",
    *,
    symbol: str | None = None,
    settle_coin: str | None = None,
    limit: int = PAGE_SIZE,
    cursor: str | None = None,
) -> dict[str, str]:
    """Validate the arguments of ``GET /v5/position/list`` and return its query parameters.

    Every value is a str, in the order they are sent.  Raises `TypeError` or
    `ValueError` for anything Bybit would reject.
    """
    if category != "linear":
        raise ValueError(f"the position list is read for category 'linear' only, got {category!r}")
    if symbol is None and settle_coin is None:
        raise ValueError("give symbol or settle_coin: Bybit needs one for category 'linear'")
    params = {"category": category}
    if symbol is not None:
        if not isinstance(symbol, str):
            raise TypeError(f"symbol must be a str, got {type(symbol).__name__}")
        if not _SYMBOL.match(symbol):
            raise ValueError(f"symbol must be uppercase letters and digits, got {symbol!r}")
        params["symbol"] = symbol
    if settle_coin is not None:
        if not isinstance(settle_coin, str):
            raise TypeError(f"settle_coin must be a str, got {type(settle_coin).__name__}")
        if not _COIN.match(settle_coin):
            raise ValueError(f"settle_coin must be uppercase, such as 'USDT', got {settle_coin!r}")
        params["settleCoin"] = settle_coin
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, got {limit!r}")
    if not 1 <= limit <= PAGE_SIZE:
        raise ValueError(f"limit must be from 1 to {PAGE_SIZE}, got {limit!r}")
    params["limit"] = str(limit)
    if cursor:
        params["cursor"] = cursor
    return params


def parse_positions(resp: ApiResponse) -> tuple[list[Position], str]:
    """Return one page's positions and its ``nextPageCursor`` (empty on the last page).

    Raises `InvalidResponseError` if the page is not shaped as Bybit documents it.
    """
    try:
        result = resp.result
        items = result["list"]
        cursor = result.get("nextPageCursor") or ""
        if not isinstance(items, list) or not isinstance(cursor, str):
            raise TypeError("list or nextPageCursor")
        return [Position.from_json(item) for item in items], cursor
    except (TypeError, ValueError, KeyError, AttributeError):
        raise InvalidResponseError(
            orjson.dumps(resp.result), method="GET", path=POSITION_LIST
        ) from None


class _Pages:
    """Every page of one query, read with the bounds a hostile server cannot move.

    A page that adds no position not seen before ends the list (a server that
    keeps handing out new cursors over the same positions); each (symbol,
    positionIdx) is kept once, as first listed; more than `MAX_PAGES` pages,
    or a page longer than the limit asked for, raises `InvalidResponseError`.
    """

    __slots__ = ("positions", "reads")

    def __init__(self) -> None:
        self.positions: dict[tuple[str, int], Position] = {}
        self.reads = 0

    async def read(self, client: _Client, params: dict[str, str]) -> None:
        seen: set[str] = set()
        limit = int(params["limit"])
        while True:
            if self.reads >= MAX_PAGES:
                raise InvalidResponseError(
                    b"",
                    method="GET",
                    path=POSITION_LIST,
                    reason=f"more than {MAX_PAGES} pages (Bybit holds at most about "
                    f"{MAX_POSITIONS} positions per settle coin): the list does not end",
                )
            self.reads += 1
            page, cursor = parse_positions(
                await client.request("GET", POSITION_LIST, params, signed=True)
            )
            if len(page) > limit:
                raise InvalidResponseError(
                    b"",
                    method="GET",
                    path=POSITION_LIST,
                    reason=f"a page of {len(page)} positions, more than the limit of {limit}",
                )
            added = 0
            for position in page:
                key = (position.symbol, int(position.position_idx))
                if key not in self.positions:
                    self.positions[key] = position
                    added += 1
            if not cursor or not added:
                return
            if cursor in seen:
                # A cursor seen before would read the same pages forever.
                raise InvalidResponseError(
                    f"nextPageCursor {cursor!r} repeats".encode(), method="GET", path=POSITION_LIST
                )
            seen.add(cursor)
            params = {**params, "cursor": cursor}


async def _read_pages(client: _Client, params: dict[str, str]) -> tuple[list[Position], int]:
    """Every page of one query; the positions and the number of reads it took."""
    pages = _Pages()
    await pages.read(client, params)
    return list(pages.positions.values()), pages.reads


async def _within(deadline: float | None, work: Awaitable[T]) -> T:
    """Await *work*, all of it bounded by *deadline* seconds (None: unbounded)."""
    if deadline is None:
        return await work
    try:
        return await asyncio.wait_for(work, deadline)
    except asyncio.TimeoutError:
        raise RequestTimeout(
            f"the call's deadline of {deadline:g} s passed (every page, retries and waits "
            "included)",
            method="GET",
            path=POSITION_LIST,
        ) from None


async def get_positions(
    client: _Client,
    category: str = "linear",
    *,
    symbol: str | None = None,
    settle_coin: str | None = None,
    deadline: float | None = None,
) -> list[Position]:
    """Read ``GET /v5/position/list`` to its last page; see `BybitSession.get_positions`.

    *deadline* (s) bounds the whole read, every page included.
    """
    params = position_list_params(category, symbol=symbol, settle_coin=settle_coin)
    positions, _ = await _within(deadline, _read_pages(client, params))
    return positions


# -- the report ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnsureRow:
    """What `ensure_auto_add_margin` found, decided and did for one position."""

    #: The symbol.
    symbol: str
    #: The position's ``positionIdx``; None when it is unknown: its read failed,
    #: or a position with none open was written without a read and without one.
    position_idx: PositionIdx | None
    #: ``"unchanged"``: already as asked; ``"changed"``: set by a write;
    #: ``"skipped"``: the position cannot have the flag (cross or portfolio margin);
    #: ``"failed"``: its read or write failed (see `error`); ``"planned"``: a
    #: dry run would write it.
    status: EnsureStatus
    #: Why, in a few words: ``"already on"``, ``"turned on"``, Bybit's message...
    reason: str
    #: The position as read; None when its read failed or it was not read (a
    #: named position with none open is written without a read).
    position: Position | None = None
    #: Whether a set-auto-add-margin request was sent for it.
    written: bool = False
    #: Bybit's retCode for the write, or for a failed read; None if none.
    ret_code: int | None = None
    #: The exception of a failed read or write (or of a skip Bybit answered).
    error: Exception | None = field(default=None, compare=False)
    #: Attempts the write took, retries included; None if nothing was written.
    attempts: int | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing failed: unchanged, changed, skipped or planned."""
        return self.status != "failed"

    def as_json(self) -> dict[str, Any]:
        """The row as a JSON object (the exception by class name)."""
        return {
            "symbol": self.symbol,
            "position_idx": None if self.position_idx is None else int(self.position_idx),
            "status": self.status,
            "reason": self.reason,
            "auto_add_margin": None if self.position is None else self.position.auto_add_margin,
            "size": None if self.position is None else str(self.position.size),
            "trade_mode": None if self.position is None else self.position.trade_mode,
            "ok": self.ok,
            "written": self.written,
            "ret_code": self.ret_code,
            "attempts": self.attempts,
            "error": None if self.error is None else type(self.error).__name__,
        }


@dataclass(frozen=True, slots=True)
class EnsureReport:
    """The outcome of `ensure_auto_add_margin`: one row per (symbol, position_idx).

    Rows are in the order of the symbols asked for, or by symbol when every
    open position was read, and by position index within a symbol.
    """

    #: The flag asked for.
    auto_add_margin: bool
    #: One row per position.
    rows: tuple[EnsureRow, ...]
    #: ``GET /v5/position/list`` requests made (pages and per-symbol reads).
    reads: int
    #: Whether this is only the plan: nothing was written.
    dry_run: bool = False

    def count(self, status: EnsureStatus) -> int:
        """How many rows have *status*."""
        return sum(1 for row in self.rows if row.status == status)

    @property
    def unchanged(self) -> int:
        """Positions already as asked."""
        return self.count("unchanged")

    @property
    def changed(self) -> int:
        """Positions a write changed."""
        return self.count("changed")

    @property
    def skipped(self) -> int:
        """Positions that cannot have the flag."""
        return self.count("skipped")

    @property
    def failed(self) -> int:
        """Positions whose read or write failed."""
        return self.count("failed")

    @property
    def planned(self) -> int:
        """Positions a dry run would write."""
        return self.count("planned")

    @property
    def writes(self) -> int:
        """set-auto-add-margin requests sent."""
        return sum(1 for row in self.rows if row.written)

    @property
    def ok(self) -> bool:
        """Whether no row failed (skipped rows are not failures)."""
        return all(row.ok for row in self.rows)

    def __str__(self) -> str:
        """One line: the counts, reads and writes."""
        word = "on" if self.auto_add_margin else "off"
        counts = ", ".join(
            f"{n} {status}"
            for status in ("changed", "planned", "unchanged", "skipped", "failed")
            if (n := self.count(status))
        )
        plan = "dry run: " if self.dry_run else ""
        return (
            f"{plan}auto-add-margin {word}: {_plural(len(self.rows), 'position')}"
            f"{': ' + counts if counts else ''} ({_plural(self.reads, 'read')}, "
            f"{_plural(self.writes, 'write')})"
        )

    def table(self) -> str:
        """A plain-text table of the rows, for logs."""
        lines = [("symbol", "idx", "status", "reason")]
        lines += [
            (
                row.symbol,
                "-" if row.position_idx is None else str(int(row.position_idx)),
                row.status,
                row.reason,
            )
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(3)]
        body = [
            "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True))
            + "  "
            + line[3]
            for line in lines
        ]
        return "\n".join([*body, str(self)])


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- planning and applying ------------------------------------------------------------


def _coins(settle_coin: str | Iterable[str] | None) -> list[str]:
    if settle_coin is None:
        return [DEFAULT_SETTLE_COIN]
    coins = [settle_coin] if isinstance(settle_coin, str) else list(settle_coin)
    if not coins:
        raise ValueError("settle_coin must name at least one coin")
    for coin in coins:
        position_list_params(settle_coin=coin)
    return list(dict.fromkeys(coins))


def _complete(found: Mapping[int, Position] | None) -> bool:
    # A settleCoin page lists open positions only: a hedge-mode symbol with one
    # side open has its other side still unread.
    return found is not None and (0 in found or {1, 2} <= found.keys())


def _decide(position: Position, flag: bool, classic: bool) -> EnsureRow:
    word = "on" if flag else "off"
    row = EnsureRow(position.symbol, position.position_idx, "planned", "", position)
    if position.auto_add_margin == flag:
        return replace(row, status="unchanged", reason=f"already {word}")
    if classic and position.trade_mode == 0:
        return replace(row, status="skipped", reason="cross margin (tradeMode 0, classic account)")
    return replace(row, reason=f"to turn {word}")


def _read_failed(symbol: str, error: Exception) -> EnsureRow:
    code = error.ret_code if isinstance(error, BybitAPIError) else None
    return EnsureRow(symbol, None, "failed", f"read: {_text(error)}", ret_code=code, error=error)


def _text(error: Exception) -> str:
    # BybitError's message names neither the key nor the secret.
    return error.message if isinstance(error, BybitError) else f"{type(error).__name__}: {error}"


async def _read_all(
    client: _Client, names: list[str] | None, coins: list[str], read_flat: bool = True
) -> tuple[dict[str, dict[int, Position]], dict[str, Exception], int]:
    """The positions of *coins* and of the symbols *names*, their read failures, and reads.

    Without *read_flat*, the named symbols the pages do not show in full are not read.
    """
    found: dict[str, dict[int, Position]] = {}
    reads = 0
    # An empty list of symbols needs no read at all.
    if names is None or names:
        pages = await asyncio.gather(
            *(_read_pages(client, position_list_params(settle_coin=coin)) for coin in coins),
            return_exceptions=True,
        )
        # Raised only once every coin's read has ended, so that none is left running.
        for page in pages:
            if isinstance(page, BaseException):
                raise page
        for positions, n in cast("list[tuple[list[Position], int]]", pages):
            reads += n
            for position in positions:
                found.setdefault(position.symbol, {})[position.position_idx] = position

    failures: dict[str, Exception] = {}
    if names is not None and read_flat:
        # Named symbols the pages did not show in full: no open position, or
        # one side of a hedge-mode pair.  Bybit answers a symbol read either way.
        missing = [name for name in names if not _complete(found.get(name))]
        outcomes = await asyncio.gather(
            *(_read_pages(client, position_list_params(symbol=name)) for name in missing),
            return_exceptions=True,
        )
        for name, outcome in zip(missing, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                reads += 1
                failures[name] = outcome
                continue
            positions, n = outcome
            reads += n
            listed: dict[int, Position] = {p.position_idx: p for p in positions if p.symbol == name}
            if not listed:
                failures[name] = InvalidResponseError(
                    f"no position listed for {name}".encode(), method="GET", path=POSITION_LIST
                )
            found[name] = listed

    return found, failures, reads


async def plan_auto_add_margin(
    client: _Client,
    symbols: Iterable[str] | None = None,
    on: bool | int = True,
    *,
    settle_coin: str | Sequence[str] | None = None,
    classic: bool = False,
    deadline: float | None = None,
    read_flat: bool = True,
) -> EnsureReport:
    """Read the positions and return the plan: a dry run's `EnsureReport`.

    See `BybitSession.ensure_auto_add_margin` for the arguments.  Rows that
    need a write have the status ``"planned"``.  *deadline* (s) bounds all the
    reads together.

    Without *read_flat*, a named symbol with no open position is not read (a
    read costs more than the write it would save: the write of a flat position
    answers "not modified" when nothing changes): its row is planned with
    ``position`` None, and `apply_plan` writes it as it is (see
    `apply_plan`).  The other side of a hedge-mode symbol with one side
    open is planned so too.
    """
    # Validated before any request, with the write's own check, so a bad
    # symbol fails the call instead of a row.
    if isinstance(symbols, str):
        raise TypeError("symbols must be an iterable of symbols, not one str")
    if isinstance(on, bool) or (isinstance(on, int) and on in (0, 1)):
        flag = bool(on)
    else:
        raise (ValueError if isinstance(on, int) else TypeError)(
            f"on must be True/False or 1/0, got {on!r}"
        )
    names: list[str] | None = None
    if symbols is not None:
        names = list(dict.fromkeys(symbols))
        for name in names:
            auto_add_margin_params(name, flag)
    coins = _coins(settle_coin)
    if not isinstance(classic, bool):
        raise TypeError(f"classic must be a bool, got {classic!r}")

    if not isinstance(read_flat, bool):
        raise TypeError(f"read_flat must be a bool, got {read_flat!r}")

    found, failures, reads = await _within(deadline, _read_all(client, names, coins, read_flat))

    rows: list[EnsureRow] = []
    for name in sorted(found) if names is None else names:
        if name in failures:
            rows.append(_read_failed(name, failures[name]))
            continue
        sides = found.get(name, {})
        rows += [_decide(p, flag, classic) for _, p in sorted(sides.items())]
        if names is not None and not read_flat and not _complete(sides):
            rows += _unread(name, sides, flag)
    return EnsureReport(flag, tuple(rows), reads, dry_run=True)


def _unread(name: str, open_sides: Mapping[int, Position], flag: bool) -> list[EnsureRow]:
    """The planned rows of a named symbol's positions the pages did not list: flat ones."""
    reason = f"to turn {'on' if flag else 'off'} (not open: written without a read)"
    if not open_sides:
        # One-way or hedge mode is unknown: written without positionIdx (see _write_unread).
        return [EnsureRow(name, None, "planned", reason)]
    # One side of a hedge-mode pair is open: the other is flat.
    (side,) = {PositionIdx.HEDGE_BUY, PositionIdx.HEDGE_SELL} - open_sides.keys()
    return [EnsureRow(name, PositionIdx(side), "planned", reason)]


async def _write(client: _Client, row: EnsureRow, flag: bool) -> EnsureRow:
    word = "on" if flag else "off"
    try:
        resp = await client.set_auto_add_margin(row.symbol, flag, position_idx=row.position_idx)
    except Exception as error:
        code = error.ret_code if isinstance(error, BybitAPIError) else None
        attempts = getattr(error, "attempts", None)
        row = replace(
            row,
            written=True,
            ret_code=code,
            error=error,
            attempts=attempts if isinstance(attempts, int) else None,
        )
        if isinstance(error, PositionError) and code in _NOT_APPLICABLE:
            reason = f"{_NOT_APPLICABLE[code]} (Bybit: {error.ret_msg or code})"
            return replace(row, status="skipped", reason=reason)
        return replace(row, status="failed", reason=_text(error))
    row = replace(row, written=True, ret_code=resp.ret_code, attempts=resp.attempts)
    if resp.modified:
        return replace(row, status="changed", reason=f"turned {word}")
    return replace(
        row, status="unchanged", reason=f"already {word} (Bybit: {resp.ret_msg or 'not modified'})"
    )


# What Bybit answers a write without positionIdx to a hedge-mode symbol.
_HEDGE_MODE: Final = "position idx not match"


async def _write_unread(
    client: _Client, row: EnsureRow, flag: bool, classic: bool
) -> tuple[list[EnsureRow], int]:
    """Write a row planned without a read; the rows it ends as, and the reads it took.

    Written without positionIdx, as in one-way mode; if Bybit answers that the
    symbol is in hedge mode, its positions are read and each side decided and
    written as a read row would be.
    """
    done = await _write(client, row, flag)
    error = done.error
    if not (isinstance(error, BybitAPIError) and _HEDGE_MODE in error.ret_msg):
        return [done], 0
    try:
        positions, reads = await _read_pages(client, position_list_params(symbol=row.symbol))
    except Exception as read_error:
        return [_read_failed(row.symbol, read_error)], 1
    sides = [p for p in positions if p.symbol == row.symbol]
    if not sides:
        missing = InvalidResponseError(
            f"no position listed for {row.symbol}".encode(), method="GET", path=POSITION_LIST
        )
        return [_read_failed(row.symbol, missing)], reads
    rows = [_decide(p, flag, classic) for p in sorted(sides, key=lambda p: p.position_idx)]
    written = await asyncio.gather(
        *(_write(client, r, flag) for r in rows if r.status == "planned")
    )
    it = iter(written)
    return [next(it) if r.status == "planned" else r for r in rows], reads


async def apply_plan(
    client: _Client,
    plan: EnsureReport,
    *,
    on_row: Callable[[EnsureRow], None] | None = None,
    classic: bool = False,
) -> EnsureReport:
    """Send the plan's writes concurrently and return the outcome.

    Only ``"planned"`` rows are written, each through
    ``client.set_auto_add_margin`` (its limiter, retries and not-modified
    handling).  One write's failure stops no other.  *on_row* is called with
    every row once its outcome is known: at once for rows that need no write,
    then for each write as it finishes.

    A row planned without a read (``position`` and ``position_idx`` None) is
    written without positionIdx; if Bybit answers that the symbol is in hedge
    mode, its two sides are read, decided (with *classic* as in
    `plan_auto_add_margin`) and written as needed, and the row becomes one
    row per side.
    """
    flag = plan.auto_add_margin

    async def write(row: EnsureRow) -> tuple[list[EnsureRow], int]:
        if row.position is None and row.position_idx is None:
            done, reads = await _write_unread(client, row, flag, classic)
        else:
            done, reads = [await _write(client, row, flag)], 0
        if on_row is not None:
            for one in done:
                on_row(one)
        return done, reads

    if on_row is not None:
        for row in plan.rows:
            if row.status != "planned":
                on_row(row)
    written = iter(
        await asyncio.gather(*(write(row) for row in plan.rows if row.status == "planned"))
    )
    ordered: list[EnsureRow] = []
    reads = plan.reads
    for row in plan.rows:
        if row.status != "planned":
            ordered.append(row)
            continue
        done, more = next(written)
        ordered += done
        reads += more
    return EnsureReport(flag, tuple(ordered), reads, dry_run=False)


async def ensure_auto_add_margin(
    client: _Client,
    symbols: Iterable[str] | None = None,
    on: bool | int = True,
    *,
    settle_coin: str | Sequence[str] | None = None,
    classic: bool = False,
    dry_run: bool = False,
    deadline: float | None = None,
) -> EnsureReport:
    """Read, then write only what differs; see `BybitSession.ensure_auto_add_margin`.

    *deadline* (s) bounds the reads together; each write is a call of its own.
    """
    # A dry run reads every named position, to say what a write would do; a
    # real one writes the flat ones without reading them first.
    plan = await plan_auto_add_margin(
        client,
        symbols,
        on,
        settle_coin=settle_coin,
        classic=classic,
        deadline=deadline,
        read_flat=dry_run,
    )
    if dry_run:
        return plan
    return await apply_plan(client, plan, classic=classic)
