"""The detector on every class of bench/detect's seeded traces, fed through a ManualClock:
silent on each healthy class, fires after the onset (never before) on each leaking one."""

from __future__ import annotations

import math

import pytest

from fdguard.clock import ManualClock
from fdguard.detect import DetectorConfig, LeakDetector, LeakVerdict, analyze
from tests.unit.bench_modules import BENCH_DETECT, load

# The controls below switch one test off to show it is what holds; they also switch
# off the patience a far ETA earns (step 7), which holds many of these too.
PROMPT = {"patient_eta_seconds": 0.0}


traces = load("fdguard_bench_traces", BENCH_DETECT / "traces.py")


def replay(tr: traces.Trace) -> LeakVerdict:  # type: ignore[name-defined]
    """Feed the trace as a live watcher would: a manual clock advanced sample by sample."""
    clock = ManualClock(start=tr.times[0])
    det = LeakDetector(limit=tr.limit)
    v = det.verdict
    for t, c in zip(tr.times, tr.counts, strict=True):
        clock.set(t)
        v = det.update(clock.time(), c)
    return v


def first_alarm(tr: traces.Trace, config: DetectorConfig | None = None) -> LeakVerdict | None:  # type: ignore[name-defined]
    """The verdict at the moment the detector first declares a leak, if it does."""
    det = LeakDetector(limit=tr.limit, config=config)
    for t, c in zip(tr.times, tr.counts, strict=True):
        v = det.update(t, c)
        if v.leak:
            return v
    return None


def test_generator_is_deterministic_and_labelled() -> None:
    a, b = traces.make("storm_step", 3), traces.make("storm_step", 3)
    assert a == b
    assert a.leaking
    assert a.onset is not None
    assert a.rate_per_hour > 0
    assert a.counts[-1] == a.limit  # the leaking trace ends at EMFILE
    h = traces.make("daily", 3)
    assert not h.leaking
    assert max(h.counts) <= 0.75 * h.limit + 1
    assert set(traces.MAKERS) == set(traces.HEALTHY) | set(traces.LEAKING)


@pytest.mark.parametrize("cls", traces.HEALTHY)
def test_healthy_class_never_fires(cls: str) -> None:
    for seed in (0, 1):
        tr = traces.make(cls, seed)
        v = replay(tr)
        assert not v.leak, (cls, seed, v.reason)
        assert v.detected_at is None
        assert v.confidence > 0.5


@pytest.mark.parametrize("seed", [2075, 2328])
def test_step_then_slow_wander_is_not_a_leak(seed: int) -> None:
    """A one-off step two or three days back, then a slow wander of the level: the
    wander left besides the step passes the one-step test at a long lag, but the level
    hardly moved over the last period, so it is no leak (both fired before the
    `ongoing_share` test)."""
    tr = traces.make("step", seed)
    v = replay(tr)
    assert not v.leak, (seed, v.reason)
    assert v.detected_at is None
    # The rise over the old reference is there: it is the ongoing test (and the
    # half-day lag of the noise estimate) that holds.
    bare = DetectorConfig(ongoing_share=0, long_noise_seconds=0, **PROMPT)
    loose = analyze(tr.times, tr.counts, limit=tr.limit, config=bare)
    assert loose.leak


@pytest.mark.parametrize(
    ("cls", "seed"), [("warmup", 8361), ("step", 5026), ("warmup", 8090), ("step", 12111)]
)
def test_a_wander_reverting_over_hours_is_not_a_leak(cls: str, seed: int) -> None:
    """A plateau that wanders up by tens of fds for hours: at the smoothing lag (3 h)
    the noise estimate underrates it and, held for 2 h, the rise looked like a leak.
    The half-day lag of the noise estimate sees the whole wander, and 3 h of
    persistence outlasts it."""
    tr = traces.make(cls, seed)
    assert not replay(tr).leak
    # (The whole-day test, which came later, holds some of these too: off here.)
    bare = DetectorConfig(long_noise_seconds=0, persist=24, quiet_share=0, **PROMPT)
    assert analyze(tr.times, tr.counts, limit=tr.limit, config=bare).leak
    if seed != 8361:  # here the longer lag alone is what holds
        short = DetectorConfig(long_noise_seconds=0, quiet_share=0, **PROMPT)
        assert analyze(tr.times, tr.counts, limit=tr.limit, config=short).leak


@pytest.mark.parametrize("seed", [0, 13])
def test_a_churn_leak_too_slow_for_the_daily_comparison_is_a_steady_rise(seed: int) -> None:
    """Churn noise many times the leak's daily rise: found by the days-long line."""
    tr = traces.make("churn_leak", seed)
    first = first_alarm(tr)
    assert first is not None
    assert first.detected_at is not None
    assert first.detected_at >= tr.onset
    assert "rose steadily" in first.reason
    assert first.confidence > 0.6  # the fit's evidence, not the daily comparison's
    assert first.rate_per_hour is not None
    assert first.rate_per_hour > 0
    assert first.eta_seconds is not None
    # Under churn this heavy the rate is rough (0.88 or 3.15 fds/h for 1.04 on seed
    # 0, with or without patience); what the ETA says is within half of the truth.
    assert first.eta_seconds == pytest.approx(tr.times[-1] - first.detected_at, rel=0.5)
    # Without it the daily comparison finds them hours to days later:
    off = DetectorConfig(trend_min_seconds=0, **PROMPT)
    later = analyze(tr.times, tr.counts, limit=tr.limit, config=off).detected_at
    assert later is None or later - first.detected_at > 6 * 3600


@pytest.mark.parametrize("seed", [17002, 17003, 17005, 17064, 20150, 20483, 22103, 23063, 24017])
def test_a_busier_monday_is_not_a_leak(seed: int) -> None:
    """bench/detect's weekly class: the daily cycle at 30-80% on weekends. Monday's
    busy hours rise far above Sunday's, its quiet hours do not: more traffic.
    (17064: Sunday's swing is too small to count as a cycle, Friday's is not. 20483:
    Monday's climb puts the limit 12 h away, yet the quiet hours, already paired,
    still count. 20150, 22103, 24017: Sunday's fall or swing is a cycle only against
    a noise estimate that Monday's bigger swing does not inflate. 23063: a Wednesday
    against a Saturday whose small cycle the noise blurs; ranked by Saturday's level
    alone, the "quiet" hours are those where Saturday's noise was low.)"""
    tr = traces.make("weekly", seed)
    v = replay(tr)
    assert not v.leak, v.reason
    assert v.detected_at is None
    hour_for_hour = DetectorConfig(quiet_share=0, **PROMPT)
    assert analyze(tr.times, tr.counts, limit=tr.limit, config=hour_for_hour).leak


@pytest.mark.parametrize("seed", [17077, 17700, 17784, 18252, 18801])
def test_a_tilted_step_under_heavy_churn_is_not_a_steady_rise(seed: int) -> None:
    """A one-off step of about the churn's size, which noise tilted a little before
    and after: over days of hourly medians a line fits it better than a lone step and
    rises across both halves, but a step fitted together with the line takes the
    whole rise at its own place (bench/detect's churn_step false alarms)."""
    tr = traces.make("churn_step", seed)
    assert not replay(tr).leak
    without = DetectorConfig(trend_beside_step=-math.inf, **PROMPT)
    first = first_alarm(tr, without)
    assert first is not None
    assert "rose steadily" in first.reason  # it was the steady-rise test that fired


@pytest.mark.parametrize("seed", [17645, 18934, 27004, 27041])
def test_a_step_under_churn_with_the_limit_far_away_does_not_hold_for_a_day(seed: int) -> None:
    """bench/detect's churn_step false alarms, by the steady-rise test (17645, 27004)
    and by the daily comparison (18934, 27041): each would have announced the limit
    5 to 73 days away, which earns a day of patience, and neither test holds that long."""
    tr = traces.make("churn_step", seed)
    assert not replay(tr).leak
    first = first_alarm(tr, DetectorConfig(**PROMPT))
    assert first is not None
    assert first.eta_seconds is not None
    assert first.eta_seconds > 3 * 86400


@pytest.mark.parametrize("seed", [23, 53])
def test_a_leak_under_a_big_daily_cycle_is_not_taken_for_a_step(seed: int) -> None:
    """A 2-3 fd/h leak under a daily cycle of hundreds of fds: measured on the level,
    the cycle's own climb over two hours was the "biggest step" and the leak's rise
    did not stand out of it; measured on the day-over-day change it does."""
    tr = traces.make("linear", seed)
    v = replay(tr)
    assert v.leak, v.reason
    assert v.detected_at is not None
    assert v.detected_at >= tr.onset
    on_level = DetectorConfig(seasonal_steps=False)
    assert not analyze(tr.times, tr.counts, limit=tr.limit, config=on_level).leak


# Seeds of each leaking class that the default detector finds (the bench reports the
# detection rate over hundreds; these pin the behaviour of a few).
LEAK_SEEDS = {"linear": (1, 3), "error_burst": (0, 1), "storm_step": (0, 1), "churn_leak": (1, 3)}


@pytest.mark.parametrize("cls", traces.LEAKING)
def test_leaking_class_fires_after_the_onset_with_a_rate(cls: str) -> None:
    for seed in LEAK_SEEDS[cls]:
        tr = traces.make(cls, seed)
        v = replay(tr)
        assert v.leak, (cls, seed, v.reason)
        assert v.detected_at is not None
        assert tr.onset <= v.detected_at < tr.times[-1]
        assert v.rate_per_hour is not None
        assert v.rate_per_hour > 0
        assert v.eta_seconds is not None
        assert v.eta_seconds >= 0
        # Offline analysis is the same replay: same causal detection time.
        assert analyze(tr.times, tr.counts, limit=tr.limit).detected_at == v.detected_at


@pytest.mark.parametrize("seed", [5, 7, 8])
def test_linear_leak_rate_and_eta_are_close(seed: int) -> None:
    """The ETA announced at detection is within 25% of the real time to EMFILE.

    (Over the bench's 100 linear traces the median error is ~15%; these seeds pin it.
    linear/3 was pinned too until the whole-day test: a 34 fd/h leak that began on the
    first day under a daily cycle now waits for its quiet hours, is found 2.5 h before
    EMFILE, and announces 8.8 h, its rate right, its next peak come sooner.)"""
    tr = traces.make("linear", seed)
    first = first_alarm(tr)
    assert first is not None
    assert first.eta_seconds is not None
    assert first.rate_per_hour == pytest.approx(tr.rate_per_hour, rel=0.25)
    assert tr.counts[-1] == tr.limit
    real = tr.times[-1] - first.detected_at
    assert first.eta_seconds == pytest.approx(real, rel=0.25)
