"""Benchmark the loopback fault proxy at zero faults against a direct connection.

A real Node.js echo server (libuv) on loopback; in the same run, interleaved,
medians over repeats:
  conn/s     sequential connect + 1-byte round trip + close, direct vs through
             the proxy (the proxy opens a second connection per client)
  latency    round-trip time of 64-byte messages on one kept-open connection,
             direct vs through the proxy: the ratio and the added microseconds
  bulk       MB/s echoing 8 MiB through one connection
Prints a table with proxy/direct ratios. Every loop is bounded; traffic stays on
127.0.0.1. Usage: python3 bench/fault_proxy.py [--conns 300] [--pings 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from fdguard.faults import FaultProxy

ECHO = (
    "const net=require('net');"
    "const s=net.createServer(c=>{c.on('error',()=>{});c.pipe(c);});"
    "s.listen(0,'127.0.0.1',()=>process.stdout.write(s.address().port+'\\n'));"
)


def conn_rate(address: tuple[str, int], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        with socket.create_connection(address, timeout=5) as s:
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise RuntimeError("echo failed")
    return n / (time.perf_counter() - t0)


def rtt_us(address: tuple[str, int], n: int) -> float:
    msg = b"p" * 64
    times = []
    with socket.create_connection(address, timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += s.recv(4096)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def bulk_mbps(address: tuple[str, int], size: int = 8 << 20) -> float:
    block = b"b" * 65536
    with socket.create_connection(address, timeout=10) as s:
        def send() -> None:
            for _ in range(size // len(block)):
                s.sendall(block)

        t0 = time.perf_counter()
        sender = threading.Thread(target=send)
        sender.start()
        got = 0
        while got < size:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        sender.join()
        return got / (time.perf_counter() - t0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=300)
    ap.add_argument("--pings", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        sys.exit("node is not installed (apt-get install nodejs)")
    server = subprocess.Popen([node, "-e", ECHO], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        direct = ("127.0.0.1", int(server.stdout.readline()))
        with FaultProxy(direct) as proxy:
            rows: dict[str, tuple[Callable[[tuple[str, int]], float], list[float], list[float]]]
            rows = {
                "conn/s": (lambda a: conn_rate(a, args.conns), [], []),
                "rtt us (median)": (lambda a: rtt_us(a, args.pings), [], []),
                "bulk MB/s": (bulk_mbps, [], []),
            }
            for _ in range(args.repeat):
                for fn, d, p in rows.values():
                    d.append(fn(direct))
                    p.append(fn(proxy.address))
        print(f"{'metric':<18}{'direct':>12}{'proxy':>12}{'proxy/direct':>14}")
        for name, (_, d, p) in rows.items():
            md, mp = statistics.median(d), statistics.median(p)
            print(f"{name:<18}{md:>12.1f}{mp:>12.1f}{mp / md:>14.2f}")
        d_rtt = statistics.median(rows["rtt us (median)"][1])
        p_rtt = statistics.median(rows["rtt us (median)"][2])
        print(f"added latency per round trip: {p_rtt - d_rtt:.0f} us")
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


if __name__ == "__main__":
    main()
