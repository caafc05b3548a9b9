"""The documentation's code runs here, so README.md and docs/ cannot drift from the code.

Convention for ```python blocks in README.md and docs/*.md
------------------------------------------------------------
Every ```python block is a *complete example* unless the nearest non-blank line
before its opening fence is an HTML comment (invisible in the rendered page)::

    <!-- doc-test: TAG [TAG ...] -->

with these tags:

``fragment``
    Part of a program: only compiled, with top-level ``await`` allowed.
``pytest``
    A test module: written to a temporary directory and run with pytest in a
    subprocess, with ``asyncio_mode = "auto"`` as docs/testing.md says to configure.
``py311``
    Needs Python 3.11 or later (``asyncio.TaskGroup``, ``except*``); skipped on 3.10.

A complete example runs as ``__main__`` in a worker thread while a fresh
``BybitSimulator`` stands in for Bybit: ``BYBIT_API_KEY`` and ``BYBIT_API_SECRET``
hold its credentials, and every name in ``bybit_async.session.HOSTS`` points to it,
so ``testnet=True``, ``demo=True``, the default host and host names all reach it.
In that simulator XRPUSDT is a cross-margin position (set-auto-add-margin answers
110076) and ETHUSDT already has auto-add-margin on (a not-modified answer), so
examples' error branches run too.  Examples must not give a literal URL.

Blocks in other languages (``bash``, ``text``, ``toml``) are not run.  The tables
in the docs that restate the code (retCodes, HTTP statuses, retry rules, classes,
not-modified answers, hosts, command-line options) are checked against it below.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import bybit_async
from bybit_async import errors, retry, session, testing
from bybit_async.testing import BybitSimulator

from .redis_fixtures import redis_server as redis_server  # for examples that read REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TAGS = {"fragment", "pytest", "py311"}
HOSTS = dict(session.HOSTS)  # the real hosts, before any test redirects them

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*doc-test:(?P<tags>[^>]*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One ```python block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    source: str
    tags: frozenset[str]

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _blocks(page: Path) -> Iterator[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language = (match["info"].split() or [""])[0].lstrip("{.").lower()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not re.match(
            rf"^{indent}{fence[0]}{{{len(fence)},}}\s*$", lines[i]
        ):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if language not in ("python", "py"):
            continue
        previous = next((text for text in reversed(lines[:start]) if text.strip()), "")
        marker = _MARKER.match(previous)
        tags = frozenset(marker["tags"].split()) if marker else frozenset()
        yield Block(page, start + 1, "\n".join(body) + "\n", tags)


BLOCKS = [block for page in PAGES for block in _blocks(page)]


def _select(*, with_tag: str | None = None, without: tuple[str, ...] = ()) -> list[Block]:
    return [
        b
        for b in BLOCKS
        if (with_tag is None or with_tag in b.tags) and not any(t in b.tags for t in without)
    ]


def _params(blocks: list[Block]) -> list[object]:
    marks = [
        pytest.mark.skipif(sys.version_info < (3, 11), reason="needs Python 3.11+")
        if "py311" in b.tags
        else ()
        for b in blocks
    ]
    return [pytest.param(b, id=b.id, marks=m) for b, m in zip(blocks, marks, strict=True)]


# -- the blocks ---------------------------------------------------------------


def test_blocks_found_and_tags_known() -> None:
    assert len(_select(without=("fragment", "pytest"))) >= 10
    assert _select(with_tag="pytest")
    for block in BLOCKS:
        assert block.tags <= TAGS, f"{block.id}: unknown doc-test tag {set(block.tags - TAGS)}"
        assert not {"fragment", "pytest"} <= block.tags, f"{block.id}: fragment or pytest"


@pytest.mark.parametrize("block", _params(BLOCKS))
def test_block_compiles(block: Block) -> None:
    compile(block.source, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _run_as_main(block: Block) -> None:
    code = compile(block.source, block.id, "exec")
    status: object = None
    try:
        exec(code, {"__name__": "__main__", "__file__": block.id})
    except SystemExit as exit_:
        status = exit_.code
    assert status in (0, None), f"{block.id} exited with {status!r}"


@pytest.mark.parametrize("block", _params(_select(without=("fragment", "pytest"))))
async def test_complete_example(
    block: Block, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    for scheme in ("http://", "https://"):
        assert scheme not in block.source, f"{block.id}: name a host (testnet=True), not a URL"
    if "REDIS_URL" in block.source:
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_server").url)
    async with BybitSimulator() as sim:
        sim.set_position("XRPUSDT", margin_mode="cross")
        sim.set_position("ETHUSDT", auto_add_margin=1)
        monkeypatch.setattr(session, "HOSTS", dict.fromkeys(HOSTS, sim.url))
        monkeypatch.setenv("BYBIT_API_KEY", sim.api_key)
        monkeypatch.setenv("BYBIT_API_SECRET", sim.api_secret)
        await asyncio.wait_for(asyncio.to_thread(_run_as_main, block), timeout=15)


PYTEST_CONFIG = """\
[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""


@pytest.mark.parametrize("block", _params(_select(with_tag="pytest")))
def test_pytest_example(block: Block, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYTEST_CONFIG)
    (tmp_path / "test_example.py").write_text(block.source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONASYNCIODEBUG"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-m",
            "pytest",
            "-W",
            "error",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"{block.id}:\n{proc.stdout}\n{proc.stderr}"
    assert " passed" in proc.stdout


def test_testing_page_shows_the_pytest_config() -> None:
    assert 'asyncio_mode = "auto"' in _text("testing.md")


# -- tables that restate the code -----------------------------------------------------


def _text(name: str) -> str:
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def _rows(name: str) -> list[list[str]]:
    """Body rows of every Markdown table on the page, cells stripped of backticks."""
    rows = []
    for line in _text(name).splitlines():
        line = line.strip()
        if line.startswith("|") and not re.match(r"^\|[\s:|-]+\|$", line):
            rows.append([c.strip().replace("`", "") for c in line.strip().strip("|").split("|")])
    return rows


def _retried(cls: type[BaseException]) -> str:
    rule = retry.rule_for(cls.__new__(cls))
    return {"always": "always", "if idempotent": "if idempotent", "never": "no"}[rule.retry.value]


def _class_named(cell: str) -> type[errors.BybitError] | None:
    cls = getattr(errors, cell.split()[0], None) if cell else None
    return cls if isinstance(cls, type) and issubclass(cls, errors.BybitError) else None


def test_retries_page_tables_match_the_code() -> None:
    seen_codes: set[int] = set()
    seen_statuses: set[int] = set()
    for row in _rows("retries.md"):
        if len(row) < 3 or (cls := _class_named(row[1])) is None:
            continue
        assert row[2] == _retried(cls), f"retries.md row {row}: retried is {_retried(cls)!r}"
        resync = retry.rule_for(cls.__new__(cls)).resync_clock
        assert resync == ("re-sync" in " ".join(row[3:])), f"retries.md row {row}: re-sync"
        key = row[0].split()[0]
        if key.isdigit() and int(key) >= 1000:
            error = errors.error_for_ret_code(int(key), "", None, method="POST", path="/p")
            assert type(error) is cls, f"retCode {key} is raised as {type(error).__name__}"
            seen_codes.add(int(key))
        elif key.isdigit():
            http_error = errors.error_for_status(int(key), b"", method="POST", path="/p")
            assert type(http_error) is cls, f"HTTP {key} is raised as {type(http_error).__name__}"
            seen_statuses.add(int(key))
        elif key == "110xxx":
            assert cls is type(errors.error_for_ret_code(110999, "", None, method="", path=""))
        elif key == "other":
            assert cls is type(errors.error_for_ret_code(99999, "", None, method="", path=""))
    assert seen_codes == set(errors.RET_CODE_ERRORS)
    assert set(errors.HTTP_STATUS_ERRORS) <= seen_statuses
    for cls in retry.RETRY_RULES:
        assert f"`{cls.__name__}`" in _text("retries.md"), f"retries.md lacks {cls.__name__}"


def test_not_modified_tables_match_the_code() -> None:
    expected = {
        (path, code, needle or "(any)")
        for path, entries in errors.NOT_MODIFIED.items()
        for code, needle in entries
    }
    for page in ("retries.md", "errors.md"):
        rows = {(r[0], int(r[1]), r[2]) for r in _rows(page) if r[0].startswith("/v5/")}
        assert rows == expected, page
    assert f"`{testing.NOT_MODIFIED_MSG}`" in _text("protocol-notes.md")


def test_errors_page_table_matches_the_code() -> None:
    documented = set()
    for row in _rows("errors.md"):
        cls = _class_named(row[0])
        if cls is None or len(row) < 5:
            continue
        documented.add(cls)
        assert row[1] == cls.__bases__[0].__name__, f"errors.md: base of {cls.__name__}"
        codes = {int(c) for c in re.findall(r"\d{5,}", row[2])}
        mapped = {c for c, (k, _) in errors.RET_CODE_ERRORS.items() if k is cls}
        assert codes == mapped, f"errors.md: retCodes of {cls.__name__}"
        statuses = {int(s) for s in re.findall(r"\b[45]\d\d\b", row[3])}
        assert statuses == {s for s, k in errors.HTTP_STATUS_ERRORS.items() if k is cls}
        assert row[4] == _retried(cls), f"errors.md: retried for {cls.__name__}"
    classes = {
        getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)
    }
    assert documented == classes
    assert all(getattr(bybit_async, cls.__name__) is cls for cls in classes)


def test_hosts_table_matches_the_code() -> None:
    rows = {r[0]: r[1] for r in _rows("getting-started.md") if r and r[1].startswith("https://")}
    assert rows == {f'base_url="{name}"': url for name, url in HOSTS.items()} | {
        "(default)": HOSTS["mainnet"],
        "testnet=True": HOSTS["testnet"],
        "demo=True": HOSTS["demo"],
    }


def test_api_reference_pages_cover_the_modules() -> None:
    text = "\n".join(p.read_text() for p in (ROOT / "docs").glob("api*.md"))
    for module in ("errors", "testing", "ratelimit", "retry", "clock", "signing"):
        assert f"::: bybit_async.{module}\n" in text
    assert "::: bybit_async\n" in text
    assert bybit_async.__version__


def test_cli_page_lists_every_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bybit_async", "set-auto-add-margin", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip("bybit_async has no set-auto-add-margin command yet")
    page = _text("cli.md")
    for option in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", proc.stdout))):
        assert f"`{option}" in page, f"cli.md does not document {option}"
