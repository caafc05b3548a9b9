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
``no-config``
    With ``pytest``: run with no configuration file at all (pytest-asyncio's
    strict mode, its loop scope option unset), as a new user's project is.
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
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

import bybit_async
from bybit_async import errors, positions, retry, session, testing
from bybit_async.testing import BybitSimulator
from bybit_async.testing.accounts import SYMBOL_PATTERN as SIM_SYMBOL

from .redis_fixtures import redis_server as redis_server  # for examples that read REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TAGS = {"fragment", "pytest", "py311", "no-config"}
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
    if "no-config" not in block.tags:
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


def test_readme_figures_each_have_a_date() -> None:
    """A figure says when it was measured: the code moves on, the figure does not."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("What the last runs of `make bench` measured") :]
    section = section[: section.index("\n## ")]
    bullets = re.split(r"\n- ", section)[1:]
    assert len(bullets) >= 6
    for bullet in bullets:
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", bullet), bullet


def test_demo_sample_is_the_demo_s_summary_line() -> None:
    from bybit_async.demo import summary_line

    shape = re.escape(summary_line(11, 22, 33.0, busiest=44, rejected=55, lowest_left=66))
    for number in ("11", "22", "33\\.00", "44", "55", "66"):
        shape = shape.replace(number, r"[0-9.]+", 1)
    page = _text("getting-started.md")
    (line,) = [line for line in page.splitlines() if re.match(r"\d+ ok, \d+ failed in ", line)]
    assert re.fullmatch(shape, line), line
    assert "requests/s" not in page


def test_every_example_that_needs_keys_says_how_to_use_the_simulator() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    needing = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL):
            if 'os.environ["BYBIT_API_KEY"]' in block:
                needing += 1
                assert "BYBIT_SIMULATOR_URL" in block, f"{page.name}:\n{block}"
        if "export BYBIT_API_KEY=..." in text:
            assert "--base-url http://127.0.0.1:" in text or "#without-keys" in text, page.name
    assert needing >= 20
    guide = _text("getting-started.md")
    section = guide[guide.index("## Without keys") :]
    assert "python -m bybit_async.testing" in section
    assert 'base_url=os.environ["BYBIT_SIMULATOR_URL"]' in section


def test_cli_page_command_table_lists_every_command() -> None:
    from bybit_async import cli

    page = _text("cli.md")
    table = page[: page.index("\n## ")]
    for command in cli.COMMANDS:
        assert f"| `bybit-async {command.name}" in table, command.name
        if command.name != "demo":
            assert f"## `{command.name}`" in page, command.name


def test_hosts_table_matches_the_code() -> None:
    rows = {r[0]: r[1] for r in _rows("getting-started.md") if r and r[1].startswith("https://")}
    assert rows == {f'base_url="{name}"': url for name, url in HOSTS.items()} | {
        "(default)": HOSTS["mainnet"],
        "testnet=True": HOSTS["testnet"],
        "demo=True": HOSTS["demo"],
    }


def test_api_reference_pages_cover_the_modules() -> None:
    text = "\n".join(p.read_text() for p in (ROOT / "docs").glob("api*.md"))
    for module in (
        "errors",
        "testing",
        "ratelimit",
        "endpoint_limits",
        "egress",
        "retry",
        "clock",
        "signing",
        "events",
        "stats",
    ):
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


# -- the built site -------------------------------------------------------------------

_HREF = re.compile(r"""\s(?:href|src)="([^"#?]*)[^"]*\"""")


def test_built_site_links_resolve_to_files_from_disk(tmp_path: Path) -> None:
    """Opened from disk (file://), a link to a directory shows a listing, not its index.html."""
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= len(list((ROOT / "docs").glob("*.md")))
    broken = []
    checked = 0
    for page in pages:
        if page.name == "404.html":
            continue  # only a web server shows it, and its links are absolute for that
        for link in _HREF.findall(page.read_text(encoding="utf-8")):
            if not link or re.match(r"^[a-z][a-z0-9+.-]*:", link):
                continue  # same page, or another site
            checked += 1
            target = (page.parent / link).resolve()
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {link}")
    assert checked > 100
    assert not broken, "\n".join(broken[:20])
    # The stylesheet that keeps class names whole and code blocks uncut is on every page.
    for page in pages:
        assert "stylesheets/extra.css" in page.read_text(encoding="utf-8"), page.name
    css = (site / "stylesheets" / "extra.css").read_text()
    assert re.search(r"table:not\(\[class\]\) code \{[^}]*word-break: normal", css)


def test_errors_page_code_fits_the_widened_grid() -> None:
    """The error tree was cut off at Material's 61rem grid; extra.css widens it to 80rem."""
    widest = max(len(line) for block in _code_blocks("errors.md") for line in block)
    assert widest <= 90
    css = (ROOT / "docs" / "stylesheets" / "extra.css").read_text()
    assert re.search(r"\.md-grid \{\s*max-width: 80rem;", css)


def _code_blocks(name: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in _text(name).splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


# -- the command line's sample output -------------------------------------------------

SAMPLE_PORT = "8321"
_GENERATED = re.compile(
    r"<!-- generated by tests/test_docs.py: (?P<name>[\w-]+) -->\n\n```console\n"
    r"\$ (?P<command>[^\n]+)\n(?P<output>.*?)```\n",
    re.DOTALL,
)


def _normalized(text: str) -> str:
    """The output without what changes between runs: the port, elapsed times and waits."""
    text = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{SAMPLE_PORT}", text)
    text = re.sub(r'"elapsed_s": [0-9.]+', '"elapsed_s": 0.01', text)
    text = re.sub(r'"(limiter_wait_(?:wall|sum|max)_s)": [0-9.]+', r'"\1": 0.0', text)
    text = re.sub(
        r"limiter wait: [0-9.]+ s of wall time \(summed over calls [0-9.]+ s, max [0-9.]+ s\), "
        r"elapsed: [0-9.]+ s",
        "limiter wait: 0.00 s of wall time (summed over calls 0.00 s, max 0.00 s), elapsed: 0.01 s",
        text,
    )
    return re.sub(r" in [0-9.]+ s:", " in 0.01 s:", text)


async def _run_cli(args: list[str], env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bybit_async",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode in (0, 1), err.decode()
    return out.decode()


async def test_cli_page_samples_are_real_output() -> None:
    """The console samples in cli.md are what the command prints against the simulator.

    With BYBIT_ASYNC_WRITE_DOCS=1 the test rewrites them from this run instead.
    """
    page = ROOT / "docs" / "cli.md"
    text = page.read_text(encoding="utf-8")
    samples = list(_GENERATED.finditer(text))
    assert {m["name"] for m in samples} >= {"table", "json", "failures-only", "summary-json"}
    rewritten = text
    for sample in samples:
        argv = sample["command"].split()
        assert argv[0] == "bybit-async", sample["command"]
        # A fresh simulator per sample, set up as for the pages' examples.
        async with BybitSimulator() as sim:
            sim.set_position("XRPUSDT", margin_mode="cross")
            sim.set_position("ETHUSDT", auto_add_margin=1)
            env = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT_")}
            for key in ("FORCE_COLOR", "NO_COLOR", "TERM"):
                env.pop(key, None)
            env.update(BYBIT_API_KEY=sim.api_key, BYBIT_API_SECRET=sim.api_secret, COLUMNS="200")
            args = [sim.url if a.startswith("http://127.0.0.1:") else a for a in argv[1:]]
            out = _normalized(await _run_cli(args, env))
        expected = sample["output"]
        if "--json" in args and "--summary-only" not in args:
            # One line per symbol as each finishes: the order varies.
            # The summary record comes last.
            lines = sorted(
                out.splitlines(True),
                key=lambda line: len(args) if "summary" in line else args.index(json_symbol(line)),
            )
            assert sorted(lines) == sorted(expected.splitlines(True)) or _writing(), out
            out = "".join(lines)
        else:
            assert out == expected or _writing(), f"cli.md {sample['name']}:\n{out}"
        block = sample.group(0)
        fresh = block[: sample.start("output") - sample.start()] + out + "```\n"
        rewritten = rewritten.replace(block, fresh)
    if _writing():
        page.write_text(rewritten, encoding="utf-8")


def _writing() -> bool:
    return os.environ.get("BYBIT_ASYNC_WRITE_DOCS") == "1"


def json_symbol(line: str) -> str:
    symbol = json.loads(line)["symbol"]
    assert isinstance(symbol, str)
    return symbol


# -- statements the pages make about the code -------------------------------------------


def test_protocol_notes_symbol_rule_matches_session_and_simulator() -> None:
    # The rule lives with set-auto-add-margin's parameters, in positions.py.
    pattern = positions._SYMBOL.pattern.removesuffix(r"\Z")
    assert SIM_SYMBOL.pattern == pattern
    row = next(r for r in _rows("protocol-notes.md") if r[0].startswith("Symbols may"))
    assert pattern in row[1]
    assert "session and the simulator" in row[1]
    for symbol in ("BTCUSDT", "BTC-27DEC24"):
        session.auto_add_margin_params(symbol, True)
        assert SIM_SYMBOL.fullmatch(symbol)


def test_symbol_error_messages_name_hyphens() -> None:
    with pytest.raises(ValueError, match="letters, digits and hyphens") as raised:
        session.auto_add_margin_params("btc/usdt", True)
    assert "letters and digits" not in str(raised.value)
    sim = BybitSimulator()
    with pytest.raises(ValueError, match="letters, digits and hyphens"):
        sim.set_position("btc/usdt")


async def test_request_page_quotes_the_simulators_404() -> None:
    async with (
        BybitSimulator() as sim,
        bybit_async.BybitSession(sim.api_key, sim.api_secret, base_url=sim.url) as client,
    ):
        with pytest.raises(errors.HTTPStatusError) as raised:
            await client.request("GET", "/v5/order/realtime", {"category": "linear"})
    assert raised.value.status == 404
    message = orjson.loads(raised.value.body)["retMsg"]
    assert message in _text("request.md")
    assert "not implemented by the simulator" in message


# The simulator's dataclasses are being moved into the bybit_async.testing package;
# their field docs come with that change.
_FIELD_DOCS_PENDING = {"Fault", "Position", "RecordedRequest"}


def test_public_dataclass_fields_have_meanings_in_help() -> None:
    """help() shows a class's docstring but nothing for a slotted field: name each field there."""
    import dataclasses
    import importlib
    import pydoc

    checked = []
    for name in (
        "models",
        "cli",
        "retry",
        "ratelimit",
        "clock",
        "errors",
        "testing",
        "events",
        "stats",
    ):
        module = importlib.import_module(f"bybit_async.{name}")
        for public in getattr(module, "__all__", ()):
            cls = getattr(module, public)
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                continue
            if public in _FIELD_DOCS_PENDING:
                continue
            shown = pydoc.render_doc(cls, renderer=pydoc.plaintext)
            for field in dataclasses.fields(cls):
                assert re.search(rf":ivar {field.name}: \S|\*{field.name}\*", shown), (
                    f"help({public}) does not say what {field.name} means"
                )
            checked.append(public)
    assert {
        "ApiResponse",
        "Outcome",
        "RetryRule",
        "RateLimits",
        "AttemptAnswered",
        "SessionStats",
    } <= set(checked)


def test_endpoint_limits_page_is_made_from_the_table() -> None:
    from bybit_async import endpoint_limits

    assert _text("endpoint-limits.md") == endpoint_limits.markdown(), (
        "docs/endpoint-limits.md is stale: python -m bybit_async.endpoint_limits > "
        "docs/endpoint-limits.md"
    )
