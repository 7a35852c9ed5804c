"""What `fdguard top` costs: every process of a host, surveyed, against psutil, lsof and /proc.

Starts N cheap sleepers (`sleep`, each holding a few fds) so the host has N + a few
processes, then times, best of --repeat, each way to answer "how many fds does
every process hold, against its soft limit?":

- floor: one stat of /proc/PID/fd per process (the count alone, no limit, no name:
  the least work possible);
- fdguard: `fdguard.survey.survey()` (count, /proc/PID/limits and /proc/PID/stat per
  process, ranked);
- psutil: `process_iter()` with `num_fds()` (lists each fd directory), `rlimit()` and
  `name()` per process, sorted the same way;
- lsof: `lsof -n -P` over the whole host, output lines counted per PID (no limits:
  lsof does not show them).

It prints each as a ratio to the floor, and checks that fdguard and psutil agree on
the sleepers' counts and limits.

Usage: python3 bench/top_cost.py [--procs 1000] [--repeat 5] [--no-lsof]
The sleepers are killed and reaped on exit, whatever happens.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running `python3 bench/top_cost.py` puts bench/ first on sys.path, where
# bench/inspect.py would shadow the stdlib `inspect` that dataclasses imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
    del sys.path[0]

import argparse
import collections
import contextlib
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable

import psutil

from fdguard.survey import survey


def start_sleepers(n: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            ["sleep", "3600"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def reap(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def floor() -> int:
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):  # exited meanwhile
                n += os.stat(f"/proc/{name}/fd").st_size
    return n


def with_psutil() -> list[tuple[int, str, int, int]]:
    rows = []
    for p in psutil.process_iter():
        try:
            n = p.num_fds()
            soft, _hard = p.rlimit(psutil.RLIMIT_NOFILE)
            rows.append((p.pid, p.name(), n, soft))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    rows.sort(key=lambda r: -(r[2] / r[3]) if r[3] > 0 else 0.0)
    return rows


def with_lsof() -> collections.Counter[str]:
    out = subprocess.run(["lsof", "-n", "-P"], capture_output=True, text=True, check=False)
    return collections.Counter(line.split(None, 2)[1] for line in out.stdout.splitlines()[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-lsof", action="store_true")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"python {sys.version.split()[0]}, kernel {os.uname().release}, nofile {soft}/{hard}")
    procs = start_sleepers(args.procs)
    try:
        pids = {p.pid for p in procs}
        s = survey()
        mine = {u.pid: u for u in s.processes if u.pid in pids}
        theirs = {r[0]: r for r in with_psutil() if r[0] in pids}
        assert len(mine) == len(pids), f"survey saw {len(mine)} of {len(pids)} sleepers"
        assert all((mine[p].count, mine[p].soft) == theirs[p][2:] for p in pids), "disagree"
        print(f"{len(s.processes)} processes hold fds ({args.procs} sleepers); "
              "fdguard and psutil agree on every sleeper's count and soft limit")

        t_floor = best_of(floor, args.repeat)
        t_fdg = best_of(survey, args.repeat)
        t_ps = best_of(with_psutil, args.repeat)
        print(f"floor (stat of every /proc/PID/fd)  {t_floor * 1e3:8.1f} ms  1.00x")
        print(f"fdguard survey()                    {t_fdg * 1e3:8.1f} ms  "
              f"{t_fdg / t_floor:.2f}x")
        print(f"psutil num_fds+rlimit+name          {t_ps * 1e3:8.1f} ms  {t_ps / t_floor:.2f}x")
        if not args.no_lsof and shutil.which("lsof"):
            t_lsof = best_of(with_lsof, max(1, args.repeat // 2))
            print(f"lsof -n -P (no limits)              {t_lsof * 1e3:8.1f} ms  "
                  f"{t_lsof / t_floor:.2f}x")
        print(f"fdguard / psutil {t_fdg / t_ps:.2f}")
    finally:
        reap(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
