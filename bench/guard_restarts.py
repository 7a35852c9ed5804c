"""Benchmark `fdguard guard`: N fd-triggered restarts under continuous load, zero failures?

For each server (the leaking Node.js and uvloop servers of tests/procs/), in one run:

  steady   the server under the guard, no trigger, a bounded keep-alive load
           (tests/procs/guard_load.py) for D seconds: the baseline latency;
  restarts the same server and load, with the fd-share trigger set so that
           workers are replaced every second or so, until N restarts happened.
  wrk      (with --wrk) the same restart run driven by wrk instead, as a second
           opinion on errors from a client fdguard did not write.

Reports requests, failed requests and connection errors (target: zero), and
p50/p99 latency of requests that started inside a restart window (from
`restart` to the old worker's exit) against those outside it and against
the steady run, as ratios.

Usage: python3 bench/guard_restarts.py [--restarts 20] [--servers node,uvloop] [--wrk]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/inspect.py would shadow the stdlib module `inspect` (the script's own
# directory comes first on sys.path), and dataclasses needs the real one.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from fdguard.guard.control import send_command  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROCS = ROOT / "tests" / "procs"
LOAD = PROCS / "guard_load.py"


def server_argv(name: str) -> tuple[list[str], str]:
    if name == "node":
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            sys.exit("node is not installed")
        return [node, str(PROCS / "guard_node_server.js")], "accepting"
    return [sys.executable, str(PROCS / "guard_uvloop_server.py")], "notify"


STARTED: list[subprocess.Popen[bytes]] = []  # killed at exit whatever happened


class GuardRun:
    def __init__(self, server: str, rdir: Path, *, share: float | None, leak_every: int,
                 nofile: int = 2048, workers: int = 2) -> None:
        argv, ready = server_argv(server)
        args = [sys.executable, "-m", "fdguard", "guard", "--name", f"bench-{server}",
                "--runtime-dir", str(rdir), "--listen", "127.0.0.1:0", "--workers",
                str(workers), "--ready", ready, "--nofile", str(nofile), "--interval", "0.1",
                "--grace", "10", "--env", f"LEAK_EVERY={leak_every}", "--log-json"]
        if share is not None:
            args += ["--max-fd-share", str(share)]
        self.events_path = rdir / f"{server}-{share}-{time.monotonic_ns()}.jsonl"
        self.out = open(self.events_path, "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*args, "--", *argv], stdout=self.out,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        STARTED.append(self.proc)
        deadline = time.monotonic() + 60
        while not any(ev["kind"] == "up" for ev in self.events()):
            if self.proc.poll() is not None:
                sys.exit(f"guard exited early: {self.proc.returncode}")
            if time.monotonic() > deadline:
                sys.exit("guard not up in 60s")
            time.sleep(0.05)

        st = send_command(rdir / f"bench-{server}" / "control.sock", {"cmd": "status"})
        (prog,) = st["status"]["programs"].values()
        self.addr = prog["listen"][0]

    def events(self) -> list[dict[str, Any]]:
        self.out.flush()
        return [json.loads(ln) for ln in self.events_path.read_text().splitlines() if ln]

    def restarts(self) -> int:
        return sum(1 for ev in self.events() if ev["kind"] == "restarted")

    def stop(self) -> list[dict[str, Any]]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        evs = self.events()
        self.out.close()
        return evs


def windows(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(start, end) of each restart: `restart` event to the exit of the worker it replaced."""
    out = []
    exits = {ev["pid"]: ev["t"] for ev in events if ev["kind"] == "exit"}
    for ev in events:
        if ev["kind"] == "restart" and ev.get("old_pid") in exits:
            out.append((ev["t"], exits[ev["old_pid"]]))
    return out


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def load(addr: str, samples: Path, duration: float, rate: float) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [sys.executable, str(LOAD), addr, "--connections", "8", "--duration", str(duration),
         "--rate", str(rate), "--samples", str(samples)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    STARTED.append(p)
    return p


def finish(p: subprocess.Popen[bytes]) -> dict[str, Any]:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    doc: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return doc


def read_samples(path: Path) -> list[tuple[float, float, int]]:
    rows = []
    for ln in path.read_text().splitlines():
        t, lat, ok = ln.split(",")
        rows.append((float(t), float(lat), int(ok)))
    return rows


def bench_server(server: str, n: int, steady_s: float, rate: float, use_wrk: bool,
                 tmp: Path) -> None:
    print(f"\n== {server}: {n} fd-triggered restarts, 2 workers, load 8 conns at {rate:.0f} req/s")
    # Steady state: the same server, not leaking, never restarted.
    g = GuardRun(server, tmp, share=None, leak_every=0)
    s_path = tmp / f"{server}-steady.csv"
    summary_s = finish_wait(load(g.addr, s_path, steady_s, rate))
    g.stop()
    steady = [lat for _, lat, ok in read_samples(s_path) if ok]

    # Restarts: a leak every 2 requests, a restart at 512 fds of a 4096 limit: the
    # headroom covers a worker that leaks while waiting for its turn in the roll.
    g = GuardRun(server, tmp, share=0.125, leak_every=2, nofile=4096)
    r_path = tmp / f"{server}-restarts.csv"
    lp = load(g.addr, r_path, 600, rate)
    t0 = time.monotonic()
    while g.restarts() < n and time.monotonic() - t0 < 300:
        time.sleep(0.1)
    summary_r = finish(lp)
    evs = g.stop()
    wins = windows(evs)
    rows = read_samples(r_path)
    inside = [lat for t, lat, ok in rows if ok and any(a <= t <= b for a, b in wins)]
    outside = [lat for t, lat, ok in rows if ok and not any(a <= t <= b for a, b in wins)]
    reasons = {ev["reason"].split(" ")[0] + " " + ev["reason"].split(" ")[1]
               for ev in evs if ev["kind"] == "restarted"}
    took = [ev["ready_after"] for ev in evs if ev["kind"] == "restarted"]
    print(f"restarts: {len(wins)} (reasons: {', '.join(sorted(reasons))}), "
          f"new worker ready after p50 {pct(took, 50):.2f}s")
    print(f"steady run (no leak):  {summary_s['ok']} ok, {summary_s['failures']} failed "
          f"{summary_s['by_kind'] or ''}")
    print(f"restart run (leaking): {summary_r['ok']} ok, {summary_r['failures']} failed "
          f"{summary_r['by_kind'] or ''} in {summary_r['elapsed']:.1f}s")
    sp99 = pct(steady, 99)
    print(f"{'latency':<30}{'p50 ms':>9}{'p99 ms':>9}{'p99 / steady':>14}")
    for label, xs in (("steady run", steady), ("restart run, outside", outside),
                      ("restart run, during restart", inside)):
        p50, p99 = pct(xs, 50), pct(xs, 99)
        print(f"{label:<30}{p50 * 1e3:>9.2f}{p99 * 1e3:>9.2f}{p99 / sp99:>13.2f}x"
              f"   (n={len(xs)})")
    if use_wrk:
        bench_wrk(server, n, tmp)


def finish_wait(p: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, _ = p.communicate(timeout=600)
    doc: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return doc


def bench_wrk(server: str, n: int, tmp: Path) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed")
        return
    # wrk has no rate cap: at full speed the leak must be slower and the limit
    # higher, or the leak outruns a restart and the server answers EMFILE.
    g = GuardRun(server, tmp, share=0.05, leak_every=4, nofile=16384)
    p = subprocess.Popen([wrk, "-t2", "-c8", "-d60s", "--latency", f"http://{g.addr}/"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while g.restarts() < n and time.monotonic() - t0 < 55 and p.poll() is None:
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out = p.communicate(timeout=30)[0].decode()
    evs = g.stop()
    nrest = sum(1 for ev in evs if ev["kind"] == "restarted")
    reqs = re.search(r"(\d+) requests in", out)
    errs = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    print(f"wrk: {reqs.group(1) if reqs else '?'} requests across {nrest} restarts; "
          f"socket errors: {errs.group(1) if errs else 'none'}; "
          f"non-2xx: {non2xx.group(1) if non2xx else 0}; p99 {p99.group(1) if p99 else '?'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--servers", default="node,uvloop")
    ap.add_argument("--steady", type=float, default=8.0, help="seconds of steady-state load")
    ap.add_argument("--rate", type=float, default=1500.0, help="total requests/s")
    ap.add_argument("--wrk", action="store_true", help="also drive the restarts with wrk")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.chmod(tmp, 0o700)
        try:
            for server in a.servers.split(","):
                bench_server(server, a.restarts, a.steady, a.rate, a.wrk, tmp)
        finally:
            for p in STARTED:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


if __name__ == "__main__":
    main()
