"""A bounded HTTP/1.1 keep-alive load generator on loopback that counts every failure.

    python3 guard_load.py HOST:PORT --connections 8 --duration 30 [--max-requests N]
                          [--samples out.csv]

Runs until the duration or request bound is reached, or SIGINT/SIGTERM, then
prints one JSON line: requests, ok, failures by kind (connect, reset, eof
before a full response, timeout, http status != 200), and latency percentiles.
A response with `Connection: close` is not a failure: the connection is
re-opened, as any HTTP client does. With --samples, every request is written
as `t_start,latency_s,ok` for windowed analysis. Prints `ready` first, once
the first response has arrived (SIGINT is handled from then on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections import Counter

import uvloop

REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class Stats:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.samples: list[tuple[float, float, int]] = []
        self.fail: Counter[str] = Counter()
        self.requests = 0
        self.first = asyncio.Event()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    close = False
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        if k.lower() == "content-length":
            length = int(v)
        elif k.lower() == "connection" and v.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, close


async def worker(host: str, port: int, st: Stats, stop: asyncio.Event, bound: int,
                 timeout: float, period: float) -> None:
    writer = None
    reader = None
    next_at = time.monotonic()
    while not stop.is_set() and st.requests < bound:
        if period:
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                        timeout)
            except (OSError, TimeoutError) as err:
                st.fail[f"connect:{type(err).__name__}"] += 1
                await asyncio.sleep(0.01)
                continue
        assert reader is not None
        if st.requests >= bound or stop.is_set():
            break  # another worker took the last request while this one waited
        st.requests += 1
        t0 = time.time()
        m0 = time.monotonic()
        ok = 0
        try:
            writer.write(REQ)
            status, close = await asyncio.wait_for(read_response(reader), timeout)
            if status == 200:
                ok = 1
            else:
                st.fail[f"http:{status}"] += 1
        except asyncio.IncompleteReadError:
            st.fail["eof"] += 1
            close = True
        except TimeoutError:
            st.fail["timeout"] += 1
            close = True
        except OSError as err:
            st.fail[f"io:{type(err).__name__}"] += 1
            close = True
        except (ValueError, IndexError, asyncio.LimitOverrunError):
            st.fail["bad-response"] += 1
            close = True
        lat = time.monotonic() - m0
        if ok:
            st.lat.append(lat)
            st.first.set()
        st.samples.append((t0, lat, ok))
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--max-requests", type=int, default=10_000_000)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=0.0, help="total requests/s (0: no cap)")
    ap.add_argument("--samples")
    a = ap.parse_args()
    host, _, port = a.addr.rpartition(":")
    st = Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(a.duration, stop.set)

    async def announce() -> None:
        await st.first.wait()
        print("ready", flush=True)

    ann = asyncio.create_task(announce())
    t0 = time.monotonic()
    await asyncio.gather(*(worker(host, int(port), st, stop, a.max_requests, a.timeout,
                                  a.connections / a.rate if a.rate else 0.0)
                           for _ in range(a.connections)))
    ann.cancel()
    elapsed = time.monotonic() - t0
    if a.samples:
        with open(a.samples, "w") as f:
            f.writelines(f"{t:.6f},{lat:.6f},{ok}\n" for t, lat, ok in st.samples)
    print(json.dumps({
        "requests": st.requests,
        "ok": len(st.lat),
        "failures": sum(st.fail.values()),
        "by_kind": dict(st.fail),
        "elapsed": elapsed,
        "rps": len(st.lat) / elapsed if elapsed else 0.0,
        "p50": pct(st.lat, 50),
        "p99": pct(st.lat, 99),
        "max": max(st.lat) if st.lat else None,
    }), flush=True)


uvloop.run(main())
