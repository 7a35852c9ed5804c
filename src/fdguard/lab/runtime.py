"""Lab scenarios that need a libuv runtime: Node.js and uvloop scripts, counted from outside.

Some fd paths only exist above libuv (a Node worker thread brings its own
loop; uvloop creates a loop per asyncio loop; Node's net/child_process wrap
the error paths). These scenarios are small scripts in the runtime's own
language, written to a scratch directory and run as a child. The child
prints one JSON line when ready and one after each iteration, then waits for
a line on stdin; in that pause the parent counts the child's fds with
`fdguard.count` (and takes `fdguard.snapshot` after the warm-up and the last
iteration), so nothing in the child touches /proc. The verdict rules are the
ctypes scenarios' (`fdguard.lab.runner.judge`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from fdguard.errors import NoSuchProcess, ToolMissing
from fdguard.inspect import count, snapshot


@dataclass(frozen=True)
class RuntimeScenario:
    """A scenario run by a Node.js or uvloop script."""

    name: str
    runtime: str  # "node" | "uvloop"
    api: str
    path: str
    summary: str
    expect: str
    body: str


_NODE_DRIVER = r"""
const N = Number(process.argv[2]);
const readline = require('readline');
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
(async () => {
  await setup();
  emit({ event: 'ready', version: process.versions.uv });
  await lines.next();
  for (let i = 1; i <= N; i++) {
    const outcome = await iterate(i);
    emit({ event: 'iter', i, outcome: String(outcome) });
    await lines.next();
  }
  emit({ event: 'done' });
  process.exit(0);
})().catch((e) => {
  emit({ event: 'error', detail: String((e && e.stack) || e) });
  process.exit(1);
});
"""

_UVLOOP_DRIVER = r"""
import asyncio, ctypes, json, os, sys
import uvloop
N = int(sys.argv[1])
def emit(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()
def version():
    lib = ctypes.CDLL(uvloop.loop.__file__)
    lib.uv_version_string.restype = ctypes.c_char_p
    return lib.uv_version_string().decode()
def main():
    state = setup()
    emit({"event": "ready", "version": version()})
    sys.stdin.readline()
    for i in range(1, N + 1):
        emit({"event": "iter", "i": i, "outcome": str(iterate(state, i))})
        sys.stdin.readline()
    emit({"event": "done"})
try:
    main()
except Exception as e:
    emit({"event": "error", "detail": f"{type(e).__name__}: {e}"})
    sys.exit(1)
"""

RUNTIME_CATALOGUE: dict[str, RuntimeScenario] = {}


def _add(*args: str) -> None:
    RUNTIME_CATALOGUE[args[0]] = RuntimeScenario(*args)


_add("node-connect-refused", "node", "tcp", "error",
     "net.connect to a loopback port nobody listens on; destroy on 'error'",
     "ECONNREFUSED, and the socket's fd is closed", r"""
const net = require('net');
let port;
async function setup() {
  const srv = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => srv.on('listening', r));
  port = srv.address().port;
  await new Promise((r) => srv.close(r));
}
function iterate() {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', (e) => { s.destroy(); s.on('close', () => resolve(e.code)); });
  });
}
""")

_add("node-worker-churn", "node", "loop", "normal",
     "start a worker thread (its own libuv loop), wait until online, terminate it",
     "each worker's loop fds (epoll, eventfd, signal pipe) are closed when it exits", r"""
const { Worker } = require('worker_threads');
async function setup() {}
async function iterate() {
  const w = new Worker('require("worker_threads").parentPort.postMessage(1)', { eval: true });
  await new Promise((r) => w.once('message', r));
  const code = await w.terminate();
  return 'exit=' + code;
}
""")

_add("node-spawn-enoent", "node", "spawn", "error",
     "child_process.spawn of a program that does not exist, with stdio pipes",
     "an 'error' event with ENOENT; the stdio pipes are closed", r"""
const { spawn } = require('child_process');
async function setup() {}
function iterate() {
  return new Promise((resolve) => {
    const c = spawn('/nonexistent/fdguard-lab', [], { stdio: 'pipe' });
    let code;
    c.on('error', (e) => { code = e.code; });
    c.on('close', () => resolve(code));
  });
}
""")

_add("node-fs-watch", "node", "fs_event", "normal",
     "fs.watch on a directory, then close the watcher",
     "the inotify watch is removed; the inotify fd is created once", r"""
const fs = require('fs');
async function setup() {}
async function iterate() {
  const w = fs.watch(process.cwd());
  w.close();
  await new Promise((r) => setImmediate(r));
  return 'closed';
}
""")

_add("uvloop-loop-churn", "uvloop", "loop", "normal",
     "uvloop.new_event_loop() then loop.close() (each creates and destroys a libuv loop)",
     "no fd growth after the warm-up", r"""
def setup():
    return None
def iterate(state, i):
    loop = uvloop.new_event_loop()
    loop.close()
    return "closed"
""")

_add("uvloop-connect-refused", "uvloop", "tcp", "error",
     "asyncio.open_connection on uvloop to a loopback port nobody listens on",
     "ConnectionRefusedError, and the socket's fd is closed", r"""
import socket
def setup():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    loop = uvloop.new_event_loop()
    return holder, loop
def iterate(state, i):
    holder, loop = state
    try:
        loop.run_until_complete(asyncio.open_connection("127.0.0.1", holder.getsockname()[1]))
        return "connected"
    except OSError as e:
        return type(e).__name__
""")

_add("uvloop-subprocess-enoent", "uvloop", "spawn", "error",
     "asyncio.create_subprocess_exec on uvloop of a program that does not exist",
     "FileNotFoundError; the pipes for the child's stdio are closed", r"""
def setup():
    return uvloop.new_event_loop()
def iterate(loop, i):
    async def go():
        try:
            await asyncio.create_subprocess_exec("/nonexistent/fdguard-lab",
                                                 stdout=asyncio.subprocess.PIPE)
            return "spawned"
        except OSError as e:
            return type(e).__name__
    return loop.run_until_complete(go())
""")


def script(sc: RuntimeScenario) -> tuple[str, str]:
    """(file name, source) of the child script for `sc`."""
    if sc.runtime == "node":
        return "scenario.js", sc.body + _NODE_DRIVER
    return "scenario.py", _UVLOOP_DRIVER.replace("try:\n    main()",
                                                 sc.body + "\ntry:\n    main()")


def _command(sc: RuntimeScenario, path: str, iterations: int) -> list[str]:
    if sc.runtime == "node":
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise ToolMissing("node", "scripts/setup.sh installs nodejs")
        return [node, path, str(iterations)]
    return [sys.executable, path, str(iterations)]


class _Lines:
    """Line reader over a child's stdout with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        self.proc = proc
        self.deadline = deadline
        self.buf = b""

    def next(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            obj = json.loads(line)
        except ValueError:
            return {"event": "noise", "line": line.decode(errors="replace")}
        return obj if isinstance(obj, dict) else None


def _fds(pid: int) -> list[list[Any]]:
    snap = snapshot(pid, probe_sockets=False)
    return [[f.fd, str(f.kind), f.target] for f in snap.fds]


def run_runtime(name: str, iterations: int, timeout: float) -> tuple[list[dict[str, Any]],
                                                                      int | None, bool, str]:
    """Run runtime scenario `name`: (events with counts filled in, status, timed out, stderr)."""
    sc = RUNTIME_CATALOGUE[name]
    events: list[dict[str, Any]] = []
    timed_out = False
    with tempfile.TemporaryDirectory(prefix="fdguard-lab-") as workdir:
        fname, text = script(sc)
        path = os.path.join(workdir, fname)
        with open(path, "w") as f:
            f.write(text)
        proc = subprocess.Popen(_command(sc, path, iterations), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir,
                                start_new_session=True)
        assert proc.stdin is not None
        lines = _Lines(proc, time.monotonic() + timeout)
        try:
            while True:
                ev = lines.next()
                if ev is None:
                    break
                kind = ev.get("event")
                if kind in ("ready", "iter"):
                    ev["count"] = count(proc.pid)
                    events.append(ev)
                    if kind == "iter" and ev.get("i") == 1:
                        events.append({"event": "fds", "when": "warm", "fds": _fds(proc.pid)})
                    if kind == "iter" and ev.get("i") == iterations:
                        events.append({"event": "fds", "when": "end", "fds": _fds(proc.pid)})
                    proc.stdin.write(b"go\n")
                    proc.stdin.flush()
                elif kind != "noise":
                    events.append(ev)
            # EOF: the child is exiting; let it finish so its status is its own.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, lines.deadline - time.monotonic()))
        except TimeoutError:
            timed_out = True
        except (BrokenPipeError, NoSuchProcess):
            pass
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
    return events, proc.returncode, timed_out, err.decode(errors="replace")
