"""The ``bybit-async`` command, run as a user runs it: a subprocess against the simulator.

The simulator runs in the test's own event loop, so every command is started
with :func:`asyncio.create_subprocess_exec` and awaited, never waited on in a
way that would block the loop.  Commands run like the tests do, in development
mode with warnings as errors, so an unclosed session or a stray warning shows
on their stderr.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bybit_async import cli
from bybit_async.testing import NOT_MODIFIED_MSG, BybitSimulator, Fault

PATH = "/v5/position/set-auto-add-margin"
SET = "set-auto-add-margin"
# The longest any one command may run before the test fails.
DEADLINE = 20.0
# How soon a command must exit after SIGINT.
EXIT_AFTER_SIGINT = 5.0
# The client keeps to 10 requests/s by default; the simulator here allows 1000.
FAST = ("--rate-limit", "1000")
PYTHON = (sys.executable, "-X", "dev", "-W", "error")
# The command with rich made unimportable, as when the cli extra is not installed.
NO_RICH = (
    *PYTHON,
    "-c",
    "import sys; sys.modules['rich'] = None; "
    "from bybit_async.__main__ import main; sys.exit(main())",
)
SYMBOLS = [f"S{i:03d}USDT" for i in range(100)]
SECRET = "s3cret-that-must-never-be-printed"
# What a clean stderr must not contain.
NOISE = ("Traceback", "Exception ignored", "Unclosed", "was destroyed", "never retrieved")
_SLOW = re.compile(r"Executing <.*> took [0-9.]+ seconds$")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


@dataclass
class Ran:
    """A finished command: its exit status and output."""

    status: int
    out: str
    err: str

    def records(self) -> list[dict[str, Any]]:
        """The ``--json`` lines, without the final summary record."""
        objects = [json.loads(line) for line in self.out.splitlines()]
        return [o for o in objects if "summary" not in o]

    def summary(self) -> dict[str, Any]:
        """The ``--json`` output's final record: the run's requests, retries and waits."""
        last = json.loads(self.out.splitlines()[-1])
        assert set(last) == {"summary"}, self.out
        summary: dict[str, Any] = last["summary"]
        return summary

    def json(self) -> dict[str, dict[str, Any]]:
        """The ``--json`` lines by symbol; each symbol must appear once."""
        objects = self.records()
        by_symbol = {o["symbol"]: o for o in objects}
        assert len(by_symbol) == len(objects), self.out
        return by_symbol

    def table(self) -> dict[str, list[str]]:
        """The table's rows by symbol: outcome, retCode, message, attempts."""
        return table_rows(self.out)

    @property
    def errors(self) -> str:
        """stderr without asyncio debug mode's slow-callback notes, which a busy machine causes."""
        return "".join(line for line in self.err.splitlines(True) if not _SLOW.match(line))

    def assert_clean(self) -> None:
        for noise in NOISE:
            assert noise not in self.err, self.err


def table_rows(text: str) -> dict[str, list[str]]:
    """Rows of a rich table in *text* by their first cell (wrapped lines are skipped)."""
    rows = {}
    for line in _ANSI.sub("", text).splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 5 and cells[0] and cells[0] != "symbol":
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
async def sim() -> AsyncIterator[BybitSimulator]:
    # The endpoint's limit raised so that 100 symbols take a second, not ten.
    async with BybitSimulator(endpoint_limits={PATH: 1000}, instruments=None) as simulator:
        yield simulator


def cli_env(sim: BybitSimulator | None = None, **extra: str) -> dict[str, str]:
    """The environment for a command: *sim*'s keys if given, and a wide, plain terminal."""
    drop = ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "LINES", "TERM")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYBIT_") and k not in drop}
    env["COLUMNS"] = "200"
    if sim is not None:
        env["BYBIT_API_KEY"] = sim.api_key
        env["BYBIT_API_SECRET"] = sim.api_secret
    env.update(extra)
    return env


async def finish(proc: asyncio.subprocess.Process, timeout: float = DEADLINE) -> Ran:
    """Wait for *proc* (killing it after *timeout*) and return what it did."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    # A stream not piped (a pseudo-terminal, say) reads as empty.
    return Ran(proc.returncode, (out or b"").decode(), (err or b"").decode())


async def run(
    *args: str,
    env: dict[str, str],
    command: Sequence[str] = (*PYTHON, "-m", "bybit_async"),
    stdin: bytes | None = None,
) -> Ran:
    """Run the command with *args* to the end."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        *args,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    return await finish(proc)


async def start(
    *args: str, env: dict[str, str], stdout: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """Start the command with *args*: stdin empty, stderr (and by default stdout) piped."""
    return await asyncio.create_subprocess_exec(
        *PYTHON,
        "-m",
        "bybit_async",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


@asynccontextmanager
async def killed_on_failure(proc: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """Kill *proc*, and wait for it, if the block raises (a failed assertion, say)."""
    try:
        yield
    except BaseException:
        proc.kill()
        await proc.wait()
        raise


_CLI_PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


async def assert_cli_page_documents_every_option(command: str) -> None:
    """Check that docs/cli.md's section on *command* names every option its --help lists."""
    ran = await run(command, "--help", env=cli_env())
    page = _CLI_PAGE.read_text(encoding="utf-8")
    section = page[page.index(f"## `{command}`") :]
    for option in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", ran.out))):
        assert f"`{option}" in section, f"cli.md's {command} section does not document {option}"


@contextmanager
def sigint_deliverable() -> Iterator[None]:
    """Make sure a child started in this block does not inherit SIGINT as ignored.

    A test run started in the background of a non-interactive shell ignores
    SIGINT, and children inherit that; the command keeps an ignored SIGINT
    ignored, as Python does, so the signal tests would see nothing.
    """
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- setting many symbols ---------------------------------------------------------


async def test_100_symbols_on_as_table_then_off_as_json(sim: BybitSimulator) -> None:
    on = await run(SET, *SYMBOLS, "--on", "--base-url", sim.url, *FAST, env=cli_env(sim))
    assert on.status == 0, on.err
    on.assert_clean()
    rows = on.table()
    assert sorted(rows) == SYMBOLS
    assert all(row == ["set", "0", "OK", "1"] for row in rows.values()), rows
    # Not a terminal: the table in plain text, and no progress bar.
    assert "\x1b[" not in on.out
    assert "/100" not in on.out
    assert on.out.startswith(f"auto-add-margin on at {sim.url}: 100 symbols\n")
    assert re.search(r"^100 symbols in [0-9.]+ s: 100 set$", on.out, re.MULTILINE), on.out
    assert all(sim.auto_add_margin(s) == 1 for s in SYMBOLS)

    off = await run(
        SET, *SYMBOLS, "--off", "--base-url", sim.url, *FAST, "--json", env=cli_env(sim)
    )
    assert (off.status, off.errors) == (0, "")
    results = off.json()
    assert sorted(results) == SYMBOLS
    assert results["S042USDT"] == {
        "symbol": "S042USDT",
        "outcome": "set",
        "ok": True,
        "modified": True,
        "ret_code": 0,
        "message": "OK",
        "attempts": 1,
        "error": None,
    }
    assert all(r["ok"] and r["modified"] for r in results.values())
    assert all(sim.auto_add_margin(s) == 0 for s in SYMBOLS)
    assert sim.count(PATH) == 200
    assert sim.count(ret_code=10006) == 0


def mixed_positions(sim: BybitSimulator) -> list[str]:
    """Symbols where XRPUSDT is refused (cross margin) and ETHUSDT is already on."""
    sim.set_position("XRPUSDT", margin_mode="cross")
    sim.set_position("ETHUSDT", auto_add_margin=1)
    return ["BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT", "ADAUSDT", "DOTUSDT"]


async def test_failing_symbol_does_not_stop_the_others_json(sim: BybitSimulator) -> None:
    symbols = mixed_positions(sim)
    ran = await run(SET, *symbols, "--on", "--base-url", sim.url, *FAST, "--json", env=cli_env(sim))
    assert (ran.status, ran.errors) == (1, "")
    results = ran.json()
    assert sorted(results) == sorted(symbols)
    assert results["XRPUSDT"] == {
        "symbol": "XRPUSDT",
        "outcome": "failed",
        "ok": False,
        "modified": None,
        "ret_code": 110076,
        "message": "Only isolated mode can set auto-add-margin",
        "attempts": 1,
        "error": "PositionError",
    }
    assert results["ETHUSDT"]["outcome"] == "already on"
    assert (results["ETHUSDT"]["ok"], results["ETHUSDT"]["modified"]) == (True, False)
    for symbol in ("BTCUSDT", "SOLUSDT", "ADAUSDT", "DOTUSDT"):
        assert results[symbol]["outcome"] == "set"
        assert sim.auto_add_margin(symbol) == 1
    assert sim.auto_add_margin("XRPUSDT") == 0


async def test_failing_symbol_in_the_table(sim: BybitSimulator) -> None:
    symbols = mixed_positions(sim)
    ran = await run(SET, *symbols, "--on", "--base-url", sim.url, *FAST, env=cli_env(sim))
    assert ran.status == 1, ran.err
    ran.assert_clean()
    rows = ran.table()
    # In the order given, not the order they finished.
    assert list(rows) == symbols
    assert rows["XRPUSDT"] == [
        "failed",
        "110076",
        "Only isolated mode can set auto-add-margin",
        "1",
    ]
    assert rows["ETHUSDT"] == ["already on", "10001", NOT_MODIFIED_MSG, "1"]
    assert rows["BTCUSDT"] == ["set", "0", "OK", "1"]
    assert "6 symbols in " in ran.out
    assert ": 4 set, 1 already on, 1 failed\n" in ran.out


@pytest.mark.parametrize("columns", ["80", "40", None])
async def test_piped_output_is_not_wrapped(sim: BybitSimulator, columns: str | None) -> None:
    """Piped to a file or grep, each row and the summary stay on one line, however narrow."""
    symbols = mixed_positions(sim)
    env = cli_env(sim)
    if columns is None:
        del env["COLUMNS"]
    else:
        env["COLUMNS"] = columns
    ran = await run(SET, *symbols, "--on", "--base-url", sim.url, *FAST, env=env)
    assert ran.status == 1, ran.err
    lines = ran.out.splitlines()
    assert table_rows(ran.out)["XRPUSDT"] == [
        "failed",
        "110076",
        "Only isolated mode can set auto-add-margin",
        "1",
    ]
    # Borders, the header, one line per symbol, the title and the two summary lines.
    assert len(lines) == len(symbols) + 4 + 3, ran.out
    (summary,) = [line for line in lines if line.startswith("requests: ")]
    assert _TRAFFIC.fullmatch(summary), summary
    assert any(line.startswith("6 symbols in ") and line.endswith("1 failed") for line in lines)


async def test_not_modified_counts_as_success(sim: BybitSimulator) -> None:
    sim.set_position("BTCUSDT", auto_add_margin=0)
    ran = await run(SET, "BTCUSDT", "--off", "--base-url", sim.url, "--json", env=cli_env(sim))
    assert ran.status == 0, ran.err
    assert ran.json()["BTCUSDT"]["outcome"] == "already off"


async def test_hedge_mode_position_idx(sim: BybitSimulator) -> None:
    sim.set_position("ETHUSDT", hedge=True)
    args = (SET, "ETHUSDT", "--on", "--position-idx", "2", "--base-url", sim.url, "--json")
    ran = await run(*args, env=cli_env(sim))
    assert ran.status == 0, ran.err
    assert (sim.auto_add_margin("ETHUSDT", 1), sim.auto_add_margin("ETHUSDT", 2)) == (0, 1)


# -- usage errors -------------------------------------------------------------------


async def expect_all(cases: Sequence[tuple[Sequence[str], dict[str, str], int, str]]) -> list[Ran]:
    """Run every (args, env, status, stderr excerpt) case at once; check each."""
    ran = await asyncio.gather(*(run(*args, env=env) for args, env, _, _ in cases))
    problems = []
    for (args, _, status, excerpt), r in zip(cases, ran, strict=True):
        if r.status != status or excerpt not in r.errors or any(n in r.err for n in NOISE):
            problems.append(f"{list(args)}: exit {r.status}\n{r.err}")
    assert not problems, "\n".join(problems)
    return ran


async def test_missing_keys_is_one_line_and_exit_2(sim: BybitSimulator) -> None:
    args = (SET, "BTCUSDT", "--on", "--base-url", sim.url)
    no_secret = cli_env(BYBIT_API_KEY="k")
    ran = await expect_all(
        [
            (args, cli_env(), 2, "BYBIT_API_KEY and BYBIT_API_SECRET are not set"),
            (args, no_secret, 2, "BYBIT_API_SECRET is not set"),
            (args, cli_env(BYBIT_API_KEY="", BYBIT_API_SECRET="s"), 2, "BYBIT_API_KEY is not"),
            ((*args, "--json"), no_secret, 2, "BYBIT_API_SECRET is not set"),
        ]
    )
    for r in ran:
        assert r.out == ""
        assert r.errors.count("\n") == 1, r.err
        assert "--key-file" in r.err
    assert sim.requests == []


async def test_bad_arguments_exit_2_before_any_request(sim: BybitSimulator, tmp_path: Path) -> None:
    env = cli_env(sim)
    url = ("--base-url", sim.url)
    bad_file = tmp_path / "symbols.txt"
    bad_file.write_text("BTCUSDT\n\n# fine so far\neth-usdt\n")
    await expect_all(
        [
            ((), env, 2, "required: COMMAND"),
            ((SET, "BTCUSDT", *url), env, 2, "one of the arguments --on --off is required"),
            ((SET, "btcusdt", "ETHUSDT", "--on", *url), env, 2, "did you mean 'BTCUSDT'?"),
            ((SET, "--on", *url), env, 2, "no symbols"),
            ((SET, "BTCUSDT", "--on", "--testnet", *url), env, 2, "not allowed with"),
            ((SET, "BTCUSDT", "--on", "--base-url", "ftp://x"), env, 2, "base_url must be"),
            (
                (SET, "--on", "--symbols-file", str(bad_file), *url),
                env,
                2,
                f"{bad_file}:4: symbol must be uppercase",
            ),
        ]
    )
    assert sim.requests == []


# Nothing listens on the discard port: a case that got as far as a request would fail.
NOWHERE = ("--base-url", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("args", "excerpt"),
    [
        (("frobnicate",), "invalid choice"),
        ((SET, "BTCUSDT", "--on", "--off"), "not allowed with"),
        ((SET, "BTC/USDT", "x", "--on"), "(and 1 more)"),
        ((SET, "BTCUSDT", "--on", "--position-idx", "3"), "invalid choice"),
        ((SET, "BTCUSDT", "--on", "--demo", "--testnet"), "not allowed with"),
        ((SET, "BTCUSDT", "--on", "--rate-limit", "0"), "a whole number of at least 1, got 0"),
        ((SET, "BTCUSDT", "--on", "--rate-limit", "x"), "a whole number of at least 1, got 'x'"),
        ((SET, "BTCUSDT", "--on", "--timeout", "nan"), "a finite number above 0, got nan"),
        ((SET, "BTCUSDT", "--on", "--timeout", "0"), "a finite number above 0, got 0"),
        ((SET, "BTCUSDT", "--on", "--recv-window", "5s"), "a whole number of at least 1, got '5s'"),
        ((SET, "BTCUSDT", "--on", "--recv-window", "0"), "a whole number of at least 1, got 0"),
        ((SET, "BTCUSDT", "--on", "--json", "--failures-only", "--summary-only"), "not allowed"),
        ((SET, "BTCUSDT", "--on", "--bogus"), "unrecognized arguments: --bogus"),
        ((SET, "BTCUSDT", "--on", "--symbols-file", "/nonexistent"), "cannot read symbols file"),
        ((SET, "--on", "--key-file", "-", "--symbols-file", "-"), "cannot both read stdin"),
    ],
)
def test_bad_arguments_in_process(
    args: tuple[str, ...],
    excerpt: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BYBIT_API_KEY", "key")
    monkeypatch.setenv("BYBIT_API_SECRET", SECRET)
    assert cli.main([*args, *NOWHERE]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert excerpt in err
    assert SECRET not in err


async def test_help_documents_keys_and_exit_status() -> None:
    ran = await run(SET, "--help", env=cli_env())
    assert ran.status == 0
    for text in ("BYBIT_API_KEY", "BYBIT_API_SECRET", "--key-file", "NAME=VALUE", "--rate-limit"):
        assert text in ran.out
    assert "130 interrupted" in ran.out
    assert "143 terminated (SIGTERM)" in ran.out
    assert "--failures-only" in ran.out
    assert "pip install 'bybit-async[cli]'" in ran.out


# -- keys and symbols from files ----------------------------------------------------------


async def test_key_file_formats(sim: BybitSimulator, tmp_path: Path) -> None:
    plain = tmp_path / "plain.key"
    plain.write_text(f"# made for the simulator\n\n{sim.api_key}\n{sim.api_secret}\n")
    assignments = tmp_path / "keys.env"
    assignments.write_text(
        f"# a .env file\nOTHER=1\nexport BYBIT_API_KEY={sim.api_key}\n"
        f"BYBIT_API_SECRET='{sim.api_secret}'\n"
    )
    url = ("--base-url", sim.url, "--json")
    # The key file replaces the environment, which here holds keys that would fail.
    wrong = cli_env(BYBIT_API_KEY="wrong", BYBIT_API_SECRET=SECRET)
    first, second, stdin = await asyncio.gather(
        run(SET, "BTCUSDT", "--on", "--key-file", str(plain), *url, env=wrong),
        run(SET, "ETHUSDT", "--on", "--key-file", str(assignments), *url, env=wrong),
        run(
            SET,
            "SOLUSDT",
            "--on",
            "--key-file",
            "-",
            *url,
            env=cli_env(),
            stdin=f"{sim.api_key}\n{sim.api_secret}\n".encode(),
        ),
    )
    for ran, symbol in ((first, "BTCUSDT"), (second, "ETHUSDT"), (stdin, "SOLUSDT")):
        assert (ran.status, ran.errors) == (0, ""), ran.err
        assert ran.json()[symbol]["ok"]
        assert sim.auto_add_margin(symbol) == 1


def test_key_and_symbols_files_with_a_byte_order_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows editors save UTF-8 with a BOM: it is no part of the first name or key."""
    bom = "\ufeff"
    env = tmp_path / "keys.env"
    env.write_text(f"{bom}BYBIT_API_KEY=the-key\nBYBIT_API_SECRET=the-secret\n")
    plain = tmp_path / "plain.key"
    plain.write_text(f"{bom}the-key\nthe-secret\n")
    symbols = tmp_path / "symbols.txt"
    symbols.write_text(f"{bom}BTCUSDT\nETHUSDT\n")
    assert cli.load_credentials(str(env), {}) == ("the-key", "the-secret")
    assert cli.load_credentials(str(plain), {}) == ("the-key", "the-secret")
    assert [s for s, _ in cli.read_symbols_file(str(symbols))] == ["BTCUSDT", "ETHUSDT"]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{bom}the-key\nthe-secret\n"))
    assert cli.load_credentials("-", {}) == ("the-key", "the-secret")


async def test_bad_key_files_exit_2_without_showing_them(
    sim: BybitSimulator, tmp_path: Path
) -> None:
    only_key = tmp_path / "only-key"
    only_key.write_text(f"{SECRET}\n")
    no_secret = tmp_path / "no-secret"
    no_secret.write_text(f"BYBIT_API_KEY={SECRET}\nBYBIT_API_SECRET=\n")
    garbled = tmp_path / "garbled"
    garbled.write_text(f"BYBIT_API_KEY=k\n{SECRET}\n")
    args = (SET, "BTCUSDT", "--on", "--base-url", sim.url, "--key-file")
    env = cli_env(sim)
    ran = await expect_all(
        [
            ((*args, str(only_key)), env, 2, "expected two lines"),
            ((*args, str(no_secret)), env, 2, "BYBIT_API_SECRET is missing or empty"),
            ((*args, str(garbled)), env, 2, f"{garbled}:2: expected NAME=VALUE"),
            ((*args, str(tmp_path / "missing")), env, 2, "cannot read key file"),
        ]
    )
    for r in ran:
        assert r.errors.count("\n") == 1, r.err
        assert SECRET not in r.err + r.out
    assert sim.requests == []


async def test_secret_and_signatures_never_printed(sim: BybitSimulator) -> None:
    env = cli_env(BYBIT_API_KEY=sim.api_key, BYBIT_API_SECRET=SECRET)
    args = (SET, "BTCUSDT", "ETHUSDT", "--on", "--base-url", sim.url)
    table, lines = await asyncio.gather(run(*args, env=env), run(*args, "--json", env=env))
    assert table.table()["BTCUSDT"][:2] == ["failed", "10004"]
    assert lines.json()["BTCUSDT"]["error"] == "AuthenticationError"
    signatures = [r.signature for r in sim.requests if r.signature]
    assert len(signatures) == 4
    for ran in (table, lines):
        assert ran.status == 1
        printed = ran.out + ran.err
        assert SECRET not in printed
        assert not any(signature in printed for signature in signatures)


async def test_symbols_file_combined_with_arguments(sim: BybitSimulator, tmp_path: Path) -> None:
    listed = tmp_path / "symbols.txt"
    listed.write_text(
        "# majors\nBTCUSDT\n\nETHUSDT   # trailing comment\n  SOLUSDT  \nBTCUSDT\n#XRPUSDT\n"
    )
    more = tmp_path / "more.txt"
    more.write_text("ADAUSDT\nETHUSDT\n")
    combined, from_stdin = await asyncio.gather(
        run(
            SET,
            "DOTUSDT",
            "--on",
            "ETHUSDT",  # symbols may also follow options
            "--symbols-file",
            str(listed),
            "--symbols-file",
            str(more),
            "--base-url",
            sim.url,
            env=cli_env(sim),
        ),
        run(
            SET,
            "--on",
            "--symbols-file",
            "-",
            "--base-url",
            sim.url,
            "--json",
            env=cli_env(sim),
            stdin=b"XRPUSDT\nLTCUSDT\n",
        ),
    )
    assert combined.status == 0, combined.err
    # Each once, in the order first named: arguments, then the files.
    assert list(combined.table()) == ["DOTUSDT", "ETHUSDT", "BTCUSDT", "SOLUSDT", "ADAUSDT"]
    assert from_stdin.status == 0, from_stdin.err
    assert sorted(from_stdin.json()) == ["LTCUSDT", "XRPUSDT"]
    assert sim.count(PATH) == 5 + 2


# -- without rich -------------------------------------------------------------------------


async def test_without_rich_table_says_how_to_install_and_json_works(
    sim: BybitSimulator,
) -> None:
    args = (SET, "BTCUSDT", "--on", "--base-url", sim.url)
    table = await run(*args, env=cli_env(sim), command=NO_RICH)
    assert (table.status, table.out) == (2, "")
    assert table.errors == cli.RICH_MISSING + "\n"
    assert "pip install 'bybit-async[cli]'" in table.err
    assert sim.requests == []

    lines = await run(*args, "--json", env=cli_env(sim), command=NO_RICH)
    assert (lines.status, lines.errors) == (0, "")
    assert lines.json()["BTCUSDT"]["ok"]


async def test_importing_the_package_and_cli_does_not_import_rich() -> None:
    code = (
        "import sys, bybit_async, bybit_async.cli, bybit_async.__main__; "
        "sys.exit('rich' in sys.modules)"
    )
    ran = await run(env=cli_env(), command=(*PYTHON, "-c", code))
    assert ran.status == 0, ran.err


def test_every_command_module_is_registered() -> None:
    """A command is a module of bybit_async.cli with a COMMAND, listed once in cli.COMMANDS."""
    import importlib
    import pkgutil

    defined = []
    for info in pkgutil.iter_modules(cli.__path__):
        module = importlib.import_module(f"bybit_async.cli.{info.name}")
        command = getattr(module, "COMMAND", None)
        if command is not None:
            assert isinstance(command, cli.Command), info.name
            defined.append(command)
    assert sorted(c.name for c in defined) == sorted(c.name for c in cli.COMMANDS)
    assert len({c.name for c in cli.COMMANDS}) == len(cli.COMMANDS)
    help_text = cli.build_parser().format_help()
    assert all(c.name in help_text for c in cli.COMMANDS)


# -- Ctrl-C ---------------------------------------------------------------------------


def stall_after(sim: BybitSimulator, answered: int, stalled: int) -> None:
    """Answer the next *answered* requests to the endpoint, then hold *stalled* unanswered."""
    sim.inject(Fault.stall(0), path=PATH, times=answered)
    sim.inject(Fault.stall(), path=PATH, times=stalled)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_sigint_reports_done_and_cancelled_json(sim: BybitSimulator) -> None:
    symbols = SYMBOLS[:20]
    stall_after(sim, 5, 15)
    with sigint_deliverable():
        proc = await start(
            SET,
            *symbols,
            "--on",
            "--base-url",
            sim.url,
            *FAST,
            "--json",
            env=cli_env(sim),
        )
    async with killed_on_failure(proc):
        assert proc.stdout is not None
        # The five answered symbols are printed while the rest hang.
        early = [
            json.loads(await asyncio.wait_for(proc.stdout.readline(), DEADLINE)) for _ in range(5)
        ]
        await asyncio.wait_for(sim.wait_for_requests(1 + 20), DEADLINE)  # clock sync + 20
    proc.send_signal(signal.SIGINT)
    ran = await finish(proc, EXIT_AFTER_SIGINT)

    assert ran.status == 130
    ran.assert_clean()
    assert ran.errors == "bybit-async: interrupted: 5 of 20 symbols done, 15 cancelled " + (
        "(a cancelled request may still have reached Bybit)\n"
    )
    assert all(o["ok"] and o["outcome"] == "set" for o in early)
    late = ran.records()
    assert len(late) == 15
    assert all(o["outcome"] == "cancelled" and o["error"] == "CancelledError" for o in late)
    assert all(not o["ok"] and o["modified"] is None for o in late)
    assert sorted(o["symbol"] for o in early + late) == symbols
    assert sum(sim.auto_add_margin(s) for s in symbols) == 5


class _Collect(asyncio.Protocol):
    """Everything read from a pseudo-terminal, and a wake-up for each read."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.changed = asyncio.Event()
        self.closed = False
        self.error: Exception | None = None

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        # Reading a pseudo-terminal whose other end is closed fails with EIO: that is its EOF.
        if not (exc is None or (isinstance(exc, OSError) and exc.errno == errno.EIO)):
            self.error = exc
        self.closed = True
        self.changed.set()

    def text(self) -> str:
        return _ANSI.sub("", self.data.decode("utf-8", "replace")).replace("\r", "")

    async def wait_for(self, needle: str) -> None:
        while needle not in self.text():
            assert not self.closed, self.text()
            self.changed.clear()
            await self.changed.wait()

    async def wait_closed(self) -> None:
        while not self.closed:
            self.changed.clear()
            await self.changed.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pseudo-terminals")
async def test_terminal_progress_bar_then_table_on_sigint(sim: BybitSimulator) -> None:
    import pty

    symbols = SYMBOLS[:20]
    stall_after(sim, 5, 15)
    main, child = pty.openpty()
    loop = asyncio.get_running_loop()
    try:
        with sigint_deliverable():
            proc = await start(
                SET,
                *symbols,
                "--on",
                "--base-url",
                sim.url,
                *FAST,
                env=cli_env(sim, TERM="xterm-256color"),
                stdout=child,
            )
    finally:
        os.close(child)
    transport, screen = await loop.connect_read_pipe(_Collect, os.fdopen(main, "rb", 0))
    try:
        async with killed_on_failure(proc):
            # The progress bar counts the five answered symbols; the rest hang.
            await asyncio.wait_for(screen.wait_for(" 5/20"), DEADLINE)
            await asyncio.wait_for(sim.wait_for_requests(1 + 20), DEADLINE)
        proc.send_signal(signal.SIGINT)
        ran = await finish(proc, EXIT_AFTER_SIGINT)
        await asyncio.wait_for(screen.wait_closed(), EXIT_AFTER_SIGINT)
    finally:
        transport.close()
    assert screen.error is None

    assert ran.status == 130
    ran.assert_clean()
    assert "interrupted: 5 of 20 symbols done, 15 cancelled" in ran.err
    rows = table_rows(screen.text())
    assert list(rows) == symbols
    outcomes = [row[0] for row in rows.values()]
    assert (outcomes.count("set"), outcomes.count("cancelled")) == (5, 15)
    assert "20 symbols in " in screen.text()
    assert ": 5 set, 15 cancelled" in screen.text()


# -- the demo -------------------------------------------------------------------------------


def test_demo_summary_gives_the_busiest_second_not_an_average_rate() -> None:
    """An average over a run that starts with a burst reads like a breach of the limit."""
    from bybit_async.demo import summary_line

    line = summary_line(48, 2, 4.1, busiest=10, rejected=0, lowest_left=0)
    assert line == (
        "48 ok, 2 failed in 4.10 s; busiest rolling second at the server: 10 requests "
        "(limit 10); 10006 answers: 0; lowest X-Bapi-Limit-Status seen: 0"
    )
    assert "requests/s" not in line


@pytest.mark.parametrize(("failed", "status"), [(0, 0), (2, 0), (3, 1)])
def test_demo_exit_status(monkeypatch: pytest.MonkeyPatch, failed: int, status: int) -> None:
    import bybit_async.demo

    async def fake_demo(out: Any = print) -> int:
        out("ran")
        return failed

    monkeypatch.setattr(bybit_async.demo, "run_demo", fake_demo)
    assert cli.main(["demo"]) == status


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_sigterm_reports_like_ctrl_c_json(sim: BybitSimulator) -> None:
    """A supervisor's SIGTERM gets the same report as Ctrl-C: complete lines, the counts."""
    symbols = SYMBOLS[:20]
    stall_after(sim, 5, 15)
    proc = await start(
        SET,
        *symbols,
        "--on",
        "--base-url",
        sim.url,
        *FAST,
        "--json",
        env=cli_env(sim),
    )
    async with killed_on_failure(proc):
        assert proc.stdout is not None
        early = [await asyncio.wait_for(proc.stdout.readline(), DEADLINE) for _ in range(5)]
        await asyncio.wait_for(sim.wait_for_requests(1 + 20), DEADLINE)
    proc.send_signal(signal.SIGTERM)
    ran = await finish(proc, EXIT_AFTER_SIGINT)

    assert ran.status == cli.EXIT_TERMINATED == 143
    ran.assert_clean()
    assert ran.errors == "bybit-async: terminated (SIGTERM): 5 of 20 symbols done, " + (
        "15 cancelled (a cancelled request may still have reached Bybit)\n"
    )
    # Every line whole: each parses, and the early ones and the late ones make up all symbols.
    lines = [*(json.loads(b.decode()) for b in early), *ran.records()]
    assert sorted(o["symbol"] for o in lines) == symbols
    assert [o["outcome"] for o in lines].count("cancelled") == 15
    assert ran.out.endswith("\n")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_sigterm_table_has_the_summary(sim: BybitSimulator) -> None:
    stall_after(sim, 2, 3)
    proc = await start(
        SET,
        *SYMBOLS[:5],
        "--on",
        "--base-url",
        sim.url,
        *FAST,
        "--failures-only",
        env=cli_env(sim),
    )
    async with killed_on_failure(proc):
        await asyncio.wait_for(sim.wait_for_requests(1 + 5), DEADLINE)
    proc.send_signal(signal.SIGTERM)
    ran = await finish(proc, EXIT_AFTER_SIGINT)
    assert ran.status == 143
    ran.assert_clean()
    # --failures-only lists what failed; the cancelled are counted, not listed
    # (after a Ctrl-C they may be thousands, and would bury the failures).
    assert ran.table() == {}
    assert "5 symbols in " in ran.out
    assert ": 2 set, 3 cancelled\n" in ran.out


# -- --version, output options, failures shared by many symbols ----------------------------


async def test_version_imports_nothing_heavy() -> None:
    """--version answers before the library loads: -X importtime lists every module imported."""
    fast, full = await asyncio.gather(
        run("--version", env=cli_env(), command=(*PYTHON, "-X", "importtime", "-m", "bybit_async")),
        # Not the fast path (another argument follows): argparse answers, after the imports.
        run(
            "--version",
            "demo",
            env=cli_env(),
            command=(*PYTHON, "-X", "importtime", "-m", "bybit_async"),
        ),
    )
    assert (fast.status, full.status) == (0, 0)
    assert fast.out == full.out == f"bybit-async {cli.__version__}\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in fast.err.splitlines()}
    assert "bybit_async._version" in imported
    assert not {"aiohttp", "orjson", "tenacity", "bybit_async.cli"} & imported, imported
    # The check can tell: the same listing for the full path names aiohttp.
    assert "aiohttp" in {line.rsplit("|", 1)[-1].strip() for line in full.err.splitlines()}


async def test_importing_the_package_loads_names_on_first_use() -> None:
    code = (
        "import sys, bybit_async\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported by import bybit_async'\n"
        "from bybit_async import BybitSession, ApiResponse\n"
        "assert BybitSession.__module__ == 'bybit_async.session'\n"
        "assert set(bybit_async.__all__) <= set(dir(bybit_async))\n"
        "assert all(getattr(bybit_async, name) is not None for name in bybit_async.__all__)\n"
        "try:\n    bybit_async.Nope\nexcept AttributeError:\n    pass\n"
        "else:\n    raise AssertionError('no AttributeError')\n"
    )
    ran = await run(env=cli_env(), command=(*PYTHON, "-c", code))
    assert ran.status == 0, ran.err


async def test_failures_only_and_summary_only(sim: BybitSimulator) -> None:
    symbols = mixed_positions(sim)
    args = (SET, *symbols, "--on", "--base-url", sim.url, *FAST)
    # One after the other: the second run finds the first one's flags set.
    table = await run(*args, "--failures-only", env=cli_env(sim))
    assert table.status == 1
    assert list(table.table()) == ["XRPUSDT"]
    assert ": 4 set, 1 already on, 1 failed\n" in table.out
    lines = await run(*args, "--failures-only", "--json", env=cli_env(sim))
    assert lines.status == 1
    assert list(lines.json()) == ["XRPUSDT"]

    # Run again: everything but XRPUSDT is now already on.
    table, lines = await asyncio.gather(
        run(*args, "--summary-only", env=cli_env(sim)),
        run(*args, "--summary-only", "--json", env=cli_env(sim)),
    )
    assert (table.status, lines.status) == (1, 1)
    table.assert_clean()
    assert table.table() == {}
    assert re.fullmatch(
        r"auto-add-margin on at \S+: 6 symbols\n6 symbols in [0-9.]+ s: 5 already on, 1 failed\n"
        r"requests: 7, retries: 0, 10006 seen: 0, limiter wait: [0-9.]+ s of wall time "
        r"\(summed over calls [0-9.]+ s, max [0-9.]+ s\), "
        r"elapsed: [0-9.]+ s\n",
        table.out,
    ), table.out
    (summary,) = lines.records()
    assert summary.pop("elapsed_s") >= 0
    assert summary == {
        "symbols": 6,
        "set": 0,
        "already_on": 5,
        "already_off": 0,
        "failed": 1,
        "cancelled": 0,
    }


async def test_one_unreachable_host_is_reported_once() -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    ran = await run(
        SET, *symbols, "--on", *NOWHERE, env=cli_env(BYBIT_API_KEY="k", BYBIT_API_SECRET=SECRET)
    )
    assert ran.status == 1
    ran.assert_clean()
    rows = ran.table()
    assert list(rows) == symbols
    assert all(row[:3] == ["failed", "-", "see (1) below"] for row in rows.values()), rows
    notes = [line for line in ran.out.splitlines() if line.startswith("(1) ")]
    assert len(notes) == 1
    assert notes[0].startswith("(1) 4 symbols: ")
    assert "127.0.0.1:9" in notes[0]
    assert ran.out.count("127.0.0.1:9") == 2  # the title and the note


async def test_https_to_a_plain_http_server_is_not_retried(sim: BybitSimulator) -> None:
    url = sim.url.replace("http://", "https://")
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    lines, table = await asyncio.gather(
        run(SET, *symbols, "--on", "--base-url", url, "--json", env=cli_env(sim)),
        run(SET, *symbols, "--on", "--base-url", url, env=cli_env(sim)),
    )
    for ran in (lines, table):
        assert ran.status == 1
        ran.assert_clean()
        assert ran.errors.count("\n") == 1, ran.err
        assert f"use {sim.url}" in ran.err
        assert "nothing was sent" in ran.err
    results = lines.json()
    assert sorted(results) == sorted(symbols)
    assert all(r["attempts"] == 0 and r["error"] == "ConnectError" for r in results.values())
    assert all(r["outcome"] == "failed" for r in results.values())
    # Once per command: the one clock-sync attempt, never retried, and no symbol sent.
    assert sim.requests == []
    # The attempt that got no connection was not sent: the summary agrees.
    assert lines.out.splitlines()[-1].startswith('{"summary": {"requests": 0, ')
    assert table.out.splitlines()[-1].startswith("requests: 0, ")


# -- the run's summary: requests, retries, 10006 seen, limiter wait, elapsed ----------

_TRAFFIC = re.compile(
    r"requests: (?P<requests>\d+), retries: (?P<retried>\d+)(?: \((?P<reasons>[^)]*)\))?, "
    r"10006 seen: (?P<rate_limited>\d+), limiter wait: (?P<wait>[0-9.]+) s of wall time "
    r"\(summed over calls (?P<sum>[0-9.]+) s, max (?P<max>[0-9.]+) s\), "
    r"elapsed: (?P<elapsed>[0-9.]+) s"
)


def _table_traffic(out: str) -> dict[str, Any]:
    (line,) = [line for line in out.splitlines() if line.startswith("requests: ")]
    match = _TRAFFIC.fullmatch(line)
    assert match, line
    reasons = dict(part.rsplit(": ", 1) for part in (match["reasons"] or "").split(", ") if part)
    return {
        "requests": int(match["requests"]),
        "retried": int(match["retried"]),
        "retries": {reason: int(n) for reason, n in reasons.items()},
        "rate_limited": int(match["rate_limited"]),
    }


@pytest.mark.parametrize("output", ["table", "json"])
async def test_summary_counts_match_the_simulators(sim: BybitSimulator, output: str) -> None:
    sim.inject(Fault.ret_code(10006), path=PATH, times=2)
    sim.inject(Fault.http_status(503), path=PATH)
    sim.inject(Fault.drop(after_execution=False), path=PATH)
    args = [SET, "BTCUSDT", "SOLUSDT", "ADAUSDT", "--on", "--base-url", sim.url, *FAST]
    ran = await run(*args, *(["--json"] if output == "json" else []), env=cli_env(sim))
    assert ran.status == 0, ran.out + ran.err
    ran.assert_clean()

    if output == "json":
        summary = ran.summary()
        assert summary["calls"] == 1 + 3  # the clock sync, then one call per symbol
        assert summary["calls_failed"] == {}
        assert summary["elapsed_s"] >= summary["limiter_wait_max_s"] >= 0
        assert summary["limiter_wait_sum_s"] >= summary["limiter_wait_wall_s"] >= 0
    else:
        summary = _table_traffic(ran.out)
    # What the simulator saw: every request, and the 10006 it answered.
    assert summary["requests"] == len(sim.requests) == 1 + 3 + 4
    assert summary["rate_limited"] == sim.count(PATH, ret_code=10006) == 2
    assert summary["retries"] == {"retCode 10006": 2, "HTTP 503": 1, "ConnectionDroppedError": 1}
    assert summary["retried"] == 4


async def test_summary_only_json_ends_with_the_summary_record(sim: BybitSimulator) -> None:
    args = [SET, "BTCUSDT", "--on", "--base-url", sim.url, *FAST, "--summary-only", "--json"]
    ran = await run(*args, env=cli_env(sim))
    assert ran.status == 0
    counts, last = (json.loads(line) for line in ran.out.splitlines())
    assert counts["set"] == 1
    assert last["summary"]["requests"] == len(sim.requests) == 2
    assert last["summary"]["retries"] == {}
