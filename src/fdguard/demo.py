"""The whole story in one call: a real leaking Node.js service watched, explained, traced, reported.

`run_demo` creates a temporary directory, writes a small HTTP service with a
real fd leak into it (an error path that returns without closing the file it
opened), starts it under Node.js with a low soft limit, and drives loopback
traffic at it: first only healthy requests, then a client that keeps hitting
the error path. Meanwhile `fdguard.watch` samples it into a store in the
temporary directory until the leak detector fires; then `explain` says whose
the fds are, `trace` takes birth certificates of the fds leaking in a short
window, the service is pushed on to EMFILE so its error log shows what users
would see, and the report is written. Each step is announced through
`on_step` (the library never prints).

Cleanup is unconditional (a `finally`): the load stops, the watcher stops,
the service's process group gets SIGTERM then SIGKILL and is reaped, and the
temporary directory is removed. Only the report directory stays.

Time is bounded: every wait has a deadline, and the whole run is designed
to finish in well under two minutes (about 20 s on a 2-core machine).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdguard.alerts import AlertEngine, EtaRule, ThresholdRule, TrendRule
from fdguard.attribute import explain
from fdguard.errors import FdguardError, ToolMissing, UsageError
from fdguard.guard import (
    GuardConfig,
    GuardEvent,
    ListenSpec,
    ProgramSpec,
    Readiness,
    Supervisor,
    Triggers,
    bind,
)
from fdguard.guard.sockets import close_all
from fdguard.report import ReportInputs, Written, build_report, write_report
from fdguard.store import Store
from fdguard.targets import SpecKind, TargetSet, TargetSpec
from fdguard.trace import Group, trace_pid
from fdguard.watch import WatchConfig, Watcher, detector_config_for

SERVICE_JS = r"""// A small template-rendering HTTP service with a real fd leak.
// GET /render?format=html opens the template, reads it, closes it, answers.
// GET /render?format=<anything else> opens the template, then answers 400 and
// returns WITHOUT closing it: one fd leaked per bad request, until EMFILE.
"use strict";
const http = require("http");
const fs = require("fs");
const path = require("path");

const template = path.join(__dirname, "template.html");
fs.writeFileSync(template, "<p>hello, {{name}}</p>\n");

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (url.pathname !== "/render") {
    res.writeHead(404);
    res.end();
    return;
  }
  fs.open(template, "r", (err, fd) => {
    if (err) {
      console.error(`render failed: ${err.code}: ${err.message}`);
      res.writeHead(503);
      res.end(`${err.code}\n`);
      return;
    }
    const format = url.searchParams.get("format") || "html";
    if (format !== "html") {
      // The bug: this early return forgets fs.close(fd).
      res.writeHead(400);
      res.end("unsupported format\n");
      return;
    }
    const buf = Buffer.alloc(4096);
    fs.read(fd, buf, 0, buf.length, 0, (err2, n) => {
      fs.close(fd, () => {});
      if (err2) {
        console.error(`read failed: ${err2.code}`);
        res.writeHead(500);
        res.end();
        return;
      }
      const name = url.searchParams.get("name") || "world";
      res.writeHead(200, { "content-type": "text/html" });
      res.end(buf.toString("utf8", 0, n).replace("{{name}}", name));
    });
  });
});
server.keepAliveTimeout = 60000;

// Under `fdguard guard` the listening socket is inherited the systemd way (fd 3);
// alone, the service listens on a free loopback port and prints it.
const conns = new Set();
let draining = false;
server.on("connection", (sock) => {
  conns.add(sock);
  sock.on("close", () => {
    conns.delete(sock);
    if (draining && conns.size === 0) process.exit(0);
  });
});
server.on("request", (req, res) => {
  if (draining) res.setHeader("Connection", "close");
});
if (process.env.LISTEN_FDS && parseInt(process.env.LISTEN_PID, 10) === process.pid) {
  server.listen({ fd: 3 });
} else {
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}
// SIGTERM: stop accepting, finish what is in flight, tell clients to reconnect.
process.on("SIGTERM", () => {
  draining = true;
  require("net").Server.prototype.close.call(server);
  if (conns.size === 0) process.exit(0);
});
"""

SOFT_LIMIT = 384
RATE = 40.0  # requests per second from the demo's client
BAD_SHARE = 2  # in the leaking phase, every 2nd request hits the error path
HEALTHY_SECONDS = 3.0
GUARD_SHARE = 0.3  # the guard restarts a worker whose fds reach this share of the limit
GUARD_RESTARTS = 2
GUARD_SECONDS = 45.0
# The detector scaled down to a demo: a 4 s "longest healthy cycle" (the default
# is a day), sampled every 50 ms, as in the watch tests.
WATCH = WatchConfig(
    interval=0.05,
    snapshot_every=1.0,
    suspicious_gap=0.5,
    rescan_every=1.0,
    detector=detector_config_for(4.0, bucket=0.1),
)


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo produced and saw."""

    written: Written
    pid: int
    detected_after_s: float | None
    eta_seconds: float | None
    emfile_seen: bool
    elapsed_s: float
    libuv_version: str | None
    mitigation: tuple[str, ...] = ()


class _Load:
    """A loopback HTTP client on one keep-alive connection, in a thread, paced at RATE."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.leaking = threading.Event()
        self.only_bad = threading.Event()
        self.stop = threading.Event()
        self.sent = 0
        self.bad = 0
        self.failed = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="fdguard-demo-load", daemon=True)

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        if self.started:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        start = time.monotonic()
        try:
            # Bounded: at most five minutes of requests whatever happens.
            for i in range(int(300 * RATE)):
                if self.stop.is_set():
                    return
                delay = start + i / RATE - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    return
                bad = self.only_bad.is_set() or (self.leaking.is_set() and i % BAD_SHARE == 0)
                try:
                    conn.request("GET", "/render?format=pdf" if bad else "/render?name=demo")
                    resp = conn.getresponse()
                    resp.read()
                except (OSError, http.client.HTTPException) as err:
                    # A request lost (what a graceful restart must never cause):
                    # count it, reconnect, go on.
                    self.failed += 1
                    self.errors.append(str(err))
                    conn.close()
                    continue
                self.sent += 1
                self.bad += bad
                if resp.status >= 500:
                    self.failed += 1
        finally:
            conn.close()


def _syscall(g: Group) -> str:
    return g.head.birth.syscall if g.head.birth is not None else "an unseen syscall"


def _node() -> str:
    path = shutil.which("node") or shutil.which("nodejs")
    if path is None:
        raise ToolMissing("node", "./scripts/setup.sh installs it (Debian package nodejs)")
    return path


def _ready_port(proc: subprocess.Popen[bytes], timeout: float) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UsageError(f"the demo service printed no port within {timeout:.0f}s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise UsageError("the demo service exited before it was ready")
            buf += chunk
    return int(json.loads(buf.split(b"\n", 1)[0])["port"])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    on_step: Callable[[str], None] = lambda _msg: None,
    detect_timeout: float = 45.0,
    trace_window: float = 3.0,
    to_emfile: bool = True,
    guard: bool = False,
    github: bool = True,
) -> DemoResult:
    """Run the demo (see the module comment) and write the report into `out_dir`.

    With `guard`, the service is then run again under `fdguard guard` (which must
    happen in the main thread: the guard handles signals), restarted gracefully
    each time its fds reach GUARD_SHARE of the limit, under the same leaking
    traffic; the report's chart shows the restarts.

    Raises:
        ToolMissing: node (or strace) is not installed.
        UsageError: the service did not start, or the leak was not detected
            within `detect_timeout` seconds; `guard` outside the main thread.
    """
    if guard and threading.current_thread() is not threading.main_thread():
        raise UsageError("the demo's guard step must run in the main thread (signals)")
    t_start = time.monotonic()
    node = _node()
    tmp = Path(tempfile.mkdtemp(prefix="fdguard-demo-"))
    total = 8 if guard else 7
    proc: subprocess.Popen[bytes] | None = None
    loads: list[_Load] = []
    watcher: Watcher | None = None
    watch_thread: threading.Thread | None = None
    store: Store | None = None
    log_file = None
    watch_errors: list[BaseException] = []

    def step(n: int, msg: str) -> None:
        on_step(f"{n}/{total} {msg}")

    try:
        service = tmp / "service.js"
        step(1, f"writing a Node.js service with an fd leak to {service}")
        service.write_text(SERVICE_JS, encoding="utf-8")
        log_path = tmp / "service.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 -- closed in `finally`
        # --report-on-signal lets `explain` ask Node which handles it holds.
        proc = subprocess.Popen(
            [node, "--report-on-signal", str(service)],
            cwd=tmp,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,
        )
        port = _ready_port(proc, 20.0)
        # A low soft limit (our own child) so that EMFILE comes in seconds, not hours.
        hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (SOFT_LIMIT, hard))
        step(2, f"started it: pid {proc.pid}, http://127.0.0.1:{port}, soft fd limit "
                f"{SOFT_LIMIT}")

        store = Store(tmp / "fdguard.db")
        verdicts: list[dict[str, Any]] = []
        woken = threading.Event()  # set on a leak verdict or a failed watch
        first_pid = proc.pid

        def on_event(ev: Any) -> None:
            if (ev.type == "verdict" and ev.data.get("kind") is None and ev.data.get("leak")
                    and ev.ref is not None and ev.ref.pid == first_pid):
                verdicts.append(dict(ev.data))
                woken.set()

        # Followed by command line, so the guarded workers later are the same
        # service to the store: one series, restarts marked.
        spec = TargetSpec(SpecKind.CMDLINE, str(service).replace(".", r"\."))
        watcher = Watcher(
            TargetSet([spec]),
            config=WATCH,
            store=store,
            alerts=AlertEngine([ThresholdRule(), TrendRule(), EtaRule()]),
            on_event=on_event,
        )

        def watch_body() -> None:
            assert watcher is not None
            try:
                watcher.run(duration=240.0)
            except BaseException as err:  # reported after the join
                watch_errors.append(err)
                woken.set()

        watch_thread = threading.Thread(target=watch_body, name="fdguard-demo-watch",
                                        daemon=True)
        watch_thread.start()
        load = _Load(port)
        loads.append(load)
        load.start()
        step(3, f"watching it (every {WATCH.interval * 1000:.0f} ms) under healthy traffic "
                f"for {HEALTHY_SECONDS:.0f} s, then a client starts sending requests that hit "
                "the leaking error path")
        time.sleep(HEALTHY_SECONDS)  # the healthy phase is part of the story, not a sync
        load.leaking.set()
        leak_started = time.monotonic()
        deadline = leak_started + detect_timeout
        # Woken by the watcher; the short timeout only notices the service exiting.
        while not woken.wait(0.05) and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise UsageError("the demo service exited during the watch")
        if watch_errors:
            raise UsageError(f"the watch failed: {watch_errors[0]}")
        if not verdicts:
            raise UsageError(f"the leak detector did not fire within {detect_timeout:.0f}s")
        v = verdicts[0]
        detected_after = time.monotonic() - leak_started
        eta = v.get("eta_seconds")
        step(4, f"leak detected {detected_after:.1f} s after the bad requests began: "
                f"{v.get('reason')}; +{(v.get('rate_per_hour') or 0):.0f} fds/hour"
                + (f", EMFILE expected in about {eta:.0f} s" if eta is not None else ""))

        ex = explain(proc.pid, view="auto")
        s = ex.summary
        by = ", ".join(f"{k} {n}" for k, n in s.by_verdict.items())
        step(5, f"explain: {s.actual} fds ({by}); libuv "
                f"{ex.runtime.libuv_version if ex.runtime else 'not found'}")
        explain_doc = ex.to_json()

        tr = trace_pid(proc.pid, trace_window)
        top = tr.groups[0] if tr.groups else None
        step(6, f"trace ({trace_window:.0f} s window, strace -k): {tr.created} fds created, "
                f"{len(tr.open_at_end)} still open"
                + (f"; the biggest group: {top.count} x {_syscall(top)} -- {top.verdict.text}"
                   if top is not None else ""))
        trace_doc = tr.to_json()

        emfile = False
        if to_emfile:
            # Let it run into its limit, so the log shows what its users would see;
            # the bad client now sends nothing but bad requests.
            load.only_bad.set()
            end = time.monotonic() + 30.0
            while time.monotonic() < end and proc.poll() is None:
                log_file.flush()
                if b"EMFILE" in log_path.read_bytes():
                    emfile = True
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # a few more samples at the limit
        load.join()
        final = next((vw.verdict for vw in watcher.views() if vw.target.pid == first_pid), None)

        mitigation: list[str] = []
        if guard:
            _stop(proc)
            mitigation = _guard_phase(service, tmp, lambda msg: step(7, msg))

        watcher.stop()
        watch_thread.join(timeout=10)
        store.close()
        store = None

        repro = {
            "origin": "the demo service",
            "files": {"service.js": SERVICE_JS},
            "run": [
                "node service.js &   # prints {\"port\": N}",
                "PORT=...  # the port it printed",
                "for i in $(seq 500); do curl -s \"http://127.0.0.1:$PORT/render?format=pdf\" "
                ">/dev/null; done",
                "ls /proc/$!/fd | wc -l   # grows by one per request, until EMFILE",
            ],
        }
        (tmp / "repro.json").write_text(json.dumps(repro), encoding="utf-8")
        final_doc = dict(v)
        if final is not None and final.leak:
            final_doc.update(rate_per_hour=final.rate_per_hour, confidence=final.confidence)
            detected_at = getattr(final, "detected_at", None)
            if detected_at is not None:
                # The watcher's clock is monotonic: give the report wall time.
                final_doc["detected_at"] = time.time() - (time.monotonic() - detected_at)
        inputs = ReportInputs(
            # Unguarded, the service still runs: the report reads it live. Guarded,
            # the report covers every process of the service the store recorded.
            pid=None if guard else proc.pid,
            store=str(tmp / "fdguard.db"),
            store_target=spec.label if guard else None,
            explain_doc=explain_doc,
            trace_doc=trace_doc,
            lab=(str(tmp / "repro.json"),),
            logs=(str(log_path),),
            verdict=final_doc,
            mitigation=tuple(mitigation),
            expected=(
                "Every request, including one asking for an unsupported format, leaves the "
                "fd count where it was: the template file opened for the request is closed "
                "before the response is sent."
            ),
        )
        rep = build_report(inputs)
        written = write_report(rep, Path(out_dir), github=github)
        step(total, f"report written: {written.markdown} (and report.html"
                    + (", issue.md" if written.github else "") + ", fd-series.png/.svg)")
        return DemoResult(
            written=written,
            pid=first_pid,
            detected_after_s=detected_after,
            eta_seconds=eta,
            emfile_seen=emfile,
            elapsed_s=time.monotonic() - t_start,
            libuv_version=rep.runtime.libuv_version if rep.runtime else None,
            mitigation=tuple(mitigation),
        )
    finally:
        for ld in loads:
            ld.join()
        if watcher is not None:
            watcher.stop()
        if watch_thread is not None:
            watch_thread.join(timeout=10)
        if store is not None:
            with contextlib.suppress(FdguardError):
                store.close()
        if proc is not None:
            _stop(proc)
        if log_file is not None:
            log_file.close()
        shutil.rmtree(tmp, ignore_errors=True)
        on_step(f"cleaned up: service stopped, {tmp} removed")


def _guard_phase(service: Path, tmp: Path, say: Callable[[str], None]) -> list[str]:
    """Run the service under `fdguard guard` with the same leaking traffic until it was
    restarted GUARD_RESTARTS times (bounded by GUARD_SECONDS); return what happened."""
    listeners = [bind(ListenSpec("http", "tcp", "127.0.0.1", 0))]
    port = int(listeners[0].address.rsplit(":", 1)[1])
    prog = ProgramSpec(
        name="demo-service",
        argv=(_node(), str(service)),
        listen=(listeners[0].spec,),
        readiness=Readiness.ACCEPTING,
        grace=5.0,
        nofile=SOFT_LIMIT,
        triggers=Triggers(max_fd_share=GUARD_SHARE),
        cwd=str(tmp),
    )
    say(f"guard: running it under fdguard guard on http://127.0.0.1:{port}, restarted "
        f"gracefully when its fds reach {GUARD_SHARE:.0%} of the limit, same traffic")
    load = _Load(port)
    load.leaking.set()
    restarts: list[str] = []
    sup: Supervisor

    def on_event(ev: GuardEvent) -> None:
        if ev.kind == "up" and not load.started:
            load.start()
        elif ev.kind == "restart":
            restarts.append(f"pid {ev.old_pid} -> {ev.pid}: {ev.reason}")
        elif ev.kind == "restarted" and len(restarts) >= GUARD_RESTARTS:
            load.stop.set()
            sup.request_stop()

    rt = tmp / "guard"
    rt.mkdir(mode=0o700)
    sup = Supervisor(GuardConfig("demo", (prog,), interval=0.1), {"demo-service": listeners},
                     runtime_dir=rt, on_event=on_event)
    timer = threading.Timer(GUARD_SECONDS, sup.request_stop)
    timer.start()
    try:
        sup.run()
    finally:
        timer.cancel()
        timer.join()
        load.join()
        close_all(listeners)
    lines = [f"fdguard guard restarted the service {len(restarts)} time(s) under the leaking "
             f"traffic, each time its fds reached {GUARD_SHARE:.0%} of the soft limit: "
             f"{load.sent} requests answered, {load.failed} failed"
             + (f" ({load.errors[0]})" if load.errors else "") + "."]
    lines += [f"restart {r}" for r in restarts]
    say(f"guard: {len(restarts)} graceful restart(s), {load.sent} requests answered, "
        f"{load.failed} failed")
    return lines


__all__ = ["SERVICE_JS", "DemoResult", "run_demo"]
