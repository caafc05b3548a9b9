"""The benchmark suite of bybit_async: what the client costs and how it scales.

Run it as ``python -m benchmarks`` (full, about 9.5 minutes on 2 cores),
``python -m benchmarks --quick`` (same tables on smaller counts, about 2.5 minutes)
or ``python -m benchmarks --chart-only`` (rebuild the chart and
``docs/benchmarks.md`` from ``benchmarks/results/latest.json`` without measuring).

Sections, each in its own module:

* :mod:`benchmarks.micro`: signing and request preparation, per call, in one process;
* :mod:`benchmarks.throughput`: requests against the simulator in a separate process,
  the session against raw aiohttp, and a long run that watches memory;
* :mod:`benchmarks.ratelimited`: 300 symbols through a 100/s endpoint limit;
* :mod:`benchmarks.peers`: pybit and ccxt, when they happen to be installed.

Timing lives here and never in the tests.
"""
