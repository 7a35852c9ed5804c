"""`fdguard watch`, `export`, `history` and `plot` through the real CLI in-process."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import urllib.request
from pathlib import Path

from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from fdguard.cli.main import cli
from fdguard.cli.watch_cmd import live_table
from fdguard.clock import ManualClock
from fdguard.exporter import WatchCollector
from fdguard.targets import SpecKind, TargetSet, TargetSpec
from fdguard.watch import WatchConfig, Watcher

IDLE = [sys.executable, "-c", "print('ready', flush=True); import sys; sys.stdin.read()"]


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_watch_json_streams_events_and_records_history(spawn, tmp_path: Path) -> None:
    child = spawn(IDLE)
    db = tmp_path / "fd.db"
    res = CliRunner().invoke(cli, ["watch", "--pid", str(child.pid), "--rounds", "4",
                                   "--interval", "0.05", "--json", "--samples",
                                   "--store", str(db)])
    assert res.exit_code == 0, res.output
    events = _lines(res.stdout)
    types = [e["type"] for e in events]
    assert types[0] == "start"
    assert types.count("sample") == 4
    assert "snapshot" in types
    real = len(os.listdir(f"/proc/{child.pid}/fd"))
    assert {e["count"] for e in events if e["type"] == "sample"} == {real}
    assert all(e["pid"] == child.pid for e in events)
    # Seconds into its first day, the detector is learning, and each sample says how long
    # it has left (what the table shows as "learning 24h"; the countdown itself, hour by
    # hour, is tests/unit/test_detect.py's).
    left = [e["warmup_left"] for e in events if e["type"] == "sample"]
    assert all(86400 - 60 < x <= 86400 for x in left)
    assert left == sorted(left, reverse=True)
    assert {(e["leak"], e["confirming"]) for e in events if e["type"] == "sample"} == {
        (False, False)
    }

    res = CliRunner().invoke(cli, ["history", "--store", str(db), "--json"])
    assert res.exit_code == 0, res.output
    [t] = json.loads(res.stdout)["targets"]
    assert (t["pid"], t["samples"], t["label"]) == (child.pid, 4, f"pid:{child.pid}")
    res = CliRunner().invoke(cli, ["history", "--store", str(db), "--pid", str(child.pid),
                                   "--json"])
    [d] = json.loads(res.stdout)["targets"]
    assert [s["count"] for s in d["samples"]] == [real] * 4
    assert any(k["dim"] == "kind" and k["name"] == "pipe" for k in d["kinds"])
    assert [e["type"] for e in d["events"]] == ["start"]
    res = CliRunner().invoke(cli, ["history", "--store", str(db)])
    assert res.exit_code == 0
    assert str(child.pid) in res.stdout

    png = tmp_path / "fds.png"
    res = CliRunner().invoke(cli, ["plot", "--store", str(db), "--pid", str(child.pid),
                                   "-o", str(png)])
    assert res.exit_code == 0, res.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_a_second_watch_goes_on_from_the_saved_detector_unless_told_not_to(
    spawn, tmp_path: Path
) -> None:
    child = spawn(IDLE)
    db = tmp_path / "fd.db"
    args = ["watch", "--pid", str(child.pid), "--rounds", "3", "--interval", "0.05",
            "--json", "--store", str(db)]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "resumed_from" not in _lines(first.stdout)[0]
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    start = _lines(second.stdout)[0]
    assert start["type"] == "start"
    assert start["resumed_from"] <= start["t"]  # saved when the first watch ended
    third = CliRunner().invoke(cli, [*args, "--no-resume"])
    assert third.exit_code == 0, third.output
    assert "resumed_from" not in _lines(third.stdout)[0]


def test_watch_alert_reaches_a_command(spawn, tmp_path: Path) -> None:
    child = spawn(["prlimit", "--nofile=100:100", *IDLE])
    out = tmp_path / "alert.json"
    hook = f"{sys.executable} -c \"import sys; open('{out}', 'w').write(sys.stdin.read())\""
    # Any process is over 1% of a 100-fd limit: the threshold rule fires after 3 samples.
    res = CliRunner().invoke(cli, ["watch", "--pid", str(child.pid), "--rounds", "4",
                                   "--interval", "0.05", "--no-store", "--threshold", "0.01",
                                   "--alert-command", hook])
    assert res.exit_code == 0, res.output
    alert = json.loads(out.read_text())
    assert (alert["rule"], alert["state"], alert["pid"]) == ("threshold", "firing", child.pid)
    # Not a tty: plain lines, one per lifecycle event and per alert.
    assert f"start: pid {child.pid}" in res.stdout
    assert "[warning] threshold firing" in res.stdout


def test_watch_launched_command_until_it_exits(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["watch", "--json", "--no-store", "--interval", "0.05",
                                   "--rescan-every", "0.05", "--", sys.executable, "-c",
                                   "import os,time; fds=[os.open('/dev/null', 0) "
                                   "for _ in range(50)]; time.sleep(1)"])
    assert res.exit_code == 0, res.output
    events = _lines(res.stdout)
    assert events[0]["type"] == "start"
    assert events[-1]["type"] == "exit"
    assert events[-1]["last_count"] >= 50


def test_watch_errors_are_exit_statuses(spawn) -> None:
    assert CliRunner().invoke(cli, ["watch", "--no-store"]).exit_code == 2
    child = spawn(IDLE)
    pid = child.pid
    child.proc.kill()
    child.proc.wait()
    res = CliRunner().invoke(cli, ["watch", "--pid", str(pid), "--no-store", "--rounds", "2"])
    assert res.exit_code == 3, res.output
    assert CliRunner().invoke(cli, ["watch", "-t", "bogus:1", "--no-store"]).exit_code == 2


def test_export_serves_on_loopback_until_done(spawn, tmp_path: Path) -> None:
    child = spawn(IDLE)
    res = CliRunner().invoke(cli, ["export", "--pid", str(child.pid), "--no-store",
                                   "--rounds", "3", "--interval", "0.05",
                                   "--listen", "127.0.0.1:0"])
    assert res.exit_code == 0, res.output
    # Loopback, and the port the kernel chose (not 0), are what the operator is told.
    assert "serving http://127.0.0.1:" in res.stderr
    assert "127.0.0.1:0/" not in res.stderr
    assert CliRunner().invoke(cli, ["export", "--pid", "1", "--listen", "nope"]).exit_code == 2


def test_live_table_renders_what_an_operator_needs(spawn) -> None:
    child = spawn(IDLE)
    w = Watcher(TargetSet([TargetSpec(SpecKind.PID, str(child.pid))]), clock=ManualClock())
    w.run(max_rounds=2)
    buf = io.StringIO()
    Console(file=buf, width=200).print(live_table(w.views()))
    text = buf.getvalue()
    for col in ("PID", "FDS", "LIMIT", "LEAK", "RATE/h", "ETA", "TOP KINDS"):
        assert col in text
    assert str(child.pid) in text
    assert "pipe" in text


def test_a_rise_being_confirmed_shows_in_the_table_and_the_metrics(spawn) -> None:
    """A 30 fd/h leak with the limit (4096) days away: once the floor has risen for a
    day it must hold a day more before it is called (the detector's step 7). In
    between, the live table says "confirming" and fdguard_leak_confirming is 1. On the
    first day, before the detector can judge, it says "learning" with the hours left,
    as fdguard_leak_warmup_seconds does."""
    child = spawn(["prlimit", "--nofile=4096:4096", *IDLE])
    clock = ManualClock(start=0.0)
    w = Watcher(
        TargetSet([TargetSpec(SpecKind.PID, str(child.pid))]),
        config=WatchConfig(interval=60.0, snapshot_every=6 * 3600.0, rescan_every=600.0),
        clock=clock,
        count_fn=lambda pid: 100 + int(clock.monotonic() / 120) + int(clock.monotonic()) % 7,
    )
    reg = CollectorRegistry(auto_describe=False)
    reg.register(WatchCollector(w.views))

    def shown() -> tuple[str, str, float]:
        buf = io.StringIO()
        Console(file=buf, width=200).print(live_table(w.views()))
        lines = generate_latest(reg).decode().splitlines()
        line = next(x for x in lines if x.startswith("fdguard_leak_confirming{"))
        warm = next(x for x in lines if x.startswith("fdguard_leak_warmup_seconds{"))
        return buf.getvalue(), line.split()[-1], float(warm.split()[-1])

    states = []
    for hour in range(72):
        w.run(duration=3600.0)
        v = w.views()[0].verdict
        assert v is not None
        table, gauge, warmup = shown()
        if "learning" in table:  # the first day: too early to tell, and it says so
            assert v.warmup_left is not None
            assert f"learning {math.ceil(v.warmup_left / 3600)}h" in table
            assert warmup == v.warmup_left
            assert 0 < warmup <= 24 * 3600 - hour * 3600
            assert "no " not in table
            states.append("learning")
            continue
        assert warmup == 0.0
        state = "leak" if v.leak else "confirming" if "confirming" in table else "no"
        assert gauge == ("1.0" if state == "confirming" else "0.0"), (state, gauge)
        if state == "leak":
            assert "YES" in table
        states.append(state)
        if v.leak:
            break
    assert states[-1] == "leak"
    # learning (the first day) -> no -> confirming (for about a day) -> leak, never back.
    judged = states.count("learning")
    assert states[:judged] == ["learning"] * judged
    assert judged == 23  # the 24th hour closes the bucket that ends a whole period
    first = states.index("confirming")
    assert states[judged:first] == ["no"] * (first - judged)  # (none: 30 fd/h shows at once)
    assert 20 <= states.count("confirming") == len(states) - first - 1 <= 24


def test_export_metrics_endpoint_answers_while_running(spawn) -> None:
    # The library path `fdguard export` wraps: serve the collector, scrape it over HTTP.
    from fdguard.exporter import WatchCollector, serve

    child = spawn(IDLE)
    w = Watcher(TargetSet([TargetSpec(SpecKind.PID, str(child.pid))]), clock=ManualClock())
    w.run(max_rounds=1)
    server = serve(WatchCollector(w.views), port=0)
    try:
        assert server.host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            body = r.read().decode()
    finally:
        server.close()
    line = next(x for x in body.splitlines() if x.startswith("process_open_fds{"))
    assert f'pid="{child.pid}"' in line
    assert float(line.rsplit(" ", 1)[1]) == len(os.listdir(f"/proc/{child.pid}/fd"))


def test_watch_fail_on_leak_with_a_short_period() -> None:
    # A launched program leaking 20 fds/s for 8 s; the detector scaled to a 3 s period.
    leak = ("import os,time\nt=time.monotonic()\nfor i in range(160):\n"
            "    os.open('/dev/null', os.O_RDONLY)\n"
            "    time.sleep(max(0.0, t + (i + 1) * 0.05 - time.monotonic()))\n")
    res = CliRunner().invoke(cli, ["watch", "--json", "--no-store", "--interval", "0.05",
                                   "--period", "3", "--fail-on-leak", "--",
                                   sys.executable, "-c", leak])
    assert res.exit_code == 10, res.output
    verdicts = [e for e in _lines(res.stdout) if e["type"] == "verdict" and e["kind"] is None]
    assert verdicts
    assert verdicts[0]["leak"] is True
    assert 0.7 * 20 * 3600 <= verdicts[0]["rate_per_hour"] <= 1.3 * 20 * 3600


def test_history_csv_is_what_analyze_reads(spawn, tmp_path: Path) -> None:
    child = spawn(IDLE)
    db = tmp_path / "fd.db"
    res = CliRunner().invoke(cli, ["watch", "--pid", str(child.pid), "--rounds", "5",
                                   "--interval", "0.05", "--snapshot-every", "0.1",
                                   "--no-resume", "--json", "--store", str(db)])
    assert res.exit_code == 0, res.output
    out = CliRunner().invoke(cli, ["history", "--store", str(db), "--pid", str(child.pid),
                                   "--csv"])
    assert out.exit_code == 0, out.output
    rows = list(csv.reader(out.stdout.splitlines()))
    header, body = rows[0], rows[1:]
    assert header[:2] == ["timestamp", "count"]
    assert "pipe" in header  # the kinds of its snapshots, forward-filled
    real = len(os.listdir(f"/proc/{child.pid}/fd"))
    assert 4 <= len(body) <= 5  # a sample before the first snapshot has no kinds yet
    assert {int(r[1]) for r in body} == {real}
    assert all(sum(int(x) for x in r[2:] if x) >= 1 for r in body)
    assert [float(r[0]) for r in body] == sorted(float(r[0]) for r in body)
    judged = CliRunner().invoke(cli, ["analyze", "-", "--json"], input=out.stdout)
    assert judged.exit_code == 0, judged.output
    doc = json.loads(judged.stdout)
    assert doc["leak"] is False
    assert doc["warmup_left"] > 0  # seconds of history: too early to tell
    assert "pipe" in doc["by_kind"]

    for args, what in ((["--csv"], "--csv needs --id, --pid or --target"),
                       (["--csv", "--json", "--pid", str(child.pid)], "not both")):
        bad = CliRunner().invoke(cli, ["history", "--store", str(db), *args])
        assert bad.exit_code == 2
        assert what in bad.stderr
