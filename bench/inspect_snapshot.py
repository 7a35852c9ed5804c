"""Benchmark `fdguard.snapshot()` against the /proc readlink floor, lsof and psutil.

(Not named inspect.py: that would shadow the stdlib `inspect` for bench scripts.)

Builds a real process holding ~19,000 mixed fds (40% loopback TCP, 30% pipes,
30% files), then times in one run, interleaved, medians over repeats:
  floor    listing /proc/PID/fd + readlink of every fd (the least any tool can do)
  fdguard  fdguard.snapshot(pid): classified, socket states and endpoints included
  lsof     lsof -p PID -n -P
  psutil   Process.open_files() + Process.net_connections()
and the O(1) count at 10 fds and at the full size. Prints a table of medians and
ratios to the floor. Usage: python3 bench/inspect_snapshot.py [--fds 19000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

import fdguard

HERE = Path(__file__).parent


def floor(pid: int) -> int:
    d = f"/proc/{pid}/fd"
    n = 0
    for name in os.listdir(d):
        try:
            os.readlink(f"{d}/{name}")
            n += 1
        except FileNotFoundError:
            pass
    return n


def lsof(pid: int) -> int:
    out = subprocess.run(
        ["lsof", "-p", str(pid), "-n", "-P"], capture_output=True, check=False
    ).stdout
    return out.count(b"\n")


def with_psutil(pid: int) -> int:
    p = psutil.Process(pid)
    return len(p.open_files()) + len(p.net_connections(kind="all"))


def snapshot(pid: int) -> int:
    return fdguard.snapshot(pid).count


def snapshot_fdinfo(pid: int) -> int:
    return fdguard.snapshot(pid, fdinfo=True).count


def time_it(fn: Callable[[int], int], pid: int) -> float:
    t0 = time.perf_counter()
    fn(pid)
    return time.perf_counter() - t0


def holder(n: int, distinct: int = 100) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fd_holder.py"), str(n), "0.4", "0.3", str(distinct)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().split()
    if not line or line[0] != "ready":
        proc.kill()
        proc.wait()
        raise SystemExit("fd holder failed to start (is the hard fd limit high enough?)")
    return proc, int(line[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)
    if proc.stdout:
        proc.stdout.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fds", type=int, default=19000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument(
        "--distinct-files",
        type=int,
        default=100,
        help="spread the file fds over this many paths (fdguard stats each path once)",
    )
    args = ap.parse_args()
    if shutil.which("lsof") is None:
        raise SystemExit("lsof is not installed (scripts/setup.sh installs it)")

    big, n_big = holder(args.fds, args.distinct_files)
    small, _ = holder(10)
    try:
        contenders: dict[str, Callable[[int], int]] = {
            "floor (listdir+readlink)": floor,
            "fdguard.snapshot()": snapshot,
            "fdguard.snapshot(fdinfo=True)": snapshot_fdinfo,
            "lsof -p PID -n -P": lsof,
            "psutil open_files+net_connections": with_psutil,
        }
        times: dict[str, list[float]] = {k: [] for k in contenders}
        for fn in contenders.values():  # warm caches once
            fn(big.pid)
        for _ in range(args.repeat):
            for name, fn in contenders.items():
                times[name].append(time_it(fn, big.pid))
        counts = {"count() at 10 fds": small.pid, f"count() at {n_big} fds": big.pid}
        count_times: dict[str, float] = {}
        for name, pid in counts.items():
            samples = []
            for _ in range(2000):
                t0 = time.perf_counter()
                fdguard.count(pid)
                samples.append(time.perf_counter() - t0)
            count_times[name] = statistics.median(samples)
        snap = fdguard.snapshot(big.pid)
    finally:
        stop(big)
        stop(small)

    base = statistics.median(times["floor (listdir+readlink)"])
    print(f"process with {n_big} fds: {snap.by_kind}, files over "
          f"{args.distinct_files} distinct paths")
    print(f"{'contender':38} {'median ms':>10} {'x floor':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:38} {med * 1e3:10.1f} {med / base:8.2f}")
    print()
    small_t, big_t = count_times.values()
    for name, t in count_times.items():
        print(f"{name:38} {t * 1e6:10.1f} us")
    print(f"count() cost ratio, {n_big} fds vs 10 fds: {big_t / small_t:.2f}")


if __name__ == "__main__":
    main()
