"""A real Node.js service strands CLOSE-WAIT sockets while its total fd count stays flat:
`fdguard watch` finds the leak in the per-kind series (tcp:CLOSE-WAIT) and not in the
total; the same service closing its side when the peer does raises nothing."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from fdguard.targets import SpecKind, TargetSet, TargetSpec
from fdguard.watch import WatchConfig, Watcher, WatchEvent, detector_config_for
from tests.integration.watching import watching

SERVICE = Path(__file__).parent.parent / "procs" / "close_wait_service.js"
SPARES = 300
RATE = 10.0  # connections the peer closes per second (so CLOSE-WAIT sockets, in leak mode)
# Scaled-down time as in test_watch_node: a 4 s "longest healthy cycle"; snapshots (which
# feed the per-kind series) every 0.2 s.
CONFIG = WatchConfig(
    interval=0.05,
    snapshot_every=0.2,
    suspicious_gap=0.2,
    rescan_every=1.0,
    detector=detector_config_for(4.0, bucket=0.1),
)


def _kind_leaks(events: list[WatchEvent]) -> list[WatchEvent]:
    return [e for e in events if e.type == "verdict" and e.data["kind"] is not None]


def _watch_while_closing(
    spawn: Any, node: str, mode: str, *, seconds: float
) -> tuple[Watcher, list[WatchEvent], list[int]]:
    """Start the service in `mode`, watch it in a thread while RATE connections a second
    are opened and closed by the peer (the test), for `seconds` at most, or until a
    verdict on CLOSE-WAIT sockets comes: (watcher, events, the service's fd count at
    each second)."""
    svc = spawn(["prlimit", "--nofile=1024:1024", node, str(SERVICE), mode, str(SPARES)])
    port = json.loads(svc.ready)["port"]
    events: list[WatchEvent] = []
    w = Watcher(
        TargetSet([TargetSpec(SpecKind.PID, str(svc.pid))]), config=CONFIG, on_event=events.append
    )
    totals: list[int] = []
    start = time.monotonic()
    with watching(w):
        for i in range(int(seconds * RATE)):
            delay = start + i / RATE - time.monotonic()  # absolute deadlines: a steady rate
            if delay > 0:
                time.sleep(delay)
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass  # the peer closes at once: the service sees end-of-stream
            if i % int(RATE) == 0:
                totals.append(len(list(Path(f"/proc/{svc.pid}/fd").iterdir())))
            if any(e.data["kind"] == "tcp:CLOSE-WAIT" for e in _kind_leaks(events)):
                break
    return w, events, totals


@pytest.mark.node
def test_close_wait_leak_under_a_flat_total_is_found_in_its_kind(spawn, node: str) -> None:
    w, events, totals = _watch_while_closing(spawn, node, "leak", seconds=30.0)
    # The total is flat (each stranded socket took a spare file's place) ...
    assert max(totals) - min(totals) <= 5, totals
    assert not [e for e in events if e.type == "verdict" and e.data["kind"] is None]
    # ... and the leak is found where it is: CLOSE-WAIT sockets, at about the rate driven.
    leaks = _kind_leaks(events)
    assert leaks, "no per-kind verdict"
    assert {e.data["kind"] for e in leaks} <= {"tcp", "tcp:CLOSE-WAIT"}
    cw = next(e for e in leaks if e.data["kind"] == "tcp:CLOSE-WAIT")
    assert cw.data["leak"] is True
    print(f"tcp:CLOSE-WAIT rate {cw.data['rate_per_hour'] / 3600:.1f}/s (driven {RATE}/s)")
    assert 0.5 * RATE * 3600 <= cw.data["rate_per_hour"] <= 1.5 * RATE * 3600
    [view] = w.views()
    assert view.by_tcp_state.get("CLOSE-WAIT", 0) >= 2 * RATE
    assert view.verdict is not None
    assert view.verdict.leak is False


@pytest.mark.node
def test_a_service_closing_its_side_raises_nothing_per_kind(spawn, node: str) -> None:
    # Three detector periods: long enough for every per-kind detector to judge.
    w, events, totals = _watch_while_closing(spawn, node, "healthy", seconds=12.0)
    assert max(totals) - min(totals) <= 5, totals
    assert not [e for e in events if e.type == "verdict"]
    [view] = w.views()
    assert view.by_tcp_state.get("CLOSE-WAIT", 0) <= 2
    judged = {k: v for k, v in view.kind_verdicts.items() if v is not None}
    assert {"tcp", "tcp:CLOSE-WAIT"} <= judged.keys()
    assert all(getattr(v, "warmup_left", 0) is None for v in judged.values())  # all judged
    assert not any(v.leak for v in judged.values())
