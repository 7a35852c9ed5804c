"""What watching costs: 1,000 processes at 1 Hz, and the watcher's own fds over 100,000 samples.

Starts N cheap sleepers (`sleep`), watches them all with the real `Watcher`
(count + identity check + detector + alert rules + SQLite store, one transaction
per round), and prints, measured in this run:

- the cost of one round of 1,000 counts for the raw floor (one stat of
  /proc/PID/fd each), `fdguard.count`, psutil's `num_fds()` (lists the
  directory), and a whole watcher round, each as a ratio to the floor;
- the CPU share of one core the watcher uses at 1 Hz: per-round CPU time from
  back-to-back rounds (a manual clock), and measured over real seconds at 1 Hz;
- what saving the detector states for a restarted watch costs: one detector holding
  4.5 days of 1 Hz samples saved and restored, and the hourly save of N of them;
- the watcher's own fd count after every round of 100,000 samples (flat), and
  around 100,000 bare `fdguard.count()` calls.

Usage: python3 bench/watch_cost.py [--procs 1000] [--seconds 15] [--samples 100000]
The sleepers are killed and reaped on exit, whatever happens.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running `python3 bench/watch_cost.py` puts bench/ first on sys.path, where
# bench/inspect.py would shadow the stdlib `inspect` that dataclasses imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
    del sys.path[0]

import argparse
import os
import resource
import subprocess
import tempfile
import time

import psutil

from fdguard.clock import ManualClock
from fdguard.detect import LeakDetector
from fdguard.inspect import count
from fdguard.store import Store
from fdguard.targets import SpecKind, TargetSet, TargetSpec
from fdguard.watch import WatchConfig, Watcher


def own_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # minus listdir's own directory fd


def start_sleepers(n: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for _ in range(n):
        procs.append(
            subprocess.Popen(
                ["sleep", "3600"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def reap(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def best_of(fn: object, repeat: int = 5) -> float:
    """Best wall time of `repeat` calls (seconds)."""
    assert callable(fn)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--samples", type=int, default=100_000)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"python {sys.version.split()[0]}, kernel {os.uname().release}, nofile {soft}/{hard}")
    procs = start_sleepers(args.procs)
    try:
        pids = [p.pid for p in procs]
        specs = [TargetSpec(SpecKind.PID, str(pid)) for pid in pids]
        print(f"{len(pids)} sleepers started")

        # -- the cost of one round of counts: floor, fdguard.count, psutil ---------------
        def floor() -> None:
            for pid in pids:
                os.stat(f"/proc/{pid}/fd")

        def fdg() -> None:
            for pid in pids:
                count(pid)

        ps = [psutil.Process(pid) for pid in pids]

        def psu() -> None:
            for p in ps:
                p.num_fds()

        t_floor = best_of(floor)
        t_count = best_of(fdg)
        t_psutil = best_of(psu)

        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "bench.db")
            clock = ManualClock(start=0.0, wall_offset=time.time())
            w = Watcher(
                TargetSet(specs),
                config=WatchConfig(interval=1.0),
                clock=clock,
                store=store,
            )
            w.run(max_rounds=1)  # start: resolve targets, first snapshots
            fds_before = own_fds()
            rounds = max(1, args.samples // len(pids))
            fd_series = []
            c0, t0 = cpu(), time.perf_counter()
            for _ in range(rounds):
                w.run(max_rounds=1)
                fd_series.append(own_fds())
            c1, t1 = cpu(), time.perf_counter()
            per_round_cpu = (c1 - c0) / rounds
            per_round_wall = (t1 - t0) / rounds
            samples = rounds * len(pids)
            store.close()

        print()
        print(f"one round of {len(pids)} counts (best of 5):")
        print(f"  raw floor, stat /proc/PID/fd   {t_floor * 1e3:8.2f} ms   1.00x")
        for label, t in (("fdguard.count", t_count), ("psutil num_fds", t_psutil)):
            print(f"  {label:<30} {t * 1e3:8.2f} ms   {t / t_floor:.2f}x")
        print(
            f"  watcher round (count, verify,  {per_round_wall * 1e3:8.2f} ms   "
            f"{per_round_wall / t_floor:.2f}x\n"
            "   detector, alerts, store)"
        )
        print()
        print(f"watcher CPU per round of {len(pids)}: {per_round_cpu * 1e3:.1f} ms "
              f"-> {per_round_cpu * 100:.2f}% of one core at 1 Hz (back-to-back rounds)")

        # -- real time, 1 Hz ------------------------------------------------------------
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "bench.db")
            w = Watcher(TargetSet(specs), config=WatchConfig(interval=1.0), store=store)
            w.run(max_rounds=2)  # start-up snapshots are not the steady state
            c0, t0 = cpu(), time.monotonic()
            w.run(duration=args.seconds)
            c1, t1 = cpu(), time.monotonic()
            store.close()
        share = (c1 - c0) / (t1 - t0)
        print(f"watcher at a real 1 Hz for {t1 - t0:.0f} s: {share * 100:.2f}% of one core "
              f"(target < 5%)")
        state_cost(len(pids))

        # -- own fds --------------------------------------------------------------------
        print()
        print(f"watcher's own fds over {samples} samples ({rounds} rounds): before {fds_before}, "
              f"min {min(fd_series)}, max {max(fd_series)}, after {fd_series[-1]}"
              f" -> {'flat' if min(fd_series) == max(fd_series) == fds_before else 'NOT FLAT'}")
        before = own_fds()
        n = 0
        while n < args.samples:
            for pid in pids:
                count(pid)
                n += 1
                if n >= args.samples:
                    break
        after = own_fds()
        print(f"bare fdguard.count x {n}: own fds {before} -> {after}"
              f" -> {'flat' if before == after else 'NOT FLAT'}")
        ok = min(fd_series) == max(fd_series) == fds_before and before == after and share < 0.05
        return 0 if ok else 1
    finally:
        reap(procs)


def state_cost(n_targets: int) -> None:
    """Saving and restoring one detector that holds 4.5 days of 1 Hz samples (all it
    keeps), and what the hourly save of `n_targets` such detectors costs."""
    import json
    import random
    import zlib

    rng = random.Random(1)
    det = LeakDetector(limit=100_000)
    for i in range(int(4.5 * 86400)):
        det.update(float(i), 1000 + rng.gauss(0, 20))
    t0 = time.perf_counter()
    for _ in range(5):
        blob = zlib.compress(json.dumps(det.state()).encode())
    save = (time.perf_counter() - t0) / 5
    t0 = time.perf_counter()
    for _ in range(5):
        LeakDetector.restore(json.loads(zlib.decompress(blob)))
    restore = (time.perf_counter() - t0) / 5
    hourly = save * n_targets / 3600
    print(f"detector state after 4.5 days at 1 Hz: {len(blob) / 1024:.1f} KiB, save "
          f"{save * 1e3:.1f} ms, restore {restore * 1e3:.1f} ms; saving {n_targets} hourly: "
          f"{hourly * 100:.3f}% of one core, spread over the rounds (the per-kind detectors, "
          "fed once a minute, come on top)")


if __name__ == "__main__":
    sys.exit(main())
