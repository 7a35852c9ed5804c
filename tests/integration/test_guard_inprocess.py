"""The Supervisor as a library, in this process, with real workers: the ETA trigger
with an injected detector, and that a stopped supervisor leaves no worker, fd or handler."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from fdguard.guard import GuardConfig, GuardEvent, ProgramSpec, Readiness, Supervisor, Triggers
from fdguard.guard.triggers import Detector, Verdict

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


@dataclass(frozen=True)
class FakeVerdict:
    leak: bool
    eta_seconds: float | None
    rate_per_hour: float | None


class CountingDetector:
    """Says 'leak' with a falling ETA after the third sample: enough to test the wiring."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.samples: list[tuple[float, int]] = []

    def update(self, t: float, count: int) -> Verdict:
        self.samples.append((t, count))
        n = len(self.samples)
        return FakeVerdict(leak=n >= 3, eta_seconds=1000.0 / n, rate_per_hour=3600.0)


def test_eta_trigger_restarts_with_the_detectors_reason(tmp_path: Path) -> None:
    made: list[CountingDetector] = []

    def factory(limit: int | None) -> Detector:
        d = CountingDetector(limit)
        made.append(d)
        return d

    prog = ProgramSpec(name="s", argv=tuple(SLEEPER), readiness=Readiness.NONE, grace=2,
                       triggers=Triggers(eta_below=400), nofile=512)
    events: list[GuardEvent] = []
    sup: Supervisor

    def on_event(ev: GuardEvent) -> None:
        events.append(ev)
        if ev.kind == "restarted" and not any(e.kind == "stop" for e in events):
            sup.request_stop()

    handler_before = signal.getsignal(signal.SIGTERM)
    sup = Supervisor(GuardConfig("t", (prog,), interval=0.05), {}, runtime_dir=tmp_path,
                     on_event=on_event, detector_factory=factory)
    assert sup.run() == 0
    restart = next(e for e in events if e.kind == "restart")
    # ETA 1000/3 = 333 s < 400 s at the third sample.
    assert restart.reason == "leak ETA 333s < 400s at 3600 fds/h"
    assert made[0].limit == 512  # the detector knows the worker's limit
    assert made[0].samples[0][1] > 0  # it was fed real fd counts
    assert not sup.workers
    assert signal.getsignal(signal.SIGTERM) is handler_before  # handlers restored
    # Every worker started was reaped: the autouse fixture checks no child is left.
    started = {e.pid for e in events if e.kind in ("start", "restart")}
    exited = {e.pid for e in events if e.kind == "exit"}
    assert started == exited


def test_lifetime_trigger_with_jitter(tmp_path: Path) -> None:
    prog = ProgramSpec(name="life", argv=tuple(SLEEPER), readiness=Readiness.NONE, grace=2,
                       triggers=Triggers(max_lifetime=0.3, lifetime_jitter=0.2), workers=2)
    events: list[GuardEvent] = []
    sup: Supervisor

    def on_event(ev: GuardEvent) -> None:
        events.append(ev)
        if ev.kind == "restarted" and sum(e.kind == "restarted" for e in events) == 2:
            sup.request_stop()

    sup = Supervisor(GuardConfig("t", (prog,), interval=0.05), {}, runtime_dir=tmp_path,
                     on_event=on_event)
    assert sup.run() == 0
    reasons = [e.reason for e in events if e.kind == "restart"]
    assert len(reasons) >= 2
    assert all(r.startswith("max lifetime reached") for r in reasons), reasons
