"""LeakDetector on hand-made series fed through a ManualClock: verdict, rate, ETA, API."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable
from itertools import pairwise

import pytest

from fdguard.clock import ManualClock
from fdguard.detect import (
    DetectorConfig,
    LeakDetector,
    LeakVerdict,
    analyze,
    analyze_by_kind,
    eta_against,
    steady_rise,
    theil_sen,
)
from fdguard.errors import UsageError

HOUR = 3600.0


def feed(det: LeakDetector, clock: ManualClock, hours: float, level, every: float = 60.0):
    """Sample `level(t)` every `every` seconds of a manual clock for `hours`."""
    v = det.verdict
    for _ in range(int(hours * HOUR / every)):
        t = clock.time()
        v = det.update(t, level(t))
        clock.sleep(every)
    return v


def _slow_leak(
    limit: int | None, hours: float, config: DetectorConfig | None = None
) -> LeakVerdict:
    """1 fd/hour from 200, with noise of +-3 fds, sampled every minute (detected_at
    counts from the first sample)."""
    clock = ManualClock(start=0.0, wall_offset=1_700_000_000.0)
    t0 = clock.time()
    rng = random.Random(1)
    det = LeakDetector(limit=limit, config=config)
    v = feed(det, clock, hours, lambda t: 200 + (t - t0) / HOUR + rng.randint(-3, 3))
    assert v.detected_at is None or v.detected_at >= t0
    return dataclasses.replace(v, detected_at=v.detected_at and v.detected_at - t0)


def test_slow_linear_leak_is_found_with_rate_and_eta() -> None:
    v = _slow_leak(300, 48)
    assert v.leak
    assert v.detected_at is not None
    # It needs one full day to rule out a daily cycle, and not much more.
    assert 24 * HOUR <= v.detected_at <= 32 * HOUR
    assert v.rate_per_hour == pytest.approx(1.0, rel=0.15)
    level_now = 200 + 48
    assert v.eta_seconds == pytest.approx((300 - level_now) * HOUR, rel=0.2)
    assert 0.5 < v.confidence <= 1.0
    assert "never came back" in v.reason


def test_a_leak_with_the_limit_far_away_is_confirmed_for_a_day() -> None:
    """The same leak with the limit a month away (1024) must hold a day instead of
    3 hours before it is declared; with no limit known, nothing says there is time."""
    prompt = _slow_leak(300, 48).detected_at
    assert prompt is not None
    pending = _slow_leak(1024, prompt / HOUR + 2)
    assert not pending.leak
    assert "days away at that rate: confirming for longer" in pending.reason
    assert pending.confirming
    assert pending.to_json()["confirming"] is True
    assert not _slow_leak(1024, 12).confirming  # nothing to confirm yet
    far = _slow_leak(1024, 72)
    assert far.leak
    assert not far.confirming  # called
    assert far.detected_at is not None
    assert prompt + 20 * HOUR <= far.detected_at <= prompt + 22 * HOUR  # 24 h, not 3
    assert far.eta_seconds == pytest.approx((1024 - 272) * HOUR, rel=0.2)
    unpatient = _slow_leak(1024, 48, PROMPT).detected_at
    assert unpatient is not None
    assert abs(unpatient - prompt) <= 3600  # (at 300, a dip of the rate can cost a bucket)
    assert _slow_leak(None, 48).detected_at == unpatient


def test_flat_noisy_series_never_fires() -> None:
    clock = ManualClock()
    rng = random.Random(2)
    det = LeakDetector(limit=1024)
    v = feed(det, clock, 72, lambda t: 300 + rng.gauss(0, 8))
    assert not v.leak
    assert v.detected_at is None
    assert v.eta_seconds is None
    assert v.confidence > 0.9


def test_nothing_is_declared_in_the_first_period() -> None:
    det = LeakDetector(limit=10_000)
    for i in range(23 * 60):
        v = det.update(i * 60.0, 100 + i)  # a steep rise, but could be a morning ramp
    assert not v.leak
    assert "warming up" in v.reason


def test_the_first_period_says_how_long_until_it_judges() -> None:
    det = LeakDetector(limit=1000)
    assert det.verdict.warmup_left == 86400.0
    clock = ManualClock(start=0.0)
    lefts = []
    for _hour in range(26):
        v = feed(det, clock, 1, lambda t: 100)
        lefts.append(v.warmup_left)
        assert (v.to_json()["warmup_left"] is None) == (v.warmup_left is None)
    judged = [x is None for x in lefts]
    # It counts down by an hour each hour, and judges once the bucket that ends a
    # whole period after the first sample has closed (in the 25th hour).
    assert judged == [False] * 24 + [True] * 2
    assert all(a - b == pytest.approx(3600.0) for a, b in pairwise(lefts[:24]))
    assert lefts[23] == 300.0  # one bucket to go
    assert not v.leak
    assert "warming up" not in v.reason


def test_verdict_json_has_the_contract_fields() -> None:
    v = analyze([0, 60, 120], [5, 5, 6], limit=100)
    doc = v.to_json()
    assert {"leak", "detected_at", "rate_per_hour", "eta_seconds", "confidence"} <= doc.keys()
    assert doc["leak"] is False
    assert doc["samples"] == 3
    json.dumps(doc)
    assert isinstance(v, LeakVerdict)


def test_between_judgements_each_sample_only_bumps_the_sample_count() -> None:
    det = LeakDetector(limit=100)
    first = det.update(0.0, 5)
    for i in range(2, 6):  # all in the first bucket: no judgement in between
        v = det.update(float(i), 5)
        assert v == dataclasses.replace(first, samples=i)
        assert hash(v) == hash(dataclasses.replace(first, samples=i))
        with pytest.raises(dataclasses.FrozenInstanceError):
            v.samples = 0  # type: ignore[misc]
    assert first.samples == 1


def test_samples_out_of_order_or_not_finite_are_refused() -> None:
    det = LeakDetector()
    det.update(10.0, 1)
    with pytest.raises(UsageError, match="time order"):
        det.update(5.0, 1)
    with pytest.raises(UsageError, match="finite"):
        det.update(20.0, float("nan"))
    with pytest.raises(UsageError, match="timestamps"):
        analyze([1, 2], [1])


def test_config_is_validated() -> None:
    with pytest.raises(UsageError):
        DetectorConfig(bucket_seconds=0)
    with pytest.raises(UsageError):
        DetectorConfig(period_seconds=60)
    with pytest.raises(UsageError):
        DetectorConfig(persist=0)
    with pytest.raises(UsageError, match="trend_quantile"):
        DetectorConfig(trend_quantile=1.0)
    with pytest.raises(UsageError, match="trend_max_seconds"):
        DetectorConfig(trend_max_seconds=5 * 86400)


def test_theil_sen_ignores_outliers() -> None:
    xs = [float(i) for i in range(20)]
    ys = [2 * x + 1 for x in xs]
    ys[3] = 500.0
    ys[11] = -400.0
    slope, intercept = theil_sen(xs, ys)
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(1.0)
    with pytest.raises(ValueError, match="distinct"):
        theil_sen([1.0, 1.0], [2.0, 3.0])


def test_minimum_floor_and_quantile_floor_agree_on_a_clean_leak() -> None:
    times = [i * 120.0 for i in range(3 * 720)]
    counts = [50.0 + t / 1800 for t in times]  # 2 fds/hour, no noise
    by_min = analyze(times, counts, config=DetectorConfig(floor_quantile=0.0))
    by_q = analyze(times, counts)
    assert by_min.leak
    assert by_q.leak
    assert by_min.rate_per_hour == pytest.approx(2.0, rel=0.05)
    assert by_q.rate_per_hour == pytest.approx(2.0, rel=0.05)
    with pytest.raises(UsageError):
        DetectorConfig(floor_quantile=0.7)


def test_a_burst_shorter_than_the_floor_window_cannot_raise_the_floor() -> None:
    det = LeakDetector()
    for i in range(3 * 24 * 60):
        t = i * 60.0
        # Every 2 h, 40 minutes of +500 fds: busy, but the floor stays at 100.
        det.update(t, 600 if (i % 120) < 40 else 100)
    assert not det.verdict.leak
    assert det.verdict.floor == 100


def test_per_kind_analysis_and_eta_against_the_total_headroom() -> None:
    times = [i * 300.0 for i in range(3 * 288)]
    close_wait = [2.0 + i // 12 for i in range(len(times))]  # 1 per hour
    estab = [400.0 - i // 12 for i in range(len(times))]  # total stays flat
    total = [a + b for a, b in zip(close_wait, estab, strict=True)]
    assert not analyze(times, total, limit=1024).leak
    kinds = analyze_by_kind(times, {"close_wait": close_wait, "estab": estab}, 1024)
    assert kinds["close_wait"].leak
    assert not kinds["estab"].leak
    eta = eta_against(kinds["close_wait"], total_level=402, limit=1024)
    assert eta == pytest.approx((1024 - 402) * HOUR, rel=0.1)
    assert eta_against(kinds["estab"], 402, 1024) is None
    assert eta_against(kinds["close_wait"], 2000, 1024) == 0.0


def test_steady_rise_tells_a_line_from_a_step_and_a_cycle() -> None:
    rng = random.Random(3)
    noise = [rng.gauss(0, 10) for _ in range(96)]
    line = steady_rise([100 + 0.8 * i + e for i, e in enumerate(noise)])
    step = steady_rise([100 + (60 if i >= 48 else 0) + e for i, e in enumerate(noise)])
    wave = [30 * math.sin(2 * math.pi * i / 24) for i in range(96)]
    cycle = steady_rise([100 + w + e for w, e in zip(wave, noise, strict=True)])
    flat = steady_rise([100 + e for e in noise])
    assert line is not None
    assert step is not None
    assert cycle is not None
    assert flat is not None
    assert line.tstat > 10
    assert line.structure < 0.3
    assert line.line_gain > 0
    assert line.per_block == pytest.approx(0.8, rel=0.2)
    assert step.line_gain < 0  # two flat levels fit a step better than any line
    assert cycle.structure > 0.3  # a line leaves a cycle in its residuals
    assert abs(flat.tstat) < 4.5
    assert steady_rise([1.0] * 11) is None


PROMPT = DetectorConfig(patient_eta_seconds=0)
"""No patience however far the limit (step 7): for tests of the other steps."""


def _churn(rng: random.Random, extra: Callable[[float], float]) -> Callable[[float], int]:
    """A series under heavy churn (sd 200 fds around 1,000), one sample per 2 min."""
    return lambda t: round(1000 + extra(t) + rng.gauss(0, 200))


def _replay(
    level, days: float, config: DetectorConfig | None = None, limit: int = 100_000
) -> LeakVerdict:
    det = LeakDetector(limit=limit, config=config)
    v = det.verdict
    for i in range(int(days * 86400 / 120)):
        v = det.update(i * 120.0, level(i * 120.0))
    return v


def test_a_slow_leak_under_heavy_churn_is_found_by_the_steady_rise_test() -> None:
    """2 fds/hour under noise of 200 fds: the rise per day stays inside the noise of
    the day-over-day comparison, but days of it make a line out of the noise."""
    # (The limit is years away at this rate, which earns a day of patience: off here.)
    v = _replay(_churn(random.Random(7), lambda t: 2.0 * t / HOUR), 5, PROMPT)
    assert v.leak
    assert v.detected_at is not None
    assert v.detected_at >= 48 * HOUR  # the test needs two days of history
    assert v.rate_per_hour is not None
    assert v.rate_per_hour == pytest.approx(2.0, rel=0.5)
    # ...and it is that test that found it:
    off = DetectorConfig(trend_min_seconds=0, patient_eta_seconds=0)
    assert not _replay(_churn(random.Random(7), lambda t: 2.0 * t / HOUR), 5, off).leak


@pytest.mark.parametrize("seed", [8, 10, 11])
def test_a_one_off_step_under_heavy_churn_is_not_a_steady_rise(seed: int) -> None:
    """A pool growing once by 150 fds under the same churn: a line through it is
    significant, but two flat levels fit it better, or it rose across one half only."""

    def pool(t: float) -> float:
        return 150.0 if t > 2 * 86400 else 0.0

    v = _replay(_churn(random.Random(seed), pool), 5)
    assert not v.leak, v.reason
    loose = DetectorConfig(
        trend_line_gain=-math.inf,
        trend_halves=-math.inf,
        trend_beside_step=-math.inf,
        patient_eta_seconds=0,
    )
    stepped = _replay(_churn(random.Random(seed), pool), 5, loose)
    assert stepped.leak  # without the line-vs-step, halves and beside-step tests it would fire


def _weekdays(leak_per_hour: float) -> Callable[[float], float]:
    """A daily cycle of 400 fds over a floor of 300, at half that on Saturday and
    Sunday (the series starts on a Thursday), plus an optional leak from day 2."""
    rng = random.Random(12)

    def count(t: float) -> float:
        day = int(t // 86400)
        amp = 200.0 if day % 7 in (2, 3) else 400.0
        cycle = amp * (0.5 - 0.5 * math.cos(2 * math.pi * t / 86400))
        return 300 + cycle + leak_per_hour * max(0.0, t - 2 * 86400) / HOUR + rng.gauss(0, 5)

    return count


def test_more_traffic_on_monday_is_not_a_leak_but_a_leak_still_is() -> None:
    """Monday's busy hours rise 200 fds over Sunday's and its quiet hours do not: the
    cycle grew, the floor did not. A leak of 4 fds/h lifts every hour alike, and the
    whole-day test does not delay it."""
    v = _replay(_weekdays(0.0), 6.5)
    assert not v.leak, v.reason
    # (With the limit far away, a day of patience holds Monday too: off here.)
    v = _replay(_weekdays(0.0), 6.5, PROMPT)
    assert not v.leak, v.reason
    anyhour = DetectorConfig(quiet_share=0, patient_eta_seconds=0)
    monday = _replay(_weekdays(0.0), 6.5, anyhour)
    assert monday.leak  # compared hour for hour alone, Monday looks like a leak
    assert monday.detected_at is not None
    assert 4 * 86400 < monday.detected_at < 5 * 86400
    leak = _replay(_weekdays(4.0), 6.5, PROMPT)
    assert leak.leak, leak.reason
    assert leak.detected_at is not None
    assert leak.detected_at < 4.5 * 86400  # the weekend's dip hid it until Monday...
    assert leak.detected_at == _replay(_weekdays(4.0), 6.5, anyhour).detected_at  # ...not this


def _cycle_then_leak(limit: int, config: DetectorConfig | None = None) -> float | None:
    """A daily cycle of 400 fds over 300, a 30 fd/h leak from hour 26: when is it found?"""
    rng = random.Random(4)

    def count(t: float) -> float:
        cycle = 400 * (0.5 - 0.5 * math.cos(2 * math.pi * t / 86400))
        return 300 + cycle + 30 * max(0.0, t - 26 * HOUR) / HOUR + rng.gauss(0, 5)

    return _replay(count, 3, config, limit).detected_at  # latched: the first declaration


def test_a_leak_that_will_exhaust_within_hours_does_not_wait_for_the_quiet_hours() -> None:
    """On its second day a rise under a cycle waits for quiet hours to compare; with
    the limit hours away at its rate, it is declared as soon as without that test."""
    anyhour = _cycle_then_leak(1400, DetectorConfig(quiet_share=0))
    assert anyhour is not None
    assert _cycle_then_leak(1400) == anyhour  # the limit is near: no waiting
    roomy = _cycle_then_leak(100_000, PROMPT)  # far: the quiet hours are compared first
    assert roomy is not None
    assert anyhour + 6 * HOUR < roomy < 3 * 86400


def test_a_restored_detector_goes_on_exactly_as_one_never_stopped() -> None:
    """Saved after 25 h (through JSON), restored on a clock 1.5e6 s ahead: fed the rest
    of the series on that clock, it declares the leak at the same moment, shifted, with
    the same rate, as the detector that saw the whole series."""
    rng = random.Random(5)
    series = [(i * 60.0, 300 + i / 30 + rng.gauss(0, 5)) for i in range(72 * 60)]
    whole = LeakDetector(limit=2000)
    for t, c in series:
        whole.update(t, c)
    first = LeakDetector(limit=2000)
    for t, c in series[: 25 * 60]:
        first.update(t, c)
    assert not first.verdict.leak
    shift = 5000 * 300.0  # whole buckets
    resumed = LeakDetector.restore(json.loads(json.dumps(first.state())), shift=shift)
    v = resumed.verdict
    for t, c in series[25 * 60 :]:
        v = resumed.update(t + shift, c)
    assert whole.verdict.leak
    assert whole.verdict.detected_at is not None
    assert v.detected_at == whole.verdict.detected_at + shift
    assert v.rate_per_hour == whole.verdict.rate_per_hour
    assert v.reason == whole.verdict.reason
    assert v.samples == whole.verdict.samples
    with pytest.raises(UsageError, match="saved detector state"):
        LeakDetector.restore({"config": {}})
