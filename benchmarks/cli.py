"""The command line: ``python -m benchmarks [--quick | --chart-only | --profile] ...``."""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from .common import FULL, QUICK, Config, Json, log, machine_info, versions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
DOCS = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks-throughput.png"

SECTIONS = (
    "signing",
    "rsa",
    "prepare",
    "throughput",
    "soak",
    "ratelimit",
    "peers",
    "redis",
    "desired",
    "stats",
    "stream",
)


def _section_runners() -> dict[str, tuple[str, Callable[[Config], Json]]]:
    # Imported here so that --chart-only needs neither aiohttp sessions nor the simulator.
    from .desired import measure_desired
    from .micro import measure_prepare, measure_rsa_signing, measure_signing
    from .observability import measure_observability
    from .peers import measure_peers
    from .ratelimited import measure_rate_limited
    from .redis_limiter import measure_redis_limiter
    from .stream import measure_stream
    from .throughput import measure_soak, measure_throughput

    return {
        "signing": ("signing", measure_signing),
        "rsa": ("rsa_signing", measure_rsa_signing),
        "prepare": ("prepare", measure_prepare),
        "throughput": ("throughput", measure_throughput),
        "soak": ("soak", measure_soak),
        "ratelimit": ("rate_limited", measure_rate_limited),
        "peers": ("peers", measure_peers),
        "redis": ("redis_limiter", measure_redis_limiter),
        "desired": ("desired", measure_desired),
        "stats": ("observability", measure_observability),
        "stream": ("stream", measure_stream),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; see ``python -m benchmarks --help``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure what bybit_async costs and how it scales; print Markdown tables.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="smaller counts, same tables (about 2.5 minutes)"
    )
    mode.add_argument(
        "--chart-only",
        action="store_true",
        help="measure nothing: rebuild the chart and docs/benchmarks.md from the results file",
    )
    mode.add_argument(
        "--profile",
        action="store_true",
        help="measure nothing else: cProfile the session's request loop at concurrency 50",
    )
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument(
        "--write-docs",
        action="store_true",
        help="also write docs/benchmarks.md and its chart (the default for a full run)",
    )
    docs.add_argument(
        "--no-docs", action="store_true", help="leave docs/benchmarks.md and the chart alone"
    )
    parser.add_argument(
        "--only",
        metavar="SECTIONS",
        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (implies --no-docs "
        "unless --write-docs)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="results file to write, or to read with --chart-only "
        f"(default {RESULTS.relative_to(ROOT)})",
    )
    args = parser.parse_args(argv)
    if args.only is not None:
        chosen = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(chosen) - set(SECTIONS))
        if unknown or not chosen:
            parser.error(f"--only takes sections of {', '.join(SECTIONS)}; got {args.only!r}")
        args.only = chosen
    return args


def run(config: Config, sections: list[str]) -> Json:
    """Run *sections* with *config*; return the results with their targets evaluated."""
    from .report import evaluate_targets

    started = time.perf_counter()
    results: Json = {
        "schema": 1,
        "mode": config.name,
        "started_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "versions": versions(),
        "config": config.to_json(),
    }
    runners = _section_runners()
    for section in sections:
        key, measure = runners[section]
        results[key] = measure(config)
    results["duration_s"] = time.perf_counter() - started
    results["targets"] = evaluate_targets(results)
    return results


def _write_docs(results: Json) -> None:
    from .report import write_docs

    if results.get("mode") != "full":
        log(f"note: docs written from a {results.get('mode')} run")
    for path in write_docs(results, DOCS, CHART):
        log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the suite as the options say; return the exit status."""
    args = parse_args(argv)
    # A plain SIGTERM would skip the finally blocks that stop the simulator process.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.profile:
        from .profiling import profile_session

        print(profile_session())
        return 0

    from .report import header_lines, render_tables

    if args.chart_only:
        if not args.results.exists():
            log(f"no results at {args.results}: run python -m benchmarks first")
            return 1
        results = json.loads(args.results.read_text(encoding="utf-8"))
        if not args.no_docs:
            _write_docs(results)
        print(render_tables(results))
        return 0

    config = QUICK if args.quick else FULL
    sections = args.only or list(SECTIONS)
    log(f"{config.name} run: {', '.join(sections)}")
    results = run(config, sections)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {args.results} in {results['duration_s']:.0f} s")
    write_docs = args.write_docs or (config is FULL and args.only is None and not args.no_docs)
    if write_docs:
        _write_docs(results)
    print(f"# bybit_async benchmarks\n\n{header_lines(results)}\n")
    print(render_tables(results))
    return 0
