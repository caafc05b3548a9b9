"""The control API under /_sim/ and the command line, driven as any test suite would."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bybit_async.testing import POSITION_LIST_PATH, SET_AUTO_ADD_MARGIN_PATH, BybitSimulator, cli
from tests.test_sim_strict import flag, signed_get, signed_post


async def control(
    client: aiohttp.ClientSession, url: str, method: str, name: str, body: Any = None
) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    headers = {} if method == "GET" else {"Content-Type": "application/json"}
    async with client.request(method, f"{url}/_sim/{name}", data=data, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


# -- control API -----------------------------------------------------------------------


async def test_request_log(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    assert (await signed_post(client, sim, flag("BTCUSDT"), secret="wrong")).code == 10004
    assert (await signed_post(client, sim, flag("BTCUSDT"))).code == 0
    status, log = await control(client, sim.url, "GET", "requests")
    assert status == 200
    rows = [(r["method"], r["path"], r["status"], r["retCode"]) for r in log["requests"]]
    assert rows == [
        ("POST", SET_AUTO_ADD_MARGIN_PATH, 200, 10004),
        ("POST", SET_AUTO_ADD_MARGIN_PATH, 200, 0),
    ]
    assert log["next"] == 2
    assert log["requests"][1]["signature"] == sim.requests[1].signature
    assert b"test-secret" not in orjson.dumps(log)
    # Control requests are not logged; filters and paging work.
    _, log = await control(client, sim.url, "GET", "requests?retCode=0&since=1")
    assert [r["retCode"] for r in log["requests"]] == [0]
    assert len(sim.requests) == 2


async def test_faults_over_http(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    status, queued = await control(
        client, sim.url, "POST", "faults", {"fault": {"kind": "ret_code", "code": 10016}}
    )
    assert status == 200
    assert queued["faults"][0]["fault"] == {
        "kind": "ret_code",
        "code": 10016,
        "msg": "Server error.",
    }
    await control(client, sim.url, "POST", "faults", {"kind": "html", "status": 502, "times": 2})
    assert (await signed_post(client, sim, flag("BTCUSDT"))).code == 10016
    assert (await signed_post(client, sim, flag("BTCUSDT"))).status == 502
    assert (await control(client, sim.url, "DELETE", "faults"))[0] == 200
    assert (await signed_post(client, sim, flag("BTCUSDT"))).code == 0
    status, error = await control(client, sim.url, "POST", "faults", {"kind": "explode"})
    assert status == 400
    assert "explode" in error["error"]


async def test_positions_over_http(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    body = {"symbol": "ETHUSDT", "hedge": True, "size": "2", "positionIdx": 1}
    status, _ = await control(client, sim.url, "POST", "positions", body)
    assert status == 200
    reply = await signed_get(client, sim, "category=linear&settleCoin=USDT")
    assert [(p["symbol"], p["positionIdx"], p["side"]) for p in reply.result["list"]] == [
        ("ETHUSDT", 1, "Buy")
    ]
    _, listed = await control(client, sim.url, "GET", "positions")
    assert listed["uid"] == sim.uid()
    assert [p["positionIdx"] for p in listed["positions"]] == [1, 2]
    status, error = await control(client, sim.url, "POST", "positions", {"symbol": "NOPEUSDT"})
    assert (status, "instrument" in error["error"]) == (400, True)


async def test_settings_accounts_and_reset(
    sim: BybitSimulator, client: aiohttp.ClientSession
) -> None:
    status, settings = await control(
        client,
        sim.url,
        "PATCH",
        "settings",
        {"endpointLimits": {POSITION_LIST_PATH: 1}, "clockOffsetMs": 250},
    )
    assert status == 200
    assert (settings["endpointLimits"][POSITION_LIST_PATH], settings["clockOffsetMs"]) == (1, 250)
    await control(client, sim.url, "POST", "accounts", {"apiKey": "k2", "apiSecret": "s2"})
    query = "category=linear&symbol=BTCUSDT"
    assert (await signed_get(client, sim, query, key="k2", secret="s2")).code == 0
    assert (await signed_get(client, sim, query, key="k2", secret="s2")).code == 10006
    _, counters = await control(client, sim.url, "GET", "counters")
    assert counters["byPath"][POSITION_LIST_PATH]["byRetCode"] == {"0": 1, "10006": 1}

    assert (await control(client, sim.url, "POST", "reset"))[0] == 200
    assert sim.requests == []
    assert sim.clock_offset_ms == 0
    assert (await signed_get(client, sim, query, key="k2", secret="s2")).code == 10003
    _, settings = await control(client, sim.url, "GET", "settings")
    assert settings["endpointLimits"][POSITION_LIST_PATH] == 50
    status, error = await control(client, sim.url, "PATCH", "settings", {"bogus": 1})
    assert (status, "bogus" in error["error"]) == (400, True)
    assert (await control(client, sim.url, "GET", "nothing-here"))[0] == 404


async def test_network_delay_over_http(sim: BybitSimulator, client: aiohttp.ClientSession) -> None:
    body = {"networkDelay": {"low": 0.01, "high": 0.02, "seed": 1}}
    _, settings = await control(client, sim.url, "PATCH", "settings", body)
    assert settings["networkDelay"]["high"] == 0.02
    assert sim.network_delay is not None
    assert (sim.network_delay.low, sim.network_delay.seed) == (0.01, 1)
    status, _ = await control(client, sim.url, "PATCH", "settings", {"networkDelay": {"low": -1}})
    assert status == 400


# -- command line: set-up from flags and files (in process) ------------------------------


def test_flags_set_up_accounts_positions_and_limits() -> None:
    setup = cli._setup(
        [
            "--account",
            "alice:alice-secret:5001",
            "--account",
            "alice2:other-secret:5001",
            "--account",
            "bob:bob-secret",
            "--position",
            "ETHUSDT,account=bob,margin=cross",
            "--position",
            "BTCUSDT,mode=hedge,auto_add_margin=1,size=3,idx=2",
            "--no-limits",
            "--endpoint-limit",
            f"{SET_AUTO_ADD_MARGIN_PATH}=20",
            "--clock-offset-ms",
            "-1500",
            "--delay-ms",
            "5:10",
            "--instrument",
            "NEWUSDT",
        ]
    )
    sim = setup.build()
    assert (sim.api_key, sim.api_secret) == ("alice", "alice-secret")
    assert sim.api_keys() == {"alice": "5001", "alice2": "5001", "bob": sim.uid("bob")}
    assert sim.uid("bob") != "5001"
    assert sim.position("ETHUSDT", api_key="bob").margin_mode == "cross"
    assert sim.position("BTCUSDT", 2).size == "3"
    assert sim.auto_add_margin("BTCUSDT", 2, api_key="alice2") == 1
    assert sim.enforce_limits is False
    assert sim.endpoint_limits[SET_AUTO_ADD_MARGIN_PATH] == 20
    assert sim.clock_offset_ms == -1500
    assert sim.network_delay is not None
    assert (sim.network_delay.low, sim.network_delay.high) == (0.005, 0.01)
    assert "NEWUSDT" in sim.instruments
    assert "ANYUSDT" not in sim.instruments
    assert sim.success_messages is None


CONFIG = {
    "accounts": [{"api_key": "k1", "api_secret": "s1", "uid": 7, "margin_mode": "cross"}],
    "positions": [{"symbol": "SOLUSDT", "margin": "cross"}],
    "limits": {"enforce": True, "endpoints": {POSITION_LIST_PATH: 5}},
    "clock_offset_ms": 100,
    "network_delay": {"low": 0.001, "high": 0.002, "spike_probability": 0.1, "spike": 0.05},
    "instruments": "any",
    "success_messages": ["OK"],
}

TOML = """
clock_offset_ms = 100
instruments = "any"
success_messages = ["OK"]

[[accounts]]
api_key = "k1"
api_secret = "s1"
uid = 7
margin_mode = "cross"

[[positions]]
symbol = "SOLUSDT"
margin = "cross"

[limits]
enforce = true
endpoints = { "/v5/position/list" = 5 }

[network_delay]
low = 0.001
high = 0.002
spike_probability = 0.1
spike = 0.05
"""


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_config_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"sim{suffix}"
    path.write_text(TOML if suffix == ".toml" else orjson.dumps(CONFIG).decode())
    sim = cli._setup(["--config", str(path), "--clock-offset-ms", "200"]).build()
    assert sim.api_keys() == {"k1": "7"}
    assert sim.position("SOLUSDT").margin_mode == "cross"
    assert sim.position("BTCUSDT").margin_mode == "cross"  # the account's default
    assert sim.endpoint_limits[POSITION_LIST_PATH] == 5
    assert sim.clock_offset_ms == 200  # flags win over the file
    assert sim.network_delay is not None
    assert sim.network_delay.spike_probability == 0.1
    assert "ANY1USDT" in sim.instruments
    assert sim.success_messages == ("OK",)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--account", "nosecret"], "KEY:SECRET"),
        (["--position", "BTCUSDT,colour=red"], "name=value"),
        (["--delay-ms", "fast"], "--delay-ms"),
        (["--config", "/nonexistent/sim.toml"], "cannot read"),
        (["--position", "NOPEUSDT"], "instrument"),
    ],
)
def test_bad_set_up_is_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert words in err
    assert "Traceback" not in err


# -- command line: the process --------------------------------------------------------------


async def start_process(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        "-W",
        "error",
        "-m",
        "bybit_async.testing",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
    return proc, line


async def test_process_from_flags_driven_over_http(client: aiohttp.ClientSession) -> None:
    proc, line = await start_process(
        "--account", "k1:s1", "--position", "XRPUSDT,size=5,side=Sell", "--vary-success-messages"
    )
    try:
        name, _, url = line.partition("=")
        assert name == "BYBIT_SIMULATOR_URL"
        _, listed = await control(client, url, "GET", "positions?apiKey=k1")
        assert [(p["symbol"], p["size"], p["side"]) for p in listed["positions"]] == [
            ("XRPUSDT", "5", "Sell")
        ]
        _, settings = await control(client, url, "GET", "settings")
        assert settings["successMessages"] == ["OK", "success", ""]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()


async def test_port_in_use_is_one_line_and_exit_2(sim: BybitSimulator) -> None:
    port = sim.url.rsplit(":", 1)[1]
    proc, line = await start_process("--port", port)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert line == ""
    assert proc.returncode == 2
    text = err.decode()
    assert text.count("\n") == 1
    assert "in use" in text
    assert "Traceback" not in text


async def test_rsa_account_from_a_flag(tmp_path: Path) -> None:
    from bybit_async import BybitSession
    from tests.test_rsa import KeyPair

    pair = KeyPair(2048)
    pem = tmp_path / "key.pub.pem"
    pem.write_bytes(pair.public_pem)
    sim = cli._setup(["--account", "hmac-key:s", "--account", f"rsa-key:@{pem}:77"]).build()
    assert sim.api_keys()["rsa-key"] == "77"
    assert (sim.api_key, sim.api_secret) == ("hmac-key", "s")
    async with sim, BybitSession("rsa-key", pair.private_pem(), base_url=sim.url) as session:
        await session.set_auto_add_margin("BTCUSDT", True)
    assert sim.auto_add_margin("BTCUSDT", api_key="rsa-key") == 1


def test_simulator_page_documents_every_flag() -> None:
    import re

    page = (Path(__file__).resolve().parent.parent / "docs" / "simulator.md").read_text()
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", cli._parser().format_help()))
    flags.discard("--help")
    assert flags
    missing = sorted(f for f in flags if f"`{f}" not in page)
    assert missing == []
