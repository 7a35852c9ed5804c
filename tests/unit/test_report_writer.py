"""The report from a recorded store and saved explain/trace documents: sections, charts, formats."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from fdguard.model import ProcessRef
from fdguard.report import SECTIONS, ReportInputs, build_report, write_report
from fdguard.report.writer import GITHUB_BODY_LIMIT, Code, Para, Table, fit_github, to_markdown
from fdguard.store import Store

# Above the kernel's largest pid_max (2^22): never a live process.
GONE_PID = 4_194_400
T0 = 1_790_000_000.0


def _store(path: Path) -> list[list[tuple[float, int]]]:
    """Two processes of one service (a restart), the first leaking; returns their series."""
    series: list[list[tuple[float, int]]] = []
    with Store(path) as st:
        for n, (pid, start, base, slope) in enumerate([(GONE_PID, 100, 20, 2), (GONE_PID + 1,
                                                                               900, 20, 0)]):
            t_first = T0 + n * 200
            tid = st.target_id(ProcessRef(pid, start), ("node", "/srv/app.js"), t_first,
                               label="svc")
            pts = [(t_first + i, base + slope * i) for i in range(0, 150)]
            series.append(pts)
            st.add_samples([(tid, t, c, 1024) for t, c in pts])
            for t, c in pts[::30]:
                st.add_kind_counts(tid, t, {"file": c - 15, "pipe": 10, "tcp": 5},
                                   {"ESTAB": 4, "LISTEN": 1})
            if n == 0:
                st.add_alert(tid, T0 + 60, rule="trend", state="firing", severity="warning",
                             message="fd leak: floor rose",
                             data={"rate_per_hour": 7200.0, "eta_seconds": 350.0,
                                   "confidence": 0.9})
                st.add_alert(tid, T0 + 60, rule="eta", state="firing", severity="critical",
                             message="soft limit soon", data={"rate_per_hour": 7200.0,
                                                              "eta_seconds": 350.0})
            else:
                st.add_event(tid, t_first, "restart", {"previous_pid": GONE_PID})
    return series


EXPLAIN: dict[str, Any] = {
    "pid": GONE_PID,
    "command": ["node", "/home/carol/srv/app.js", "--token=tok-123456"],
    "runtime": {"name": "node", "libuv_version": "1.46.0", "source": "uv_version_string()",
                "path": "/usr/bin/node", "linkage": "executable", "versions": {"node": "v20"},
                "notes": []},
    "fds": [
        {"fd": 3, "kind": "epoll", "state": None, "verdict": "loop-internal",
         "evidence": "epoll instance", "certain": True},
        {"fd": 20, "kind": "tcp", "state": "CLOSE", "verdict": "unowned",
         "evidence": "no handle", "certain": False, "remote": "10.9.8.7:5432"},
        *[{"fd": 30 + i, "kind": "file", "state": None, "verdict": "fs",
           "evidence": "opened by path", "certain": True, "target": "/home/carol/t.html"}
          for i in range(5)],
    ],
    "summary": {"expected": 6, "actual": 7, "unexplained": 1, "confidence": "medium",
                "basis": ["heuristics"], "by_verdict": {"fs": 5}},
    "notes": [],
    "handle_view": None,
}

TRACE: dict[str, Any] = {
    "target": {"pid": GONE_PID, "command": ["node", "app.js"]},
    "mode": "attach", "window_s": 3.0, "stacks": True, "created": 10, "closed": 4,
    "open_at_end": [{"fd": 30}] * 6,
    "groups": [{
        "count": 6, "syscall": "openat", "kinds": {"file": 6}, "creator": "libuv",
        "libuv_function": "uv__fs_work", "verdict": "application",
        "verdict_text": "handed to the application, never closed",
        "frames": [
            {"symbol": "__open64", "module": "/usr/lib/libc.so.6", "origin": "system"},
            {"symbol": "uv__fs_work", "module": "/usr/bin/node", "origin": "libuv"},
            {"symbol": None, "module": "/home/carol/addon.node", "origin": "application",
             "address": "0x1234"},
        ],
        "fds": [30, 31, 32, 33, 34, 35], "after": {"read EAGAIN": 1},
    }],
    "exhaustion": [{"syscall": "openat", "errno": "EMFILE", "at": T0 + 100}],
    "warnings": [],
}


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, list[list[tuple[float, int]]]]:
    db = tmp_path / "fd.db"
    return db, _store(db)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def _svg_vertices(svg: str, gid: str) -> int:
    m = re.search(rf'<g id="{re.escape(gid)}">\s*<path d="([^"]+)"', svg)
    assert m, f"no line {gid} in the SVG"
    return len(re.findall(r"[ML]", m.group(1)))


def test_report_from_a_store_has_every_section_in_order(
    recorded: tuple[Path, list[list[tuple[float, int]]]], tmp_path: Path
) -> None:
    db, series = recorded
    log = tmp_path / "svc.log"
    log.write_text("started\nError: EMFILE: too many open files, open '/home/carol/t.html'\n"
                   "    at Object.openSync (node:fs:1)\n" * 3 + "all good\n")
    rep = build_report(ReportInputs(store=str(db), store_target="svc", explain_doc=EXPLAIN,
                                    trace_doc=TRACE, logs=(str(log),)))
    out = write_report(rep, tmp_path / "out", github=True)
    md = out.markdown.read_text()
    positions = [md.index(f"\n## {s}\n") for s in SECTIONS]
    assert positions == sorted(positions)

    # At a glance, before the sections: runtime, growth, the biggest leaked group.
    glance = md[md.index("At a glance:"):positions[0]]
    assert "- libuv 1.46.0 in node (node v20); " in glance
    assert "20 -> 318 open fds (soft limit 1024); +7200 fds/hour; most are file" in glance
    assert "Biggest group of leaked fds: 6 from openat in uv__fs_work; verdict application." \
        in glance
    # libuv version and the known fixes it carries.
    assert "| libuv version | 1.46.0 |" in md
    assert "Known libuv fd-leak fixes" in md
    # Observed: both processes, the restart, the detector's recorded rate and ETA.
    assert "300 samples" in md
    assert f"pid {GONE_PID} -> {GONE_PID + 1}" in md
    assert "+7200 fds/hour" in md
    assert "| file | " in md
    assert "| tcp ESTAB | 4 |" in md
    # Attribution: unowned first, libuv frames marked, addresses and users redacted.
    verdict_rows = [ln for ln in md.splitlines() if ln.startswith(("| unowned", "| fs |",
                                                                    "| loop-internal"))]
    assert verdict_rows[0].startswith("| unowned?")
    assert ">> uv__fs_work (node)  [libuv]" in md
    assert "10.9.8.7" not in md
    assert "carol" not in md
    assert "tok-123456" not in md
    # Error logs folded with their count, and the trace's EMFILE.
    assert "(x3)" in md
    assert "openat failed with EMFILE" in md
    # The checklist says what is missing, unchecked.
    assert "- [ ] minimal reproducer" in md
    assert "- [x] birth certificates of leaked fds (trace)" in md

    # Charts: PNG and SVG, every recorded sample a vertex, in order.
    png = next(c for c in out.charts if c.fmt == "png")
    assert _png_size(png.path) == (png.width_px, png.height_px) == (1000, 500)
    assert list(png.points) == [p for s in series for p in s]
    svg = next(c for c in out.charts if c.fmt == "svg").path.read_text()
    assert _svg_vertices(svg, "fd-total") == len(series[0])
    assert _svg_vertices(svg, "fd-total-1") == len(series[1])

    # HTML is self-contained: the chart is inlined, nothing is fetched.
    html = out.html.read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r'src="(?!data:)', html)
    assert "<b>&gt;&gt; uv__fs_work" in html

    # The facts for tools, in JSON.
    doc = json.loads((out.markdown.parent / "report.json").read_text())
    assert doc["runtime"]["libuv_version"] == "1.46.0"
    assert doc["observed"]["samples"] == 300
    assert doc["observed"]["detector"]["rate_per_hour"] == 7200.0
    assert doc["trace"]["groups"][0]["libuv_function"] == "uv__fs_work"
    assert {c["what"]: c["present"] for c in doc["checklist"]}["error logs"] is True
    assert "carol" not in json.dumps(doc)

    # The GitHub body is within the limit and points at the chart file.
    assert out.github is not None
    body = out.github.read_text()
    assert len(body) <= GITHUB_BODY_LIMIT
    assert "fd-series.png" in body


def test_missing_sources_are_listed_not_invented(
    recorded: tuple[Path, list[list[tuple[float, int]]]], tmp_path: Path
) -> None:
    db, _ = recorded
    rep = build_report(ReportInputs(store=str(db), store_target=f"{GONE_PID}"))
    md = write_report(rep, tmp_path / "out").markdown.read_text()
    missing = {c.what for c in rep.missing}
    assert {"libuv version and runtime", "attribution: explain verdicts",
            "birth certificates of leaked fds (trace)", "error logs"} <= missing
    assert md.count("Not available:") >= 5
    assert "| libuv version |" not in md
    assert rep.runtime is None
    assert rep.explain is None
    assert rep.trace is None


def test_github_body_moves_the_biggest_parts_to_attachments(tmp_path: Path) -> None:
    blocks = [Para("intro"), Table(("a", "b"), tuple((str(i), "x" * 300) for i in range(400)),
                                   name="big-table.md"),
              Code("\n".join("y" * 200 for _ in range(200)), "text", name="logs.txt"),
              Para("outro")]
    assert len(to_markdown(blocks)) > GITHUB_BODY_LIMIT
    body, attachments = fit_github(blocks)
    assert len(body) <= GITHUB_BODY_LIMIT
    names = [n for n, _ in attachments]
    assert names[0] == "big-table.md"
    assert "attached as `big-table.md`" in body
    assert "intro" in body
    assert "outro" in body
    # Nothing is lost: the moved parts are whole in the attachments.
    assert sum(len(t) for _, t in attachments) > 100_000


def test_reproducer_from_a_lab_json(tmp_path: Path,
                                    recorded: tuple[Path, Any]) -> None:
    db, _ = recorded
    lab = tmp_path / "lab.json"
    lab.write_text(json.dumps({"files": {"repro.c": "int main(void){return 0;}\n"},
                               "build": ["cc -o repro repro.c"], "run": ["./repro"]}))
    rep = build_report(ReportInputs(store=str(db), store_target="svc", lab=(str(lab),)))
    md = write_report(rep, tmp_path / "out").markdown.read_text()
    assert "```c\nint main(void){return 0;}\n```" in md
    assert "cc -o repro repro.c" in md
    assert "- [x] minimal reproducer" in md


def test_stress_result_is_the_scenario_when_no_reproducer(
    recorded: tuple[Path, Any], tmp_path: Path
) -> None:
    from fdguard.faults.syscall import SyscallFault
    from fdguard.stress import BASELINE, ConfigResult, FaultConfig, RoundSample, StressResult

    def rounds(counts: list[int]) -> tuple[RoundSample, ...]:
        return tuple(RoundSample(i, i < 2, c, 50, 0) for i, c in enumerate(counts))

    fault = FaultConfig("refused", syscall=(SyscallFault("connect", error="ECONNREFUSED"),))
    result = StressResult("upstream-errors", (
        ConfigResult(BASELINE, False, "flat", (0, 0, 0), rounds([20, 20, 20, 20, 20]), {}, {},
                     ()),
        ConfigResult(fault, True, "grew every round", (50, 50, 50), rounds([20, 70, 120, 170,
                                                                              220]),
                     {"tcp": 50.0}, {"CLOSE": 50.0}, (),
                     error="Error: connect ECONNREFUSED 10.1.1.1:5432"),
    ))
    db, _ = recorded
    rep = build_report(ReportInputs(store=str(db), store_target="svc",
                                    stress_doc=result.to_json()))
    md = write_report(rep, tmp_path / "out").markdown.read_text()
    assert "Stress scenario `upstream-errors`" in md
    assert "leaks under refused." in md
    assert "| refused | " in md
    assert "LEAK: grew every round" in md
    assert "tcp +50" in md
    # The stress run's error is an error log, redacted.
    assert "connect ECONNREFUSED <ipv4-1>:5432" in md
    assert "- [ ] minimal reproducer" in md
    assert "- [x] a scenario that triggers it" in md


def test_long_series_are_drawn_as_their_envelope() -> None:
    from fdguard.report.charts import MAX_POINTS, envelope
    from fdguard.store import StoredSample

    samples = [StoredSample(T0 + i, 100 + (i * 7919) % 97 + (500 if i == 54321 else 0), 1024)
               for i in range(86_400)]
    drawn = envelope(samples)
    assert len(drawn) <= MAX_POINTS
    assert [s.t for s in drawn] == sorted(s.t for s in drawn)
    assert set(map(id, drawn)) <= set(map(id, samples))
    # Every peak and floor survives: the single spike, the global minimum.
    assert max(s.count for s in drawn) == max(s.count for s in samples) > 600
    assert min(s.count for s in drawn) == min(s.count for s in samples)
    short = samples[:MAX_POINTS]
    assert envelope(short) == short
