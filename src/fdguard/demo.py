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
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
"""

SOFT_LIMIT = 384
RATE = 40.0  # requests per second from the demo's client
BAD_SHARE = 2  # in the leaking phase, every 2nd request hits the error path
HEALTHY_SECONDS = 3.0
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


class _Load:
    """A loopback HTTP client on one keep-alive connection, in a thread, paced at RATE."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.leaking = threading.Event()
        self.stop = threading.Event()
        self.sent = 0
        self.bad = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="fdguard-demo-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
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
                bad = self.leaking.is_set() and i % BAD_SHARE == 0
                conn.request("GET", "/render?format=pdf" if bad else "/render?name=demo")
                conn.getresponse().read()
                self.sent += 1
                self.bad += bad
        except (OSError, http.client.HTTPException) as err:
            self.errors.append(str(err))
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
    github: bool = True,
) -> DemoResult:
    """Run the demo (see the module comment) and write the report into `out_dir`.

    Raises:
        ToolMissing: node (or strace) is not installed.
        UsageError: the service did not start, or the leak was not detected
            within `detect_timeout` seconds.
    """
    t_start = time.monotonic()
    node = _node()
    tmp = Path(tempfile.mkdtemp(prefix="fdguard-demo-"))
    proc: subprocess.Popen[bytes] | None = None
    load: _Load | None = None
    watcher: Watcher | None = None
    watch_thread: threading.Thread | None = None
    store: Store | None = None
    log_file = None
    watch_errors: list[BaseException] = []
    try:
        on_step(f"1/7 writing a Node.js service with an fd leak to {tmp}/service.js")
        (tmp / "service.js").write_text(SERVICE_JS, encoding="utf-8")
        log_path = tmp / "service.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 -- closed in `finally`
        # --report-on-signal lets `explain` ask Node which handles it holds.
        proc = subprocess.Popen(
            [node, "--report-on-signal", str(tmp / "service.js")],
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
        on_step(f"2/7 started it: pid {proc.pid}, http://127.0.0.1:{port}, soft fd limit "
                f"{SOFT_LIMIT}")

        store = Store(tmp / "fdguard.db")
        verdicts: list[dict[str, Any]] = []

        def on_event(ev: Any) -> None:
            if ev.type == "verdict" and ev.data.get("kind") is None and ev.data.get("leak"):
                verdicts.append(dict(ev.data))

        watcher = Watcher(
            TargetSet([TargetSpec(SpecKind.PID, str(proc.pid))]),
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

        watch_thread = threading.Thread(target=watch_body, name="fdguard-demo-watch",
                                        daemon=True)
        watch_thread.start()
        load = _Load(port)
        load.start()
        on_step(f"3/7 watching it (every {WATCH.interval * 1000:.0f} ms) under healthy "
                f"traffic for {HEALTHY_SECONDS:.0f} s, then a client starts sending "
                "requests that hit the leaking error path")
        time.sleep(HEALTHY_SECONDS)  # the healthy phase is part of the story, not a sync
        load.leaking.set()
        leak_started = time.monotonic()
        deadline = leak_started + detect_timeout
        while not verdicts and time.monotonic() < deadline and not watch_errors:
            if proc.poll() is not None:
                raise UsageError("the demo service exited during the watch")
            time.sleep(0.05)
        if watch_errors:
            raise UsageError(f"the watch failed: {watch_errors[0]}")
        if not verdicts:
            raise UsageError(f"the leak detector did not fire within {detect_timeout:.0f}s")
        v = verdicts[0]
        detected_after = time.monotonic() - leak_started
        eta = v.get("eta_seconds")
        on_step(
            f"4/7 leak detected {detected_after:.1f} s after the bad requests began: "
            f"{v.get('reason')}; +{(v.get('rate_per_hour') or 0):.0f} fds/hour"
            + (f", EMFILE expected in about {eta:.0f} s" if eta is not None else "")
        )

        ex = explain(proc.pid, view="auto")
        s = ex.summary
        by = ", ".join(f"{k} {n}" for k, n in s.by_verdict.items())
        on_step(f"5/7 explain: {s.actual} fds ({by}); libuv "
                f"{ex.runtime.libuv_version if ex.runtime else 'not found'}")
        explain_doc = ex.to_json()

        tr = trace_pid(proc.pid, trace_window)
        top = tr.groups[0] if tr.groups else None
        on_step(
            f"6/7 trace ({trace_window:.0f} s window, strace -k): {tr.created} fds created, "
            f"{len(tr.open_at_end)} still open"
            + (f"; the biggest group: {top.count} x {_syscall(top)} -- {top.verdict.text}"
               if top is not None else "")
        )
        trace_doc = tr.to_json()

        emfile = False
        if to_emfile:
            # Let it run into its limit, so the log shows what its users would see.
            end = time.monotonic() + 30.0
            while time.monotonic() < end and proc.poll() is None:
                log_file.flush()
                if b"EMFILE" in log_path.read_bytes():
                    emfile = True
                    break
                time.sleep(0.1)
            # A few more samples at the limit, then quiet.
            time.sleep(0.5)
        load.join()
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
        final = watcher.views()[0].verdict if watcher.views() else None
        final_doc = dict(v)
        if final is not None and final.leak:
            final_doc.update(rate_per_hour=final.rate_per_hour, confidence=final.confidence)
            detected_at = getattr(final, "detected_at", None)
            if detected_at is not None:
                # The watcher's clock is monotonic: give the report wall time.
                final_doc["detected_at"] = time.time() - (time.monotonic() - detected_at)
        inputs = ReportInputs(
            pid=proc.pid,
            store=str(tmp / "fdguard.db"),
            explain_doc=explain_doc,
            trace_doc=trace_doc,
            lab=str(tmp / "repro.json"),
            logs=(str(log_path),),
            verdict=final_doc,
            expected=(
                "Every request, including one asking for an unsupported format, leaves the "
                "fd count where it was: the template file opened for the request is closed "
                "before the response is sent."
            ),
        )
        rep = build_report(inputs)
        written = write_report(rep, Path(out_dir), github=github)
        on_step(f"7/7 report written: {written.markdown} (and report.html"
                + (", issue.md" if written.github else "") + ", fd-series.png/.svg)")
        return DemoResult(
            written=written,
            pid=proc.pid,
            detected_after_s=detected_after,
            eta_seconds=eta,
            emfile_seen=emfile,
            elapsed_s=time.monotonic() - t_start,
            libuv_version=rep.runtime.libuv_version if rep.runtime else None,
        )
    finally:
        if load is not None:
            load.join()
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


__all__ = ["SERVICE_JS", "DemoResult", "run_demo"]
