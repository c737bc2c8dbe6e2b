"""Run `certgate serve` under cProfile with a CPU-time clock; write the stats on exit.

    .venv/bin/python bench/profile_serve.py --config FILE --out serve.prof [--top 40]

Stop it with SIGTERM (the server shuts down gracefully, then the profile is written and
the top functions by own and cumulative CPU time are printed to stderr). The timer is
time.thread_time (CPU of the event-loop thread), so time the process spends preempted or
blocked in epoll is not counted: what remains is where the server's CPU goes. Profiling
costs roughly 1.5-2x CPU, so use it for proportions, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--out", default="serve.prof")
    p.add_argument("--top", type=int, default=40)
    a = p.parse_args()

    from certgate.app import serve
    from certgate.settings import load_settings

    settings = load_settings(a.config)
    prof = cProfile.Profile(time.thread_time)
    prof.enable()
    try:
        rc = asyncio.run(serve(settings))
    finally:
        prof.disable()
        prof.dump_stats(a.out)
        stats = pstats.Stats(a.out, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(a.top)
        stats.sort_stats("cumulative").print_stats(a.top)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
