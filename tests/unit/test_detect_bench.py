"""bench/detect/run.py's `watch` column: the first alert of `fdguard watch`'s default rules
over the detector's verdicts, on real traces of the bench's generator."""

from __future__ import annotations

from typing import Any

from tests.unit.bench_modules import BENCH_DETECT, load

# run.py puts its own folder on sys.path to import traces.py, as when run as a script.
run = load("fdguard_bench_run", BENCH_DETECT / "run.py")


def _third_in_a_row_at(share: float, tr: Any) -> float | None:
    """When the count has been at or above `share` of the limit on 3 samples in a row
    (`tr`: a bench/detect trace)."""
    level, streak = share * tr.limit, 0
    for t, c in zip(tr.times, tr.counts, strict=True):
        streak = streak + 1 if c >= level else 0
        if streak == 3:
            return float(t)
    return None


def test_a_leak_the_detector_misses_is_alerted_on_by_the_threshold_rule() -> None:
    # A big daily cycle near the limit: EMFILE at 58 h; the leak never stands out.
    tr = run.traces.make("storm_step", 17026)
    detected, eta, alerted = run.fdguard_alarm(tr)
    assert detected is None
    assert eta is None
    assert alerted is not None
    assert alerted == _third_in_a_row_at(0.8, tr)
    s80 = run.static_alarm(tr)
    assert s80 is not None
    assert s80 <= alerted


def test_a_leak_the_detector_finds_first_is_alerted_on_when_it_is_declared() -> None:
    tr = run.traces.make("linear", 4)  # detected at 26.9 h, 80% held from 73.4 h
    detected, eta, alerted = run.fdguard_alarm(tr)
    assert detected is not None
    assert eta is not None
    assert eta > 0
    threshold = _third_in_a_row_at(0.8, tr)
    assert threshold is not None
    assert detected < threshold
    assert alerted == detected


def test_a_healthy_trace_raises_no_alert() -> None:
    detected, _, alerted = run.fdguard_alarm(run.traces.make("weekly", 0))
    assert detected is None
    assert alerted is None
