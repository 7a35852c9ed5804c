"""`fdguard watch` as a service manager stops it: SIGTERM ends the watch cleanly (exit 0)
and leaves the detector's state in the store, and the next watch of the same process
goes on from it."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from fdguard.store import Store

IDLE = [sys.executable, "-c", "print('ready', flush=True); import sys; sys.stdin.read()"]


def test_sigterm_stops_the_watch_cleanly_and_the_next_one_resumes(spawn, tmp_path: Path) -> None:
    target = spawn(IDLE)
    db = tmp_path / "fd.db"
    argv = [sys.executable, "-m", "fdguard", "watch", "--pid", str(target.pid), "--json",
            "--interval", "0.05", "--store", str(db)]  # fmt: skip
    # The first line of --json is the "start" event: the watch is running.
    first = spawn(argv)
    assert json.loads(first.ready)["type"] == "start"
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=20) == 0
    with Store(db) as store:
        [t] = store.targets()
        saved = store.detector_state(t.id)
    assert saved is not None, "SIGTERM should have let the watch save its detector"
    # A bounded second watch of the same process starts from that state.
    second = spawn([*argv, "--rounds", "2"])
    start = json.loads(second.ready)
    assert start["type"] == "start"
    assert start["resumed_from"] == saved[0]
    assert second.proc.wait(timeout=20) == 0
