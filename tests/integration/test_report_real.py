"""Reports built from real leaking services: a Node.js one and a uvloop one, watched into a real
store, explained and traced live; every section present and true against the runtime's own
answers, the charts drawn from exactly the recorded samples, the HTML rendered in a real headless
Chromium, the given C reproducer compiling against the system libuv."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fdguard.alerts import AlertEngine, EtaRule, ThresholdRule, TrendRule
from fdguard.report import SECTIONS, ReportInputs, build_report, write_report
from fdguard.store import Store
from fdguard.targets import SpecKind, TargetSet, TargetSpec
from fdguard.trace import trace_pid
from fdguard.watch import WatchConfig, Watcher, WatchEvent, detector_config_for
from tests.integration.watching import watching

PROCS = Path(__file__).parent.parent / "procs"
CONFIG = WatchConfig(
    interval=0.05,
    snapshot_every=1.0,
    suspicious_gap=0.5,
    rescan_every=1.0,
    detector=detector_config_for(4.0, bucket=0.1),
)
RATE = 20.0


def _watch_until_leak(pid: int, db: Path, act: Callable[[], None], *, limit_s: float = 25.0
                      ) -> list[WatchEvent]:
    """Watch `pid` into the store at `db` while calling `act` RATE times a second, until the
    leak detector fires (plus a second of samples), bounded by `limit_s`."""
    events: list[WatchEvent] = []
    with Store(db) as store:
        w = Watcher(TargetSet([TargetSpec(SpecKind.PID, str(pid))]), config=CONFIG, store=store,
                    alerts=AlertEngine([ThresholdRule(), TrendRule(), EtaRule()]),
                    on_event=events.append)
        with watching(w, duration=limit_s + 5):
            start = time.monotonic()
            fired_at = None
            for i in range(int(limit_s * RATE)):
                delay = start + i / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the load, not synchronising
                act()
                if fired_at is None and any(e.type == "verdict" and e.data.get("leak")
                                            for e in events):
                    fired_at = time.monotonic()
                if fired_at is not None and time.monotonic() - fired_at > 1.0:
                    break
    assert any(e.type == "verdict" and e.data.get("leak") for e in events), "no leak found"
    return events


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def _check_common(md: str, rep_dir: Path, db: Path, pid: int) -> None:
    positions = [md.index(f"\n## {s}\n") for s in SECTIONS]
    assert positions == sorted(positions)
    with Store(db) as store:
        [target] = [t for t in store.targets() if t.ref.pid == pid]
        recorded = [(s.t, s.count) for s in store.samples(target.id)]
    assert f"{len(recorded)} samples" in md
    png = rep_dir / "fd-series.png"
    assert _png_size(png) == (1000, 500)
    svg = (rep_dir / "fd-series.svg").read_text()
    m = re.search(r'<g id="fd-total">\s*<path d="([^"]+)"', svg)
    assert m is not None
    assert len(re.findall(r"[ML]", m.group(1))) == len(recorded)
    # The recorded peak is the one the report states.
    assert f"peak {max(c for _, c in recorded)} at" in md


@pytest.mark.node
def test_report_on_a_leaking_node_service(spawn, node: str, tmp_path: Path) -> None:
    svc = spawn(["prlimit", "--nofile=1024:1024", node, str(PROCS / "fd_service.js"), "leak"])
    port = json.loads(svc.ready)["port"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def request() -> None:
        conn.request("GET", "/work")
        conn.getresponse().read()

    db = tmp_path / "fd.db"
    try:
        _watch_until_leak(svc.pid, db, request)
        tr = trace_pid(svc.pid, 5.0, on_attached=lambda: [request() for _ in range(25)],
                       stop_when=None)
    finally:
        conn.close()
    rep = build_report(ReportInputs(pid=svc.pid, store=str(db), trace_doc=tr.to_json(),
                                    lab=(str(PROCS / "trace_uv_leak.c"),)))
    out = write_report(rep, tmp_path / "report", github=True)
    md = out.markdown.read_text()

    # libuv version: the runtime's own answer.
    own = subprocess.run([node, "-p", "process.versions.uv"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert rep.runtime is not None
    assert rep.runtime.libuv_version == own
    assert f"| libuv version | {own} |" in md
    _check_common(md, out.markdown.parent, db, svc.pid)
    # Observed: the detector's verdict and the leaking kind at the worst moment.
    assert rep.observed is not None
    assert rep.observed.detector is not None
    assert rep.observed.worst_by_kind.get("chardev", 0) > 20
    # Attribution: explain's verdicts cover the leaked /dev/null fds (which verdict is
    # explain's own business); trace has their births.
    assert rep.explain is not None
    assert sum(n for _v, kind, _s, n, *_ in rep.explain.rows if kind == "chardev") > 20
    assert rep.explain.summary["actual"] == sum(n for _v, _k, _s, n, *_ in rep.explain.rows)
    assert rep.trace is not None
    assert sum(g.count for g in rep.trace.groups if "chardev" in g.kinds) >= 20
    assert any(origin == "libuv" for g in rep.trace.groups for _l, origin in g.frames)
    # Platform facts agree with the machine.
    rows = dict(rep.platform.rows())
    assert rows["kernel"] == subprocess.run(["uname", "-r"], capture_output=True, text=True,
                                            check=True).stdout.strip()
    assert rows["RLIMIT_NOFILE of the target"].startswith("soft 1024, hard 1024")
    assert rows["fs.nr_open"] == Path("/proc/sys/fs/nr_open").read_text().strip()

    # The reproducer given compiles, with the build line the report gives.
    block = re.search(r"`trace_uv_leak\.c`:\n\n```c\n(.*?)\n```", md, re.S)
    assert block is not None
    build = re.search(r"Build:\n\n```sh\n(.*?)\n```", md, re.S)
    assert build is not None
    work = tmp_path / "repro"
    work.mkdir()
    (work / "trace_uv_leak.c").write_text(block.group(1) + "\n")
    res = subprocess.run(["sh", "-c", build.group(1)], cwd=work, capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert (work / "repro").exists()

    # The HTML, rendered by a real headless Chromium: look at it (the test keeps a copy).
    shot = _screenshot(spawn, out.html, tmp_path)
    w, h = _png_size(shot)
    assert (w, h) == (1200, 2400)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few KB
    shutil.copy(shot, Path("/tmp") / "fdguard-report-screenshot.png")


def _screenshot(spawn, html: Path, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: ./scripts/setup.sh installs it")
    shot = tmp_path / "shot.png"
    child = spawn([
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,2400",
        "--hide-scrollbars", f"--screenshot={shot}", html.resolve().as_uri(),
    ], ready=False)
    assert child.proc.wait(timeout=90) == 0
    assert shot.exists()
    return shot


def test_report_on_a_leaking_uvloop_service(spawn, tmp_path: Path) -> None:
    svc = spawn([sys.executable, str(PROCS / "trace_uvloop_leak.py")])
    port = json.loads(svc.ready)["port"]
    kept: list[socket.socket] = []

    def leak_one() -> None:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"LEAK\n")
        assert s.recv(16) == b"kept\n"
        s.shutdown(socket.SHUT_WR)  # the peer's FIN: the server's side sits in CLOSE-WAIT
        kept.append(s)

    db = tmp_path / "fd.db"
    try:
        _watch_until_leak(svc.pid, db, leak_one)
        rep = build_report(ReportInputs(pid=svc.pid, store=str(db), gdb_stacks=True))
        out = write_report(rep, tmp_path / "report")
        leak_one()  # gdb detached: the service still serves
    finally:
        for s in kept:
            s.close()
    md = out.markdown.read_text()
    import uvloop.loop

    v = uvloop.loop.libuv_get_version()
    own = f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"
    assert rep.runtime is not None
    assert rep.runtime.name == "uvloop"
    assert rep.runtime.libuv_version == own
    assert f"| libuv version | {own} |" in md
    _check_common(md, out.markdown.parent, db, svc.pid)
    assert rep.observed is not None
    assert rep.observed.worst_by_state.get("CLOSE-WAIT", 0) > 20
    assert rep.explain is not None
    # Live stacks from gdb (asked for explicitly): the event loop's thread, in libuv's poll.
    assert rep.stacks is not None
    assert "### Live thread stacks (gdb)" in md
    assert re.search(r"^Thread 1 ", rep.stacks, re.M)
    assert "uv__io_poll" in rep.stacks
    # Not traced, no logs: the report says so instead of inventing them.
    missing = {c.what for c in rep.missing}
    assert "birth certificates of leaked fds (trace)" in missing
    assert "error logs" in missing
    assert "Not available: no `trace` of the leaking fds" in md
