"""Turning ``latest.json`` into targets, Markdown tables, docs/benchmarks.md and the chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .common import Json

TARGET_SIGNER_VS_FLOOR = 1.25
TARGET_PREPARE_NS = 4_000
TARGET_RPS_RATIO = 0.85
TARGET_CPU_RATIO = 1.2
TARGET_FLAT = 1.2
TARGET_RSS_GROWTH_MIB = 2.0
TARGET_OBJECT_GROWTH = 1_000
TARGET_SWEEP_60_S = 5.6
TARGET_SWEEP_200_S = 20.5
TARGET_SECOND_CALL_MS = 2.0
TARGET_BURST_SPREAD_MS = 20.0
TARGET_WARM_RTTS = 1.5
TARGET_DESIRED_SPEEDUP = 10.0
PERMITS = "permits"
BUCKET = "token bucket (0.1)"

CLIENT_LABELS = {"sdk": "bybit_async", "raw": "raw aiohttp", "pybit": "pybit", "ccxt": "ccxt"}
LOOP_LABELS = {"asyncio": "asyncio", "uvloop": "uvloop"}


# -- formatting ------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _range(stats: Json | None, digits: int = 0, scale: float = 1.0) -> str:
    """``median (min-max)`` of a summary."""
    if not stats or stats.get("median") is None:
        return "n/a"
    med, lo, hi = (stats[k] * scale for k in ("median", "min", "max"))
    return f"{_num(med, digits)} ({_num(lo, digits)}-{_num(hi, digits)})"


def _median(stats: Json | None) -> float | None:
    return None if not stats else stats.get("median")


def _per_round(a: Json, b: Json) -> float | None:
    """Median of the round-by-round ratios a/b: each round's pair saw the same machine."""
    pairs = [x / y for x, y in zip(a.get("values", []), b.get("values", []), strict=False) if y]
    return statistics.median(pairs) if pairs else None


def _of_medians(a: Json, b: Json) -> float | None:
    """The ratio of the two medians, which need not equal the median of the ratios."""
    return a["median"] / b["median"] if a.get("median") and b.get("median") else None


def _x(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}x"


def _table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    """A Markdown table; *align* has one letter per column, ``l`` or ``r`` (default ``r``)."""
    align = align.ljust(len(header), "r")
    marks = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


# -- targets ----------------------------------------------------------------------


def evaluate_targets(results: Json) -> list[Json]:
    """Each target of the issue: what was measured, the goal, and whether it is met."""
    targets: list[Json] = []

    def add(name: str, measured: str, goal: str, ok: bool | None, value: float | None) -> None:
        targets.append(
            {"target": name, "measured": measured, "goal": goal, "pass": ok, "value": value}
        )

    signing = results.get("signing")
    if signing:
        v = signing["variants"]
        near = signing["ratios"]["signer_over_floor"]["median"]
        add(
            "Signer vs precomputed-state floor",
            f"{near:.3f}x the floor ({v['floor']['median']:.0f} ns)",
            f"<= {TARGET_SIGNER_VS_FLOOR:.2f}x",
            near <= TARGET_SIGNER_VS_FLOOR,
            near,
        )
    prepare = results.get("prepare")
    if prepare:
        total = prepare["steps"]["total"]["median"]
        add(
            "Request preparation per call",
            f"{total / 1000:.2f} µs",
            f"< {TARGET_PREPARE_NS / 1000:.0f} µs",
            total < TARGET_PREPARE_NS,
            total,
        )
    throughput = results.get("throughput")
    for loop_name, cells in (throughput or {}).get("loops", {}).items():
        cell = cells.get("50")
        if cell:
            rps = cell["ratio"]["rps"]["median"]
            medians = _of_medians(cell["sdk"]["rps"], cell["raw"]["rps"])
            add(
                f"Throughput at concurrency 50 ({loop_name})",
                f"{rps:.3f}x raw aiohttp, median of per-round ratios (medians "
                f"{cell['sdk']['rps']['median']:,.0f} vs {cell['raw']['rps']['median']:,.0f} "
                f"req/s, ratio of medians {_x(medians, 3)})",
                f">= {TARGET_RPS_RATIO:.2f}x",
                rps >= TARGET_RPS_RATIO,
                rps,
            )
            cpu = cell["ratio"]["cpu_us"]["median"]
            medians = _of_medians(cell["sdk"]["cpu_us"], cell["raw"]["cpu_us"])
            add(
                f"Client CPU per request at concurrency 50 ({loop_name})",
                f"{cpu:.3f}x raw aiohttp, median of per-round ratios (medians "
                f"{cell['sdk']['cpu_us']['median']:.0f} vs {cell['raw']['cpu_us']['median']:.0f} "
                f"µs, ratio of medians {_x(medians, 3)})",
                f"<= {TARGET_CPU_RATIO:.1f}x",
                cpu <= TARGET_CPU_RATIO,
                cpu,
            )
        levels = [c for c in ("50", "200", "1000") if c in cells]
        if len(levels) >= 2:
            costs = [cells[c]["sdk"]["cpu_us"]["median"] for c in levels]
            spread = max(costs) / min(costs)
            raw_costs = [cells[c]["raw"]["cpu_us"]["median"] for c in levels]
            # For context: raw aiohttp's own spread, and the SDK's cost relative to it.
            relative = [cells[c]["ratio"]["cpu_us"]["median"] for c in levels]
            add(
                f"CPU per request flat from 50 to 1000 ({loop_name})",
                f"{spread:.3f}x max/min ("
                + " / ".join(f"{c:.0f}" for c in costs)
                + f" µs at {'/'.join(levels)}); raw aiohttp itself "
                + f"{max(raw_costs) / min(raw_costs):.2f}x; SDK ÷ raw "
                + " / ".join(f"{r:.2f}" for r in relative),
                f"within {TARGET_FLAT:.1f}x",
                spread <= TARGET_FLAT,
                spread,
            )
    if throughput and throughput.get("loops"):
        errors = sum(
            cell[client]["errors"]
            for cells in throughput["loops"].values()
            for cell in cells.values()
            for client in ("sdk", "raw")
        )
        add("Failed requests in the throughput runs", str(errors), "0", errors == 0, errors)
    soak = results.get("soak")
    if soak:
        rss, objects = soak["rss_growth_mib"], soak["objects_growth"]
        ok = rss <= TARGET_RSS_GROWTH_MIB and objects <= TARGET_OBJECT_GROWTH and soak["complete"]
        add(
            f"No memory growth over {soak['requests']:,} requests",
            f"RSS {soak['rss_at_10pct_mib']:.1f} -> {soak['rss_at_end_mib']:.1f} MiB "
            f"({rss:+.1f}), objects {soak['objects_at_10pct']:,} -> "
            f"{soak['objects_at_end']:,} ({objects:+,})",
            f"10% vs end: RSS <= +{TARGET_RSS_GROWTH_MIB:.0f} MiB, "
            f"objects <= +{TARGET_OBJECT_GROWTH:,}",
            ok,
            rss,
        )
    limited = results.get("rate_limited")
    if limited:
        for n, goal in (("60", TARGET_SWEEP_60_S), ("200", TARGET_SWEEP_200_S)):
            sweep = limited["sweeps"].get(n)
            if not sweep:
                continue
            ours, old = sweep[PERMITS], sweep[BUCKET]
            wall, minimum = ours["wall_s"]["median"], sweep["minimum_s"]
            add(
                f"{n} symbols at 10/s: sweep time",
                f"{wall:.2f} s = {wall / minimum:.3f}x the minimum {minimum:.2f} s "
                f"(0.1's bucket: {old['wall_s']['median'] / minimum:.3f}x)",
                f"<= {goal:.1f} s",
                wall <= goal,
                wall,
            )
            add(
                f"{n} symbols at 10/s: 10006 answers, most in any 1 s",
                f"{ours['answers_10006']}, {ours['max_in_1s']}",
                "0, <= 10",
                ours["answers_10006"] == 0 and ours["max_in_1s"] <= 10,
                ours["answers_10006"],
            )
        burst = limited["burst"][PERMITS]
        second = burst["second_call_wait_ms"]
        add(
            "2nd of two back-to-back calls: limiter wait",
            f"{second:.3f} ms (0.1's bucket: {limited['burst'][BUCKET]['second_call_wait_ms']:.0f}"
            " ms)",
            f"< {TARGET_SECOND_CALL_MS:.0f} ms",
            second < TARGET_SECOND_CALL_MS,
            second,
        )
        spread = burst["arrival_spread_ms"]
        add(
            "10 calls at once on an idle session: arrivals after the first",
            f"all within {spread:.1f} ms (0.1's bucket: "
            f"{limited['burst'][BUCKET]['arrival_spread_ms']:.0f} ms)",
            f"within {TARGET_BURST_SPREAD_MS:.0f} ms",
            spread <= TARGET_BURST_SPREAD_MS,
            spread,
        )
        mixed, old_mixed = limited["mixed"][PERMITS], limited["mixed"][BUCKET]
        add(
            "60 writes behind 600 reads: 10006, most in any 1 s",
            f"{mixed['answers_10006']}, {mixed['max_in_1s']} (0.1's bucket: "
            f"{old_mixed['answers_10006']}, {old_mixed['max_in_1s']})",
            "0, <= 10",
            mixed["answers_10006"] == 0 and mixed["max_in_1s"] <= 10,
            mixed["answers_10006"],
        )
        cold = limited["first_call_s"]["cold"]["median"]
        warm = limited["first_call_s"]["warm"]["median"]
        rtt = limited["first_call_rtt_s"]
        add(
            "First signed call after warm_up, in round trips",
            f"{warm / rtt:.2f} RTT ({warm * 1e3:.1f} ms; cold: {cold / rtt:.2f} RTT)",
            f"<= {TARGET_WARM_RTTS:.1f} RTT",
            warm / rtt <= TARGET_WARM_RTTS,
            warm / rtt,
        )
    if results.get("redis_limiter"):
        from .redis_limiter import redis_targets

        for target in redis_targets(results["redis_limiter"]):
            add(*target)
    desired = results.get("desired")
    if desired:
        targets += desired_targets(desired)
    if results.get("observability"):
        from .observability import observability_targets

        for target in observability_targets(results["observability"]):
            add(*target)
    if results.get("stream"):
        from .stream import stream_targets

        for target in stream_targets(results["stream"]):
            add(*target)
    return targets


def desired_targets(desired: Json) -> list[Json]:
    """Section 6's targets: ensure against writing every symbol."""
    ensure, write_all = desired["ensure"], desired["write_all"]
    n, changing = desired["positions"], desired["changing"]
    speedup = desired["speedup"]
    wall = ensure["wall_s"]["median"]
    exact = ensure["writes"] == changing and ensure["changed"] == changing
    clean = ensure["answers_10006"] == 0 and ensure["failures"] == 0 and ensure["all_on"]
    return [
        {
            "target": f"Desired state, {n} positions with {changing} to change: ensure vs "
            "writing all",
            "measured": f"{speedup:.0f}x faster ({wall:.3f} s vs "
            f"{write_all['wall_s']['median']:.2f} s)",
            "goal": f">= {TARGET_DESIRED_SPEEDUP:.0f}x",
            "pass": speedup >= TARGET_DESIRED_SPEEDUP,
            "value": speedup,
        },
        {
            "target": "Desired state: writes sent, 10006 answers, failures",
            "measured": f"{ensure['writes']} writes, {ensure['reads']} read(s), "
            f"{ensure['answers_10006']} x 10006, {ensure['failures']} failed",
            "goal": f"{changing} writes, 0, 0",
            "pass": exact and clean,
            "value": ensure["writes"],
        },
        *_flat_targets(desired.get("flat")),
    ]


def _flat_targets(flat: Json | None) -> list[Json]:
    """Ensure over named symbols with nothing open must not be slower than writing them all."""
    if not flat:
        return []
    ensure, write_all = flat["ensure"], flat["write_all"]
    allowed = write_all["wall_s"] + flat["allowance_s"]
    return [
        {
            "target": f"Desired state, {flat['positions']} named symbols with nothing open: "
            "ensure vs writing all",
            "measured": f"{ensure['wall_s']:.2f} s vs {write_all['wall_s']:.2f} s "
            f"({flat['ratio']:.3f}x; {ensure['reads']} read(s), {ensure['writes']} writes)",
            "goal": f"<= writing all + one round trip ({flat['allowance_s'] * 1e3:.0f} ms, "
            "the page read)",
            "pass": ensure["wall_s"] <= allowed and ensure["failures"] == 0 and ensure["all_on"],
            "value": flat["ratio"],
        }
    ]


# -- tables -------------------------------------------------------------------------


def header_lines(results: Json) -> str:
    """Where and how the figures were measured."""
    m, v = results["machine"], results["versions"]
    versions = ", ".join(f"{k} {val}" for k, val in v.items() if val is not None)
    return (
        f"{results['mode'].capitalize()} run of {results['started_at']} "
        f"({results.get('duration_s', 0):.0f} s): {m['cpu_model']}, {m['cores']} cores, "
        f"{m['python']}, {m['os']}.  \n"
        f"Versions: {versions}."
    )


def targets_table(results: Json) -> str:
    """The targets with PASS/MISS."""
    rows = [
        [t["target"], t["measured"], t["goal"], _verdict(t["pass"])]
        for t in results.get("targets", [])
    ]
    return _table(["Target", "Measured", "Goal", "Result"], rows, "llll")


def signing_table(signing: Json) -> str:
    """Section 1."""
    v = signing["variants"]
    rows = [
        [
            f"`{name}`",
            signing["descriptions"][name],
            _range(v[name], 0),
            _x(_per_round(v[name], v["signer"])),
            _x(_of_medians(v[name], v["signer"])),
        ]
        for name in v
    ]
    return _table(
        ["Variant", "What", "ns/call", "÷ signer, per round", "÷ signer, of medians"], rows, "ll"
    )


def rsa_table(rsa: Json) -> str:
    """Section 1b."""
    v = rsa["variants"]
    rows = [
        [
            "HMAC-SHA256 (HmacSigner)" if name == "hmac" else f"RSA-{name[3:]} (RsaSigner)",
            _range(v[name], 1, 1e-3),
            _x(_per_round(v[name], v["hmac"]), 0),
            _x(_of_medians(v[name], v["hmac"]), 0),
        ]
        for name in v
    ]
    return _table(["Key", "µs/signature", "÷ HMAC, per round", "÷ HMAC, of medians"], rows, "l")


def prepare_table(prepare: Json) -> str:
    """Section 2."""
    steps = prepare["steps"]
    rows = [[f"`{name}`", prepare["descriptions"][name], _range(steps[name], 0)] for name in steps]
    return _table(["Step", "What", "ns/call"], rows, "ll")


def throughput_table(cells: Json) -> str:
    """Section 3, one event loop: both clients at every concurrency."""
    rows = []
    for concurrency, cell in cells.items():
        for client in ("sdk", "raw"):
            s = cell[client]
            rows.append(
                [
                    concurrency,
                    CLIENT_LABELS[client],
                    _range(s["rps"], 0),
                    _range(s["cpu_us"], 0),
                    _num(_median(s["p50_ms"]), 2),
                    _num(_median(s["p99_ms"]), 2),
                    _num(s["peak_rss_mib"], 1),
                    _num(s.get("traced_peak_mib"), 2),
                    _num(_median(s["sim_cpu_us"]), 0),
                    str(s["errors"]),
                ]
            )
    return _table(
        [
            "Concurrency",
            "Client",
            "req/s",
            "client CPU µs/req",
            "p50 ms",
            "p99 ms",
            "peak RSS MiB",
            "traced peak MiB",
            "simulator CPU µs/req",
            "errors",
        ],
        rows,
        "rl",
    )


def ratio_table(loops: Json) -> str:
    """Section 3: bybit_async ÷ raw aiohttp, per pair of adjacent rounds (one per sweep)."""
    rows = []
    for loop_name, cells in loops.items():
        for concurrency, cell in cells.items():
            rows.append(
                [
                    LOOP_LABELS.get(loop_name, loop_name),
                    concurrency,
                    str(cell["ratio"]["rps"]["n"]),
                    _range(cell["ratio"]["rps"], 2),
                    _x(_of_medians(cell["sdk"]["rps"], cell["raw"]["rps"])),
                    _range(cell["ratio"]["cpu_us"], 2),
                    _x(_of_medians(cell["sdk"]["cpu_us"], cell["raw"]["cpu_us"])),
                ]
            )
    return _table(
        [
            "Loop",
            "Concurrency",
            "Sweeps",
            "req/s, SDK ÷ raw, per round",
            "req/s, of medians",
            "CPU per request, SDK ÷ raw, per round",
            "CPU, of medians",
        ],
        rows,
        "lr",
    )


def soak_table(soak: Json) -> str:
    """Section 3, long run: memory and speed after each chunk."""
    rows = [
        [
            f"{c['after_requests']:,}",
            _num(c["rss_mib"], 1),
            f"{c['gc_objects']:,}",
            _num(c["rps"], 0),
            _num(c["cpu_us"], 0),
            _num(c["p99_ms"], 2),
        ]
        for c in soak["checkpoints"]
    ]
    return _table(
        ["After requests", "RSS MiB", "gc objects", "req/s", "CPU µs/req", "p99 ms"], rows
    )


def ratelimit_table(limited: Json) -> str:
    """Section 4: every measure, the permit limiter beside 0.1's token bucket."""
    parts: list[str] = []
    rows = []
    for n, sweep in limited["sweeps"].items():
        minimum = sweep["minimum_s"]
        for name in (PERMITS, BUCKET):
            r = sweep[name]
            rows.append(
                [
                    f"{n} symbols" if name == PERMITS else "",
                    name,
                    _num(minimum, 2),
                    _range(r["wall_s"], 2),
                    _num(r["wall_s"]["median"] / minimum, 3) + "x",
                    str(r["max_in_1s"]),
                    str(r["answers_10006"]),
                    str(r["failures"]),
                ]
            )
    parts.append("**Sweeps at the real 10 per rolling second**")
    parts.append(
        _table(
            [
                "Sweep",
                "Limiter",
                "Minimum s",
                "Wall s",
                "÷ minimum",
                "Most in 1 s",
                "10006",
                "Failures",
            ],
            rows,
            "ll",
        )
    )
    burst = limited["burst"]
    rows = []
    for k in range(len(burst[PERMITS]["wait_ms_by_k"])):
        rows.append(
            [str(k + 1)] + [_num(burst[name]["wait_ms_by_k"][k], 3) for name in (PERMITS, BUCKET)]
        )
    rows.append(
        ["2nd of two back-to-back calls"]
        + [_num(burst[name]["second_call_wait_ms"], 3) for name in (PERMITS, BUCKET)]
    )
    rows.append(
        ["10 at once through a session: last arrival after the first"]
        + [_num(burst[name]["arrival_spread_ms"], 1) for name in (PERMITS, BUCKET)]
    )
    parts.append("**A burst of 10 on an idle limiter: limiter wait of the k-th call, ms**")
    parts.append(_table(["k", PERMITS, BUCKET], rows, "l"))
    mixed = limited["mixed"]
    parts.append("**60 writes behind 600 queued reads, real IP and endpoint limits**")
    parts.append(
        _table(
            ["Limiter", "Wall s", "Most writes in 1 s", "10006", "403", "Failures"],
            [
                [
                    name,
                    _num(mixed[name]["wall_s"], 2),
                    str(mixed[name]["max_in_1s"]),
                    str(mixed[name]["answers_10006"]),
                    str(mixed[name]["answers_403"]),
                    str(mixed[name]["failures"]),
                ]
                for name in (PERMITS, BUCKET)
            ],
            "l",
        )
    )
    first, rtt = limited["first_call_s"], limited["first_call_rtt_s"]
    parts.append(f"**First signed call on a new session, {rtt * 1e3:.0f} ms per round trip**")
    parts.append(
        _table(
            ["Session", "Latency ms", "Round trips"],
            [
                [
                    label,
                    _range(first[key], 1, 1e3),
                    _num(first[key]["median"] / rtt, 2),
                ]
                for key, label in (("cold", "cold"), ("warm", "after `warm_up()`"))
            ],
            "l",
        )
    )
    cpu = limited["limiter_cpu_us"]
    parts.append(
        f"**Limiter CPU per request: acquire plus release, nothing to wait for "
        f"({limited['limiter_cpu_calls']:,} calls a round)**"
    )
    parts.append(
        _table(
            ["Limiter", "CPU µs/req"],
            [[name, _range(stats, 2)] for name, stats in cpu.items()],
            "l",
        )
    )
    return "\n\n".join(parts)


def desired_table(desired: Json) -> str:
    """Section 6: ensure_auto_add_margin against set_auto_add_margin_many over every symbol."""
    rows = []
    for key, label in (("ensure", "`ensure_auto_add_margin`"), ("write_all", "write all")):
        r = desired[key]
        rows.append(
            [
                label,
                str(r["reads"]),
                str(r["writes"]),
                _num(r["minimum_s"], 3),
                _range(r["wall_s"], 3),
                _num(r["wall_s"]["median"] / r["minimum_s"], 2) + "x",
                str(r["answers_10006"]),
                str(r["failures"]),
                str(r["rounds"]),
            ]
        )
    table = _table(
        [
            "Way",
            "Reads",
            "Writes",
            "Minimum s",
            "Wall s",
            "÷ minimum",
            "10006",
            "Failures",
            "Rounds",
        ],
        rows,
        "l",
    )
    text = f"{table}\n\nWriting all ÷ ensure: **{desired['speedup']:.0f}x**."
    flat = desired.get("flat")
    if flat:
        flat_rows = [
            [
                label,
                str(flat[key]["reads"]),
                str(flat[key]["writes"]),
                _num(flat[key]["wall_s"], 2),
                str(flat[key]["answers_10006"]),
                str(flat[key]["failures"]),
            ]
            for key, label in (
                ("ensure", "`ensure_auto_add_margin(names, ...)`"),
                ("write_all", "write all"),
            )
        ]
        text += (
            f"\n\n{flat['positions']} named symbols with no open position, "
            f"{flat['changing']} of them with the flag off, {len(flat['ensure']['walls_s'])} "
            "rounds of each (medians), 10 ms each way with no jitter, so that what differs "
            "is the page read and not where a delay spike fell:\n\n"
            + _table(["Way", "Reads", "Writes", "Wall s", "10006", "Failures"], flat_rows, "l")
            + f"\n\nEnsure ÷ writing all: **{flat['ratio']:.3f}x**."
        )
    return text


def peers_table(peers: Json) -> str:
    """Section 5."""
    rows = []
    for concurrency, cell in peers.get("by_concurrency", {}).items():
        sdk = cell.get("sdk")
        for client, s in cell.items():
            vs = s.get("vs_sdk")
            rows.append(
                [
                    concurrency,
                    CLIENT_LABELS.get(client, client),
                    _range(s["rps"], 0),
                    _range(s["cpu_us"], 0),
                    _num(_median(s["p50_ms"]), 2),
                    _num(_median(s["p99_ms"]), 2),
                    _num(_median(vs["rps"]), 2) if vs else "1",
                    _x(_of_medians(s["rps"], sdk["rps"])) if vs and sdk else "1",
                    _num(_median(vs["cpu_us"]), 2) if vs else "1",
                    _x(_of_medians(s["cpu_us"], sdk["cpu_us"])) if vs and sdk else "1",
                    str(s["errors"]),
                ]
            )
    table = _table(
        [
            "Concurrency",
            "Client",
            "req/s",
            "client CPU µs/req",
            "p50 ms",
            "p99 ms",
            "req/s ÷ bybit_async, per round",
            "req/s, of medians",
            "CPU ÷ bybit_async, per round",
            "CPU, of medians",
            "errors",
        ],
        rows,
        "rl",
    )
    notes = [
        f"- {name}: {info['status']}" + (f" ({info['version']})" if info.get("version") else "")
        for name, info in peers.get("clients", {}).items()
    ]
    # Brackets escaped: Markdown would read "['api'][*]" as a reference link.
    notes += [
        f"- {name} pointed by: {how.replace('[', '&#91;')}"
        for name, how in peers.get("how_pointed", {}).items()
    ]
    return table + "\n\n" + "\n".join(notes)


def render_tables(results: Json, heading: str = "##") -> str:
    """Every section's tables as Markdown, in order; sections missing from *results* are skipped."""
    parts = [f"{heading} Targets", targets_table(results)]
    signing = results.get("signing")
    if signing:
        parts += [
            f"{heading} 1. Signing, per call",
            f"Message: {signing['message_bytes']} bytes, timestamp + API key + recv_window + "
            f"the set-auto-add-margin body: `{signing['message']}`.",
            signing_table(signing),
        ]
    rsa = results.get("rsa_signing")
    if rsa and rsa.get("available"):
        parts += [
            f"{heading} 1b. RSA signing, per call",
            "A self-made RSA key signs RSASSA-PKCS1-v1_5 SHA-256 over the same message; "
            "each signature costs the event loop this much CPU, on top of the request.",
            rsa_table(rsa),
        ]
    prepare = results.get("prepare")
    if prepare:
        parts += [
            f"{heading} 2. Request preparation, per call, no network",
            f"Mirrors {prepare['mirrors']}.",
            prepare_table(prepare),
        ]
    throughput = results.get("throughput")
    if throughput and throughput.get("loops"):
        parts.append(f"{heading} 3. Throughput against the simulator (no rate limits)")
        parts.append(
            f"Client peak memory: {throughput['memory_method']}; it is the whole process's, "
            "both clients' pools included.  Traced peak: "
            f"{throughput.get('traced_memory_method', 'n/a')}.  Connection pool: "
            f"{throughput['pool_limit']} for both clients.  The raw client sends "
            f"`X-BAPI-RECV-WINDOW: {throughput['recv_window_raw']}` and is re-signed before "
            "every round."
        )
        for loop_name, cells in throughput["loops"].items():
            parts.append(f"**Event loop: {LOOP_LABELS.get(loop_name, loop_name)}**")
            parts.append(throughput_table(cells))
        parts.append("**bybit_async ÷ raw aiohttp, per pair of adjacent rounds**")
        parts.append(ratio_table(throughput["loops"]))
        for skipped in throughput.get("skipped_loops", []):
            parts.append(f"{skipped} is not installed: its rows are missing.")
    soak = results.get("soak")
    if soak:
        parts += [
            f"{heading} 3b. Long run: {soak['requests']:,} requests at concurrency "
            f"{soak['concurrency']}",
            f"Memory: {soak['memory_method']}, measured between chunks with nothing in flight.",
            soak_table(soak),
        ]
    limited = results.get("rate_limited")
    if limited:
        delay = limited["sweep_delay"]
        parts += [
            f"{heading} 4. Rate limits as Bybit counts them",
            "An in-process simulator enforces Bybit's real limits (10 per rolling second on "
            "set-auto-add-margin, 600 per 5 s per IP) and delays every request and answer by "
            f"{delay['low'] * 1e3:.0f}-{delay['high'] * 1e3:.0f} ms each way (with a "
            f"{delay['spike'] * 1e3:.0f} ms spike {delay['spike_probability']:.0%} of the "
            "time) in the sweeps.  Each measure runs with the session's permit limiter and "
            "with bybit_async 0.1's token bucket (`benchmarks/legacy_limiter.py`), in the same "
            "run.  The minimum for N requests at L per rolling window W is "
            "(ceil(N/L) - 1) x W plus one round trip "
            f"({limited['nominal_rtt_s'] * 1e3:.0f} ms here).",
            ratelimit_table(limited),
        ]
    peers = results.get("peers")
    if peers:
        parts += [f"{heading} 5. Other clients, same call, same simulator", peers_table(peers)]
    if results.get("redis_limiter"):
        from .redis_limiter import render_redis_limiter

        parts += render_redis_limiter(results["redis_limiter"], heading)
    desired = results.get("desired")
    if desired:
        delay = desired["sweep_delay"]
        parts += [
            f"{heading} 7. Desired state: read first, write what differs",
            f"{desired['positions']} open isolated positions, {desired['changing']} of them with "
            "auto-add-margin off, in an in-process simulator at Bybit's real limits "
            f"({desired['limit']} writes and {desired['read_limit']} position-list reads per "
            "rolling second, 600 per 5 s per IP), delaying every request and answer by "
            f"{delay['low'] * 1e3:.0f}-{delay['high'] * 1e3:.0f} ms each way (with a "
            f"{delay['spike'] * 1e3:.0f} ms spike {delay['spike_probability']:.0%} of the "
            "time).  Each round starts a fresh simulator and a fresh session, warmed up "
            "untimed.  "
            "`ensure_auto_add_margin(None, True)` reads the list and writes the positions that "
            "differ; *write all* is `set_auto_add_margin_many` over every symbol.  The minimum "
            "for N requests at L per rolling window W is (ceil(N/L) - 1) x W plus one round "
            f"trip ({desired['nominal_rtt_s'] * 1e3:.0f} ms here); ensure's is its read's plus "
            "its writes'.  Ensure ends with the slowest of its concurrent writes, so one delay "
            "spike among them shows in its round's wall time.",
            desired_table(desired),
        ]
    if results.get("observability"):
        from .observability import render_observability

        parts += render_observability(results["observability"], heading)
    if results.get("stream"):
        from .stream import render_stream

        parts += render_stream(results["stream"], heading)
    return "\n\n".join(parts) + "\n"


# -- docs and chart ---------------------------------------------------------------------

HOW_TO_READ = """\
- Every figure is the **median over rounds**, with the smallest and largest round in
  brackets: `median (min-max)`.  Ratios are taken round by round, between adjacent
  rounds of the two clients, and then the median of those is shown ("per round").
  Beside it, "of medians" is the ratio of the two medians in the absolute tables.  The
  two differ when the machine's speed drifts between rounds: both clients' rates rise
  and fall together, so the per-round ratio stays steady while each client's median
  may come from a different round.  The per-round figure is the comparison; the other
  is shown so that dividing the absolute figures does not look like an error.
- **bybit_async** is `BybitSession(..., rate_limits=None).set_auto_add_margin`; **raw
  aiohttp** is the least a hand-written client can do for the same request: one pooled
  `aiohttp.ClientSession`, bodies signed before the clock starts, the answer read and
  parsed with orjson.  The difference between them is what the SDK costs.
- **Client CPU µs/req** is user + system CPU of the client process (`getrusage`) per
  request.  The simulator runs in another process, so none of its work is in it; its own
  CPU per request is shown alongside, because on 2 cores it is the simulator that sets
  the request rate, and a client that waits on the server pays more wake-ups per request.
- Absolute figures move by ±30% between runs on a shared virtual machine; the ratios,
  taken between rounds a second apart, move far less.  Compare ratios across machines,
  not absolute rates."""

HOW_MEASURED = """\
- **Signing** (section 1) and **preparation** (section 2) are timed in one process with
  `time.perf_counter_ns` around loops of tens of thousands of calls, the garbage
  collector off, every variant once per round in rotating order.  The loop itself (about
  10 ns) is included.  The floor is written inline in the benchmark, independently of
  `HmacSigner`.  Preparation calls the session's own pieces in the order of
  `BybitSession._send`, as listed above its table.
- **Throughput** (section 3): the simulator runs as `python -m bybit_async.testing
  --no-limits --port 0` in a subprocess; the client runs in the main process.  The
  matrix runs in sweeps: each sweep starts a fresh simulator and fresh clients, warms
  both up (untimed), then visits every concurrency level, in an order that rotates from
  sweep to sweep, with one round of bybit_async and one of raw aiohttp (A B, and B A
  in every other sweep so that going first favours neither).
  Medians are over sweeps, so a slow minute of the machine lands on every level and
  both clients alike.  *Concurrency* is the number of coroutines, each with its own
  symbol, looping over its share of the round's requests and flipping the flag each
  time so that every answer is retCode 0.  Both clients use a connection pool of 100
  (the session's default `max_connections`).  Latency is per request, from the call to
  the parsed answer.  A round is bounded by count and by time.
- **Long run**: the session alone, in chunks of 10%; after each chunk, with nothing in
  flight, `gc.collect()`, then RSS and the number of gc-tracked objects.  Growth is the
  end against the first chunk, so that caches filled by the first requests do not count.
- **Rate limits** (section 4): an in-process `BybitSimulator` at Bybit's real limits, a
  fresh one and a fresh session per round; the wall time of one `set_auto_add_margin_many`
  call (including the first clock sync), `sim.max_in_window(path, 1.0)` and
  `sim.count(path, ret_code=10006)`.  Limiter waits are timed around `acquire` alone;
  arrivals are the simulator's.  Limiter CPU is `time.process_time` around a loop of
  acquire and release.
- **Other clients** (section 5) are measured only when installed, against the same
  simulator process, interleaved with bybit_async at the same concurrency."""


def render_docs(results: Json, chart: Path | None) -> str:
    """The whole of docs/benchmarks.md."""
    chart_part = ""
    if chart is not None:
        chart_part = (
            "## Throughput and CPU per request against concurrency\n\n"
            f"![Requests per second and client CPU per request against concurrency, "
            f"bybit_async and raw aiohttp]({chart.name})\n\n"
        )
    return (
        "# Benchmarks\n\n"
        "What `bybit_async` costs per request, and how it scales, measured by the suite in "
        "`benchmarks/` against the simulator on loopback.  This page and its chart are "
        "written by `python -m benchmarks` from `benchmarks/results/latest.json`.\n\n"
        f"{header_lines(results)}\n\n"
        "## How to read these tables\n\n"
        f"{HOW_TO_READ}\n\n"
        "## How it is measured\n\n"
        f"{HOW_MEASURED}\n\n"
        f"{chart_part}"
        f"{render_tables(results)}\n"
        "## Running it\n\n"
        "```bash\n"
        "make bench          # full run, about 9.5 minutes on 2 cores; rewrites this page\n"
        "make bench-quick    # smaller counts, the same tables, about 2.5 minutes\n"
        ".venv/bin/python -m benchmarks --chart-only   # this page and the chart from "
        "latest.json\n"
        "```\n"
    )


def write_chart(results: Json, path: Path) -> Path | None:
    """Plot req/s and CPU per request against concurrency; None when there is nothing to plot.

    matplotlib is imported here only, so that the suite runs without it.
    """
    loops = (results.get("throughput") or {}).get("loops") or {}
    if not loops:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_cpu) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    styles: dict[tuple[str, str], dict[str, Any]] = {
        ("asyncio", "sdk"): {"color": "tab:blue", "linestyle": "-", "marker": "o"},
        ("asyncio", "raw"): {"color": "tab:gray", "linestyle": "-", "marker": "s"},
        ("uvloop", "sdk"): {"color": "tab:green", "linestyle": "--", "marker": "o"},
        ("uvloop", "raw"): {"color": "tab:olive", "linestyle": "--", "marker": "s"},
    }
    series = [(loop_name, client) for loop_name in loops for client in ("sdk", "raw")]
    for index, (loop_name, client) in enumerate(series):
        cells = loops[loop_name]
        levels = sorted(int(c) for c in cells)
        # Nudge each series sideways (the axis is logarithmic) so the error bars stay apart.
        nudge = 1.07 ** (index - (len(series) - 1) / 2)
        style = styles.get((loop_name, client), {})
        label = f"{CLIENT_LABELS[client]} ({loop_name})"
        for ax, key in ((ax_rps, "rps"), (ax_cpu, "cpu_us")):
            stats = [cells[str(c)][client][key] for c in levels]
            med = [s["median"] for s in stats]
            err = [
                [m - s["min"] for m, s in zip(med, stats, strict=True)],
                [s["max"] - m for m, s in zip(med, stats, strict=True)],
            ]
            xs = [c * nudge for c in levels]
            ax.errorbar(xs, med, yerr=err, label=label, capsize=3, **style)
    for ax, title, unit in (
        (ax_rps, "Throughput", "requests per second"),
        (ax_cpu, "Client CPU per request", "µs of CPU per request"),
    ):
        ax.set_xscale("log")
        ax.set_xticks(sorted(int(c) for c in next(iter(loops.values()))))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent coroutines (one symbol each)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    ax_cpu.legend(fontsize=8, loc="best")
    machine = results["machine"]
    fig.suptitle(
        f"bybit_async vs raw aiohttp against the simulator; median and min-max of rounds "
        f"({machine['cores']} cores, {machine['python']})",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_docs(results: Json, docs_path: Path, chart_path: Path) -> list[Path]:
    """Write the chart (if matplotlib is there) and docs/benchmarks.md; return the paths."""
    written: list[Path] = []
    chart: Path | None
    try:
        chart = write_chart(results, chart_path)
    except ImportError:
        # No matplotlib: the page goes without a chart rather than with a stale one.
        chart = None
    if chart is not None:
        written.append(chart)
    docs_path.write_text(render_docs(results, chart), encoding="utf-8")
    written.append(docs_path)
    return written
