"""A watch primed with a process's own past from a real Prometheus judges at once: the leak
in the history is found within the first rounds, where a watch without it is still
learning; samples from before the process started are never used."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fdguard.cli.main import cli
from fdguard.inspect import snapshot
from fdguard.procfs.pids import read_ref, started_at
from fdguard.promsource import history_source
from fdguard.targets import SpecKind, TargetSet, TargetSpec
from fdguard.watch import WatchConfig, Watcher, WatchEvent, detector_config_for
from tests.conftest import free_port, installed, wait_until

RATE = 50.0  # fds the child leaks per second
# Scaled-down time as in test_watch_node: a 4 s "longest healthy cycle". No patience
# (at this scale a week of ETA is seconds; patience is test_detect's business).
CONFIG = WatchConfig(
    interval=0.05,
    snapshot_every=1.0,
    rescan_every=1.0,
    detector=dataclasses.replace(detector_config_for(4.0, bucket=0.1), patient_eta_seconds=0),
)
# Leaks RATE fds a second from the moment it is ready, up to 1,000 (20 s), then waits.
LEAKER = f"""
import os, sys, time
print("ready", flush=True)
held, t0 = [], time.monotonic()
while len(held) < 1000:
    held.append(os.open("/dev/null", os.O_RDONLY))
    time.sleep(max(0.0, t0 + len(held) / {RATE} - time.monotonic()))
sys.stdin.read()
"""


def _record(pid: int, seconds: float) -> tuple[list[tuple[float, int]], list[Any]]:
    """What fdguard export's scrapes would have kept: the process's fd count every 50 ms
    and its count of each kind (a classified snapshot)."""
    out, kinds = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.time()
        out.append((t, len(list(Path(f"/proc/{pid}/fd").iterdir()))))
        kinds.append((t, snapshot(pid, probe_sockets=False).by_kind))
        time.sleep(0.05)  # the scrape interval, not a wait for anything
    return out, kinds


@pytest.fixture
def leaker_with_history(spawn: Any, tmp_path: Path) -> tuple[Any, str, list[tuple[float, int]]]:
    """The leaking child, and a real Prometheus holding 5 s of its counts (backfilled
    with promtool), plus a sample from before the child started, which must not be
    used: (child, Prometheus URL, the recorded samples)."""
    child = spawn(["prlimit", "--nofile=4096:4096", sys.executable, "-c", LEAKER])
    past, kinds = _record(child.pid, 5.0)
    born = started_at(read_ref(child.pid))
    lines = ["# TYPE process_open_fds gauge",
             f'process_open_fds{{pid="{child.pid}"}} 99999 {born - 1.0:.3f}']
    lines += [f'process_open_fds{{pid="{child.pid}"}} {n} {t:.3f}' for t, n in past]
    lines.append("# TYPE fdguard_open_fds_by_kind gauge")
    for kind in sorted({k for _, by in kinds for k in by}):
        lines += [f'fdguard_open_fds_by_kind{{kind="{kind}",pid="{child.pid}"}} '
                  f"{by.get(kind, 0)} {t:.3f}" for t, by in kinds]
    (tmp_path / "h.om").write_text("\n".join([*lines, "# EOF", ""]))
    subprocess.run([installed("promtool", "prometheus"), "tsdb", "create-blocks-from",
                    "openmetrics", "--quiet", str(tmp_path / "h.om"), str(tmp_path / "tsdb")],
                   check=True, capture_output=True, timeout=60)
    (tmp_path / "p.yml").write_text("global: {scrape_interval: 1m}\n")
    port = free_port()
    spawn([installed("prometheus", "prometheus"), f"--config.file={tmp_path / 'p.yml'}",
           f"--storage.tsdb.path={tmp_path / 'tsdb'}", "--log.level=warn",
           f"--web.listen-address=127.0.0.1:{port}"], ready=False)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
            return resp.status == 200

    wait_until("prometheus to be ready", ready, ignore=(OSError,), interval=0.2)
    return child, url, past


def _watch(pid: int, rounds: int, **kw: Any) -> tuple[list[WatchEvent], Any]:
    """Watch `pid` for `rounds`: (its events, the watcher's views at the end)."""
    events: list[WatchEvent] = []
    w = Watcher(TargetSet([TargetSpec(SpecKind.PID, str(pid))]), config=CONFIG,
                on_event=events.append, **kw)
    w.run(max_rounds=rounds)
    return events, w.views()


def test_a_watch_primed_from_prometheus_judges_at_once(
    leaker_with_history: tuple[Any, str, list[tuple[float, int]]],
) -> None:
    child, url, past = leaker_with_history
    # Without history: a period to learn before any verdict.
    cold, _ = _watch(child.pid, 3)
    first = next(e for e in cold if e.type == "sample")
    assert first.data["warmup_left"] > 3.0
    assert not [e for e in cold if e.type == "verdict"]

    primed, views = _watch(child.pid, 10, history=history_source(url))
    [start] = [e for e in primed if e.type == "start"]
    used = start.data["history"]
    # Every recorded sample, as scraped; not the one from before the process started
    # (99,999 fds: it would be a leak of its own).
    assert used["samples"] == len(past)
    assert used["since"] >= started_at(read_ref(child.pid))
    samples = [e for e in primed if e.type == "sample"]
    assert samples[0].data["warmup_left"] is None  # judged from the first sample
    leaks = [e for e in primed if e.type == "verdict" and e.data["kind"] is None]
    assert leaks, "the leak in the history was not found"
    assert leaks[0].data["leak"] is True
    rate = leaks[0].data["rate_per_hour"] / 3600
    assert 0.75 * RATE <= rate <= 1.25 * RATE, rate
    # The per-kind series fdguard export publishes came too: the leak is of chardevs
    # (/dev/null), judged at the first snapshot; the pipes are judged and steady.
    assert used["kinds"] >= 2
    by_kind = [e for e in primed if e.type == "verdict" and e.data["kind"] is not None]
    assert [(e.data["kind"], e.data["leak"]) for e in by_kind] == [("chardev", True)]
    [view] = views
    pipes = view.kind_verdicts["pipe"]
    assert pipes.leak is False
    assert getattr(pipes, "warmup_left", 0) is None


def test_history_that_cannot_be_had_is_said_and_the_watch_goes_on(
    leaker_with_history: tuple[Any, str, list[tuple[float, int]]],
) -> None:
    child, url, _past = leaker_with_history
    events, _ = _watch(child.pid, 2, history=history_source(url, 'process_open_fds{pid="1"}x'))
    [start] = [e for e in events if e.type == "start"]
    assert "rejected" in start.data["history"]["error"]
    assert [e.type for e in events].count("sample") == 2
    nothing, _ = _watch(child.pid, 2, history=history_source(url, 'up{job="none-{pid}"}'))
    [start] = [e for e in nothing if e.type == "start"]
    assert "matched 0 series" in start.data["history"]["error"]
    # The CLI says it in the start line.
    res = CliRunner().invoke(cli, ["watch", "--pid", str(child.pid), "--rounds", "1",
                                   "--no-store", "--history-from", url, "--history-query",
                                   'up{job="none-{pid}"}'])
    assert res.exit_code == 0, res.output
    assert f"start: pid {child.pid} (python3); no history: history: " in res.stdout
    bad = CliRunner().invoke(cli, ["watch", "--pid", str(child.pid), "--rounds", "1",
                                   "--history-query", "x"])
    assert bad.exit_code == 2
    assert "--history-query needs --history-from URL" in bad.stderr
    ftp = CliRunner().invoke(cli, ["watch", "--pid", str(child.pid), "--rounds", "1",
                                   "--history-from", "ftp://127.0.0.1:9"])
    assert ftp.exit_code == 2
    assert "--history-from must be an http(s) URL" in ftp.stderr
