"""What `fdguard trace` costs a real Node.js HTTP server: requests/s untraced vs traced.

One run, same machine, same server script (tests/procs/trace_node_http.js),
bounded loopback load with wrk. Modes:

  untraced          the baseline
  attach            fdguard trace PID (default: births only, with -k stacks)
  attach --full     also closes, epoll_ctl and SCM_RIGHTS (each one a stack unwind)
  attach no stacks  births only, without -k (what stacks cost)
  launch            fdguard trace -- node ... (--seccomp-bpf, births + closes)

Two traffic shapes: a new connection per request (the worst case for fd
tracing: every request creates and closes a socket) and keep-alive.

Usage: python3 bench/trace_cost.py [--seconds 3] [--connections 4]
Prints requests/s per mode and the ratio to the untraced baseline. Each
measurement follows a warm-up of the same length under the same conditions.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Run as a script, bench/ would be first on sys.path, and bench/inspect.py would
# shadow the standard library's inspect (which dataclasses imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from fdguard.trace import StraceRun, probe_strace, start_command  # noqa: E402
from fdguard.trace.syscalls import Follow  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "procs" / "trace_node_http.js"
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")


def wrk(port: int, seconds: float, connections: int, close: bool) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True)
    m = _RPS.search(out.stdout)
    if not m:
        raise RuntimeError(f"wrk printed no Requests/sec: {out.stdout}{out.stderr}")
    return float(m.group(1))


def _port(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return int(json.loads(line)["port"])


@contextmanager
def plain_server(node: str) -> Iterator[tuple[int, int]]:
    proc = subprocess.Popen([node, str(SERVER)], stdout=subprocess.PIPE, start_new_session=True)
    try:
        yield proc.pid, _port(proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def run_untraced(node: str, load: Callable[[int], float]) -> float:
    with plain_server(node) as (_pid, port):
        load(port)  # warm-up: JIT, first-connection paths
        return load(port)


def run_attach(node: str, load: Callable[[int], float], follow: Follow, stacks: bool) -> float:
    with plain_server(node) as (pid, port):
        load(port)
        with StraceRun(pid=pid, follow=follow, stacks=stacks) as run:
            run.start()
            # Warm-up under trace too: the first stacks load node's symbol tables.
            load(port)
            return load(port)


def run_launch(node: str, load: Callable[[int], float]) -> float:
    launched = start_command([node, str(SERVER)], stdout=subprocess.PIPE)
    with launched.run as run:
        assert run.proc is not None
        port = _port(run.proc)
        load(port)
        return load(port)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seconds", type=int, default=3, help="load per measurement")
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args()
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None or shutil.which("wrk") is None:
        print("needs node and wrk (scripts/setup.sh installs them)", file=sys.stderr)
        return 1
    info = probe_strace()
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    print(
        f"node {version.stdout.strip()}, strace {info.version} (stacks: {info.stacks}), "
        f"{args.connections} connections, {args.seconds:g}s per run, loopback"
    )
    for close in (True, False):
        shape = "new connection per request" if close else "keep-alive"

        def load(port: int, close: bool = close) -> float:
            return wrk(port, args.seconds, args.connections, close)

        base = run_untraced(node, load)
        rows = [
            ("attach (births, -k)", run_attach(node, load, Follow(), True)),
            ("attach --full (-k)", run_attach(node, load, Follow.everything(), True)),
            ("attach (births, no -k)", run_attach(node, load, Follow(), False)),
            ("launch (births+closes, -k)", run_launch(node, load)),
        ]
        print(f"\n{shape}: untraced {base:,.0f} req/s")
        for name, rps in rows:
            print(f"  {name:28} {rps:10,.0f} req/s   ratio {rps / base:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
