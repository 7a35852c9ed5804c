"""What judging a fleet's history costs: `fdguard analyze` on Prometheus range queries.

Builds N series of a week at one sample a minute (a daily cycle, noise, a slow leak
in every fourth), as a saved /api/v1/query_range answer, and times, best of
--repeat:

- parse: reading the answer into series (`load_range_json`), the floor: the data
  has to be read whatever judges it;
- fdguard, one process: the online detector replayed over every series
  (`judge_all(jobs=1)`), and over every CPU (`jobs=os.cpu_count()`);
- a least-squares slope per series (what `predict_linear` computes), the cheapest
  trend rule there is.

It prints each as a ratio to the parse floor, the seconds of one core per series,
and checks that the leaking series, and only they, are found.

Usage: python3 bench/analyze_cost.py [--series 16] [--repeat 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running `python3 bench/analyze_cost.py` puts bench/ first on sys.path, where
# bench/inspect.py would shadow the stdlib `inspect` that dataclasses imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
    del sys.path[0]

import argparse
import json
import math
import os
import random
import time
from collections.abc import Callable

from fdguard.detect import DetectorConfig
from fdguard.promsource import PromSeries, judge_all, load_range_json

WEEK = 7 * 86400
STEP = 60


def fleet(n: int) -> str:
    rng = random.Random(1)
    t0 = 1_700_000_000
    result = []
    for k in range(n):
        leak = 6.0 if k % 4 == 0 else 0.0  # fds/hour, from day 3
        values = []
        for i in range(WEEK // STEP):
            t = i * STEP
            v = 300 + 80 * math.sin(2 * math.pi * t / 86400) + rng.gauss(0, 4)
            v += leak * max(0, t - 3 * 86400) / 3600
            values.append([t0 + t, str(round(v))])
        result.append({"metric": {"__name__": "process_open_fds", "pid": str(k)},
                       "values": values})
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})


def slopes(series: list[PromSeries]) -> list[float]:
    out = []
    for s in series:
        n = len(s.times)
        mx, my = sum(s.times) / n, sum(s.values) / n
        sxy = sum((x - mx) * (y - my) for x, y in zip(s.times, s.values, strict=True))
        sxx = sum((x - mx) ** 2 for x in s.times)
        out.append(sxy / sxx)
    return out


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, last = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        last = fn()
        best = min(best, time.perf_counter() - t0)
    return best, last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    text = fleet(args.series)
    print(f"{args.series} series of {WEEK // STEP} samples ({len(text) / 1e6:.1f} MB of JSON), "
          f"{cpus} CPUs")
    t_parse, parsed = best_of(lambda: load_range_json(text, "fleet"), args.repeat)
    series = parsed if isinstance(parsed, list) else []
    cfg, limits = DetectorConfig(), [1024] * len(series)
    t_one, verdicts = best_of(lambda: judge_all(series, limits, cfg, jobs=1), args.repeat)
    t_all, again = best_of(lambda: judge_all(series, limits, cfg, jobs=cpus), args.repeat)
    t_ls, _ = best_of(lambda: slopes(series), args.repeat)
    assert isinstance(verdicts, list)
    found = [i for i, v in enumerate(verdicts) if v.leak]
    assert found == [i for i in range(len(series)) if i % 4 == 0], found
    assert again == verdicts, "jobs changed a verdict"
    print(f"parse (the floor)              {t_parse:7.2f} s  1.00x")
    print(f"least-squares slope per series {t_ls:7.2f} s  {t_ls / t_parse:5.2f}x")
    print(f"fdguard, 1 process             {t_one:7.2f} s  {t_one / t_parse:5.2f}x  "
          f"({t_one / len(series):.2f} s of one core per series)")
    print(f"fdguard, {cpus} processes           {t_all:7.2f} s  {t_all / t_parse:5.2f}x  "
          f"({t_one / t_all:.2f}x faster than 1)")
    print(f"leaks found: {len(found)} of {len(series)} series (every fourth leaks), "
          "the same with every job count")
    return 0


if __name__ == "__main__":
    sys.exit(main())
