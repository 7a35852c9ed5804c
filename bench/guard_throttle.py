"""Benchmark `fdguard guard throttle`: cap accuracy and the latency it adds.

In one run, against a real uvloop HTTP server on 127.0.0.1 (not leaking):

  cap accuracy   for each rate cap R: clients open new connections as fast as
                 they can for D seconds through the proxy (queue on); the
                 admitted rate over R (target 1.00), and with no queue the
                 share refused. Concurrency: C+10 clients hold connections
                 against a cap of C; peak admitted over C (target 1.00).
  added latency  the same keep-alive load (tests/procs/guard_load.py) direct
                 and through the proxy with caps far above the load: p50 and
                 p99 ratios proxy/direct; and new-connection latency (connect +
                 one request) direct vs proxy.

Usage: python3 bench/guard_throttle.py [--rates 50,200,500] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROCS = ROOT / "tests" / "procs"
REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


Proc = subprocess.Popen[bytes]


STARTED: list[Proc] = []  # everything started, killed at exit whatever happened


def start(argv: list[str], env: dict[str, str] | None = None) -> tuple[Proc, str]:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    STARTED.append(p)
    assert p.stdout is not None
    return p, p.stdout.readline().decode().strip()


def stop(p: subprocess.Popen[bytes]) -> str:
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    return out.decode()


def throttle(upstream: str, *args: str) -> tuple[subprocess.Popen[bytes], tuple[str, int]]:
    p, line = start([sys.executable, "-m", "fdguard", "guard", "throttle", "--listen",
                     "127.0.0.1:0", "--upstream", upstream, *args])
    host, port = json.loads(line)["listen"].rsplit(":", 1)
    return p, (host, int(port))


def one(addr: tuple[str, int]) -> float | None:
    """Connect, one request, close: seconds taken, or None when refused."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(REQ)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                return None
    except (ConnectionResetError, BrokenPipeError):
        return None
    return time.perf_counter() - t0


def hammer(addr: tuple[str, int], seconds: float, threads: int) -> tuple[int, int, float]:
    ok = refused = 0
    lock = threading.Lock()
    t_end = time.monotonic() + seconds

    def run() -> None:
        nonlocal ok, refused
        while time.monotonic() < t_end:
            r = one(addr)
            with lock:
                if r is None:
                    refused += 1
                else:
                    ok += 1

    t0 = time.monotonic()
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return ok, refused, time.monotonic() - t0


def load(addr: str, seconds: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(PROCS / "guard_load.py"), addr, "--connections",
                          "8", "--duration", str(seconds), "--rate", "2000"],
                         capture_output=True, check=True, timeout=seconds + 60).stdout
    doc: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="50,200,500")
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    up, port = start([sys.executable, str(PROCS / "guard_uvloop_server.py")],
                     env={**os.environ, "LEAK_EVERY": "0"})
    upstream = f"127.0.0.1:{port}"
    try:
        print("== rate cap accuracy (new connections/s from 8 client threads)")
        host, uport = upstream.rsplit(":", 1)
        ok_d, _, el_d = hammer((host, int(uport)), a.seconds, 8)
        print(f"client capacity, direct to the server: {ok_d / el_d:.0f} new connections/s")
        print(f"{'cap/s':>7}{'queued: admitted/s':>20}{'ratio':>8}"
              f"{'no queue: admitted/s':>22}{'ratio':>8}{'refused':>9}")
        for rate in (float(r) for r in a.rates.split(",")):
            p, addr = throttle(upstream, "--rate", f"{rate:g}", "--queue", "64",
                               "--queue-timeout", "30")
            _, _, el_q = hammer(addr, a.seconds, 8)
            adm_q = json.loads(stop(p).strip().splitlines()[-1])["admitted"]
            p, addr = throttle(upstream, "--rate", f"{rate:g}")
            _, _, el_n = hammer(addr, a.seconds, 8)
            st = json.loads(stop(p).strip().splitlines()[-1])
            # The proxy's own count of admissions over the hammering time.
            rq, rn = adm_q / el_q, st["admitted"] / el_n
            print(f"{rate:>7.0f}{rq:>20.1f}{rq / rate:>8.3f}{rn:>22.1f}{rn / rate:>8.3f}"
                  f"{st['refused'] / max(1, st['accepted']):>8.0%}")

        print("\n== concurrency cap")
        for cap in (5, 20):
            p, addr = throttle(upstream, "--max-conns", str(cap))
            held = []
            refused = 0
            for _ in range(cap + 10):
                try:
                    s = socket.create_connection(addr, timeout=10)
                except ConnectionResetError:
                    refused += 1
                    continue
                try:
                    s.sendall(REQ)
                    if s.recv(4096).startswith(b"HTTP/1.1 200"):
                        held.append(s)
                        continue
                except (ConnectionResetError, BrokenPipeError):
                    pass
                refused += 1
                s.close()
            for s in held:
                s.close()
            stats = json.loads(stop(p).strip().splitlines()[-1])
            print(f"cap {cap}: {len(held)} admitted ({len(held) / cap:.2f}x cap), {refused} "
                  f"refused, peak active {stats['peak_active']}")

        print("\n== added latency (caps far above the load)")
        p, addr = throttle(upstream, "--rate", "100000", "--burst", "1000", "--max-conns", "1000")
        direct = load(upstream, a.seconds)
        proxied = load(f"{addr[0]}:{addr[1]}", a.seconds)
        host, uport = upstream.rsplit(":", 1)
        d_new = [x for x in (one((host, int(uport))) for _ in range(300)) if x is not None]
        p_new = [x for x in (one(addr) for _ in range(300)) if x is not None]
        stop(p)
        print(f"{'':<34}{'direct ms':>10}{'proxy ms':>10}{'ratio':>8}")
        for label, dv, pv in (
            ("keep-alive request p50", direct["p50"], proxied["p50"]),
            ("keep-alive request p99", direct["p99"], proxied["p99"]),
            ("new connection + request p50", statistics.median(d_new),
             statistics.median(p_new)),
            ("new connection + request p99", sorted(d_new)[int(0.99 * len(d_new))],
             sorted(p_new)[int(0.99 * len(p_new))]),
        ):
            print(f"{label:<34}{dv * 1e3:>10.3f}{pv * 1e3:>10.3f}{pv / dv:>7.2f}x")
        print(f"keep-alive throughput: direct {direct['rps']:.0f}/s, proxy {proxied['rps']:.0f}/s "
              f"(load capped at 2000/s); failures direct {direct['failures']}, "
              f"proxy {proxied['failures']}")
    finally:
        stop(up)
        for p in STARTED:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


if __name__ == "__main__":
    main()
