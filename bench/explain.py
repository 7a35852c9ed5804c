"""Benchmark `fdguard explain` on a real Node.js process holding 10,000 loopback sockets.

Starts node (tests/procs/explain_node_server.js sockets N) with --report-on-signal
and RLIMIT_NOFILE raised, N/2 connections to itself (N sockets, all handles),
then times in one run, interleaved, medians over repeats:
  snapshot   fdguard.snapshot(pid): the classified fds alone (the baseline)
  heuristic  explain(pid, view="none"): + runtime detection, loops, flags, verdicts
  report     explain(pid, view="report"): + Node's diagnostic report (SIGUSR2, read,
             remove), the handle view with every socket's fd
Prints medians and ratios to the snapshot baseline, and the verdict counts as a
check that the work was done. Usage: python3 bench/explain.py [--sockets 10000] [--repeat 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/inspect.py shadows the standard library's inspect (which dataclasses
# imports) when this directory is sys.path[0]: take it off the path first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import fdguard  # noqa: E402
from fdguard.attribute import explain  # noqa: E402

HERE = Path(__file__).parent
SERVER = HERE.parent / "tests" / "procs" / "explain_node_server.js"


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times = []
    result: object = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    node = shutil.which("node")
    if node is None:
        sys.exit("node is not installed")
    need = args.sockets + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f"hard RLIMIT_NOFILE {hard} < {need}: raise it (ulimit -Hn) first")
    # Raise our soft limit; node inherits it.
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    with tempfile.TemporaryDirectory(prefix="fdguard-bench-") as cwd:
        proc = subprocess.Popen(
            [node, "--report-on-signal", str(SERVER), "sockets", str(args.sockets)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line or "error" in json.loads(line):
                sys.exit(f"the node server did not come up: {line!r}")
            pid = proc.pid
            count = fdguard.count(pid)
            rows: list[tuple[str, float]] = []
            checks: dict[str, object] = {}
            for name, fn in (
                ("snapshot", lambda: fdguard.snapshot(pid)),
                ("heuristic", lambda: explain(pid, view="none")),
                ("report", lambda: explain(pid, view="report", timeout=60)),
            ):
                t, res = _time(fn, args.repeat)
                rows.append((name, t))
                if hasattr(res, "summary"):
                    checks[name] = res.summary.by_verdict  # type: ignore[attr-defined]
            left = list(Path(cwd).glob("report.*.json"))
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if proc.stdin:
                proc.stdin.close()
            if proc.stdout:
                proc.stdout.close()
    base = rows[0][1]
    print(f"node {args.sockets} sockets ({count} fds), median of {args.repeat}")
    print(f"{'what':<10} {'median s':>10} {'x snapshot':>11}")
    for name, t in rows:
        print(f"{name:<10} {t:>10.3f} {t / base:>11.2f}")
    for name, by in checks.items():
        print(f"verdicts ({name}): {by}")
    print(f"report files left behind: {len(left)}")


if __name__ == "__main__":
    main()
