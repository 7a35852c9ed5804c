"""Properties of the detector, fuzzed with hypothesis: a constant offset changes nothing,
a strictly healthy stationary series never fires, a detection never moves earlier when
the future changes (causality)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fdguard.detect import LeakDetector, analyze

HOUR = 3600
EVERY = 300  # one sample per 5 min keeps each example fast
# Each example replays days of samples (~0.1 s): no shrinking phase, which would
# replay hundreds more; a failure still prints its (already small) example.
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


def make_series(
    seed: int, base: int, noise: int, rate: float, days: float, burst_every: int
) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    times, counts = [], []
    for i in range(int(days * 86400 / EVERY)):
        t = i * EVERY
        burst = rng.randint(0, 3 * noise + 10) if burst_every and i % burst_every == 0 else 0
        counts.append(float(base + int(rate * t / HOUR) + rng.randint(-noise, noise) + burst))
        times.append(float(t))
    return times, counts


series_args = st.tuples(
    st.integers(0, 10_000),  # seed
    st.integers(0, 3000),  # base
    st.integers(0, 40),  # noise half-width
    st.sampled_from([0.0, 0.5, 2.0, 10.0]),  # leak rate, fds per hour
    st.sampled_from([2.0, 3.0]),  # days
    st.sampled_from([0, 7, 31]),  # a burst every N samples (0: none)
)


@SETTINGS
@given(args=series_args, offset=st.integers(-1000, 10_000))
def test_a_constant_offset_does_not_change_the_verdict(
    args: tuple[int, int, int, float, float, int], offset: int
) -> None:
    times, counts = make_series(*args)
    shifted = [c + offset for c in counts]
    if min(shifted) < 0:
        shifted = [c - min(shifted) for c in shifted]
    a = analyze(times, counts, limit=100_000)
    b = analyze(times, shifted, limit=100_000)
    assert a.leak == b.leak
    assert a.detected_at == b.detected_at
    assert a.rate_per_hour == b.rate_per_hour
    assert a.confidence == pytest.approx(b.confidence, rel=1e-9)  # float rounding only


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    base=st.integers(0, 5000),
    noise=st.integers(0, 200),
    burst_every=st.sampled_from([0, 3, 12, 50]),
)
def test_a_stationary_series_never_fires(
    seed: int, base: int, noise: int, burst_every: int
) -> None:
    times, counts = make_series(seed, base, noise, 0.0, 3.0, burst_every)
    det = LeakDetector(limit=base + 10 * noise + 100)
    for t, c in zip(times, counts, strict=True):
        v = det.update(t, c)
        assert not v.leak, (t, v.reason)
    assert det.verdict.detected_at is None
    assert det.verdict.eta_seconds is None


@SETTINGS
@given(args=series_args, cut=st.floats(0.3, 1.0), tail=st.integers(-500, 500))
def test_detection_is_causal(
    args: tuple[int, int, int, float, float, int], cut: float, tail: int
) -> None:
    """Changing the samples after a detection never moves or cancels that detection."""
    times, counts = make_series(*args)
    full = analyze(times, counts)
    if full.detected_at is None:
        return
    n = next(i for i, t in enumerate(times) if t >= full.detected_at) + 1
    k = max(n, int(len(times) * cut))
    changed = counts[:k] + [max(0.0, c + tail) for c in counts[k:]]
    assert analyze(times, changed).detected_at == full.detected_at
    assert analyze(times[:n], counts[:n]).detected_at == full.detected_at
