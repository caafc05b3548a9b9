"""The benchmark page's ratios: the median of per-round ratios, beside the ratio of the medians."""

from __future__ import annotations

from typing import Any

from benchmarks import report
from benchmarks.common import summary


def _client(rps: list[float], cpu: list[float]) -> dict[str, Any]:
    return {
        "rps": summary(rps),
        "cpu_us": summary(cpu),
        "p50_ms": summary([1.0] * len(rps)),
        "p99_ms": summary([2.0] * len(rps)),
        "peak_rss_mib": 80.0,
        "sim_cpu_us": summary([50.0] * len(rps)),
        "errors": 0,
    }


# The machine speeds up round by round; in every round the SDK is exactly as fast
# as raw aiohttp, but the SDK's median round is not raw's median round.
SDK_RPS = [6000.0, 7000.0, 7600.0, 8000.0]
RAW_RPS = [6000.0, 6500.0, 7000.0, 8000.0]  # paired by round: ratios 1.00, 1.08, 1.09, 1.00


def _results() -> dict[str, Any]:
    cell = {
        "sdk": _client(SDK_RPS, [120.0, 118.0, 116.0, 110.0]),
        "raw": _client(RAW_RPS, [120.0, 128.0, 126.0, 110.0]),
        "ratio": {
            "rps": summary([a / b for a, b in zip(SDK_RPS, RAW_RPS, strict=True)]),
            "cpu_us": summary([1.0, 118 / 128, 116 / 126, 1.0]),
        },
    }
    signer = summary([600.0, 700.0, 800.0])
    return {
        "signing": {
            "message": "m",
            "message_bytes": 1,
            "descriptions": {"signer": "ours", "hmac_new": "hmac.new", "floor": "states"},
            "variants": {
                "signer": signer,
                "hmac_new": summary([1800.0, 1400.0, 2400.0]),
                "floor": summary([590.0, 690.0, 790.0]),
            },
            "ratios": {"signer_over_floor": summary([1.0, 1.0, 1.0])},
        },
        "throughput": {
            "loops": {"asyncio": {"50": cell}},
            "memory_method": "m",
            "pool_limit": 100,
            "recv_window_raw": 5000,
        },
    }


def test_throughput_shows_both_ratios_and_says_which_is_which() -> None:
    results = _results()
    per_round = results["throughput"]["loops"]["asyncio"]["50"]["ratio"]["rps"]["median"]
    of_medians = (7300.0) / (6750.0)
    assert abs(per_round - of_medians) > 0.03  # the case the page must explain
    text = report.render_tables(results)
    assert "req/s, SDK ÷ raw, per round" in text
    assert f"{of_medians:.2f}x" in text
    (target,) = [t for t in report.evaluate_targets(results) if t["target"].startswith("Thr")]
    assert f"{per_round:.3f}x raw aiohttp, median of per-round ratios" in target["measured"]
    assert f"ratio of medians {of_medians:.3f}x" in target["measured"]
    assert "of medians" in report.HOW_TO_READ


def test_signing_table_ratios_per_round_and_of_medians() -> None:
    table = report.signing_table(_results()["signing"])
    assert "÷ signer, per round" in table
    assert "÷ signer, of medians" in table
    row = next(line for line in table.splitlines() if line.startswith("| `hmac_new`"))
    # Per round 3.0, 2.0, 3.0: median 3.00; the medians 1,800 and 700 give 2.57.
    assert row.endswith("| 3.00x | 2.57x |"), row


def _observability(stats_cpu: list[float]) -> dict[str, Any]:
    off_cpu = [100.0, 110.0, 120.0]

    def config(cpu: list[float]) -> dict[str, Any]:
        return {
            "cpu_us": summary(cpu),
            "rps": summary([5000.0] * len(cpu)),
            "errors": 0,
            "cpu_ratio": summary([a / b for a, b in zip(cpu, off_cpu, strict=True)]),
        }

    return {
        "concurrency": 50,
        "requests_per_round": 4000,
        "sweeps": 3,
        "off": {"cpu_us": summary(off_cpu), "rps": summary([5000.0] * 3), "errors": 0},
        "stats": config(stats_cpu),
        "events": config([c * 1.06 for c in off_cpu]),
        "recording": {
            "record_us": 0.96,
            "snapshot_us": 125.0,
            "snapshot_paths": 10,
            "samples": 1024,
        },
    }


def test_observability_target_is_the_median_per_round_ratio_of_stats_over_off() -> None:
    within = report.evaluate_targets({"observability": _observability([102.0, 112.2, 122.4])})
    (target,) = [t for t in within if t["target"].startswith("Stats on by default")]
    assert target["pass"] is True
    assert target["measured"].startswith("1.020x")
    over = report.evaluate_targets({"observability": _observability([104.0, 114.4, 124.8])})
    (target,) = [t for t in over if t["target"].startswith("Stats on by default")]
    assert target["pass"] is False
    text = report.render_tables({"observability": _observability([102.0, 112.2, 122.4])})
    assert "## 8. Observability" in text
    row = next(line for line in text.splitlines() if line.startswith("| stats on + on_event"))
    assert "1.060 (1.060-1.060)" in row, row
    assert "0.96 µs per request" in text


def _stream(p99_ms: float, storm_ratio: float, duplicates: int) -> dict[str, Any]:
    return {
        "delay": {"low": 0.0075, "high": 0.0125},
        "limit": 10,
        "machine_note": "noisy",
        "reaction": {"samples": 3, "p50_ms": 20.0, "p99_ms": p99_ms, "goal_ms": 35.0},
        "storm": {
            "positions": 1000,
            "wall_s": 99.0 * storm_ratio,
            "minimum_s": 99.0,
            "ratio": storm_ratio,
            "writes": 1000,
            "rate_limited": 0,
            "left_wrong": 0,
        },
        "drops": {
            "positions": 200,
            "rounds": 10,
            "changed_per_round": 20,
            "writes": 200 + duplicates,
            "duplicates": duplicates,
            "left_wrong": 0,
            "converge_ms": summary([1000.0]),
            "downtime_ms": summary([40.0]),
            "round_over_bound": summary([1.1]),
        },
        "pushes": {
            "pushes": 1000,
            "distinct_positions": 10,
            "orjson_us": 1.0,
            "stream_us": 6.0,
            "ratio": 6.0,
            "rss_mib_samples": [100.0, 100.2],
        },
    }


def test_stream_targets_follow_the_goals() -> None:
    good = {
        t["target"]: t["pass"] for t in report.evaluate_targets({"stream": _stream(30, 1.04, 0)})
    }
    assert all(good.values())
    assert len(good) == 4
    bad = report.evaluate_targets({"stream": _stream(36, 1.09, 1)})
    assert [t["pass"] for t in bad] == [False, False, False, True]
    text = report.render_tables({"stream": _stream(30, 1.04, 0)})
    assert "## 9. Live positions" in text
    assert "6.00 µs per push vs 1.00 µs" in text


def _limits(ratio: float, count: int) -> dict[str, Any]:
    """Section 10 with every time at *ratio* its minimum and every count at *count*."""

    def timed(minimum_s: float, **extra: Any) -> dict[str, Any]:
        return {"wall_s": minimum_s * ratio, "minimum_s": minimum_s, "ratio": ratio, **extra}

    cpu = [100.0 * (0.98 + ratio - 1.0), 101.0 * (0.98 + ratio - 1.0)]
    return {
        "delay": {"low": 0.0075, "high": 0.0125},
        "rtt_s": 0.02,
        "ip_limit": 600,
        "ip_window_s": 5.0,
        "machine_note": "noisy",
        "vip": timed(
            9.02,
            orders=600,
            account_limit=60,
            binding="per-UID",
            answers_10006=count,
            answers_403=0,
            max_in_1s=60,
            max_in_5s=300,
            requests=601,
            failures=0,
            in_force="60 per 1 s (learned)",
        ),
        "pro": timed(
            15.02,
            orders=2000,
            account_limit=200,
            binding="IP",
            answers_10006=0,
            answers_403=count,
            max_in_1s=200,
            max_in_5s=600,
            requests=2001,
            failures=0,
            in_force="200 per 1 s (learned)",
        ),
        "lower": timed(
            19.02,
            symbols=100,
            table_limit=10,
            stated_limit=5,
            writes=105,
            answers_10006=5,
            answers_10006_after_first=count,
            max_in_1s=5,
            failures=0,
            in_force="5 per 1 s (learned)",
        ),
        "unknown": timed(
            9.02,
            calls=30,
            account_limit=3,
            sent=30,
            answers_10006=count,
            max_in_1s=3,
            failures=0,
            in_force="3 per 1 s (learned)",
        ),
        "fleet": timed(
            40.02,
            sessions=50,
            symbols=100,
            requests=5000,
            answers_403=count,
            answers_10006=0,
            max_in_5s=600 + count,
            failures=0,
        ),
        "halt": {
            "sessions": 50,
            "cooldown_s": 2.0,
            "sessions_halted": 50,
            "sent_by_others_during_halt": count,
            "sent_by_banned_during_halt": 0,
            "signed_by_others_during_halt": count,
            "sent_before_halt": 550,
            "sent_after_ban": 50,
            "answers_403": 1,
        },
        "cpu": {
            "concurrency": 50,
            "requests_per_round": 4000,
            "sweeps": 2,
            "sim_limit": 100_000,
            "ratio": summary([0.98 + ratio - 1.0] * 2),
            "on": {"cpu_us": summary(cpu), "rps": summary([5000.0] * 2), "errors": 0},
            "off": {"cpu_us": summary([100.0, 101.0]), "rps": summary([5000.0] * 2), "errors": 0},
        },
    }


def test_limits_targets_follow_the_goals() -> None:
    good = report.evaluate_targets({"limits": _limits(1.03, 0)})
    assert len(good) == 7
    assert all(t["pass"] for t in good), good
    # Over every time goal (1.08x, 1.1x) and the CPU goal (1.02x), one stray answer each.
    bad = report.evaluate_targets({"limits": _limits(1.11, 1)})
    assert [t["pass"] for t in bad] == [False] * 7
    # Counts alone fail the count-only targets too.
    counts = report.evaluate_targets({"limits": _limits(1.03, 1)})
    assert [t["pass"] for t in counts] == [False, False, False, False, False, False, True]
    text = report.render_tables({"limits": _limits(1.03, 0)})
    assert "## 10. Limits as the account has them" in text
    assert "1.030x the minimum 9.02 s" in text
    assert "limit in force after: 60 per 1 s (learned)" in text


def test_issue24_fleet_target_passes_at_the_goal_and_fails_past_it() -> None:
    from benchmarks.redis_limiter import TARGET_FLEET_RATIO, issue24_targets

    def fleet(ratio: float) -> dict[str, object]:
        return {
            "limit": 10,
            "fleet": {
                "sessions": 50,
                "symbols": 100,
                "ratio": ratio,
                "wall_s": 40.02 * ratio,
                "minimum_s": 40.02,
                "answers_403": 0,
                "answers_10006": 0,
            },
        }

    ((name, _, _, ok, _),) = issue24_targets(fleet(TARGET_FLEET_RATIO))
    assert "RedisLimiter" in name
    assert ok
    ((_, _, _, ok, _),) = issue24_targets(fleet(TARGET_FLEET_RATIO + 0.01))
    assert not ok
