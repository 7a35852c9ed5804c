"""Seeded synthetic fd-count traces, healthy and leaking, for judging leak detectors.

Every trace is a pure function of (class name, seed): `make(cls, seed)` returns the
same `Trace` on every machine (only `random.Random` is used, no numpy). Samples are
one every `DT` seconds (2 min: what a scraper keeps after downsampling; the detector
buckets to 5 min anyway).

Healthy classes (5 days each, weekly 9; peaks stay under 75% of the limit, so a static 80%
rule is silent on them by construction and the comparison is about trend rules):
  stationary   noise around a level, plus a slow mean-reverting wander
  daily        a daily cycle (amplitude 20-100% of the base, varying +-15% a day)
  sawtooth     a pool that grows linearly and is recycled (period 10 min - 20 h)
  step         one-off step (a pool that grows once and stays), sharp or over <1 h
  bursty       Poisson bursts of short-lived connections on top of churn
  warmup       a ramp from near zero to a plateau (5 min - 3 h), then noise
  churn_step   a one-off step (0.3-1.5 churn sds) under churn_leak's heavy churn
  weekly       a daily cycle whose amplitude drops to 30-80% on weekends (9 days, so
               every trace holds a Monday: a cycle scaled up, not a floor raised)

Leaking classes (a healthy background - stationary or daily - then a leak from
`onset`, uniform in 0-36 h; the trace ends when the count reaches the soft limit,
i.e. at EMFILE, 1.5-5 days after the onset; the limit is derived from that):
  linear       a steady leak of 1-40 fd/h
  error_burst  fds leak only during error bursts (a few to 30 per burst)
  storm_step   each reconnect storm (every 1-6 h) spikes and leaves 3-40 fds behind
  churn_leak   a 1-10 fd/h leak under heavy churn (noise up to half the base, short bursts)
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

DT = 120.0
HOUR = 3600.0
HEALTHY_DAYS = 5  # long enough to exercise every lag the detector compares (4 days)
DAY = 86400.0

HEALTHY = ("stationary", "daily", "sawtooth", "step", "bursty", "warmup", "churn_step", "weekly")
LEAKING = ("linear", "error_burst", "storm_step", "churn_leak")


@dataclass(frozen=True)
class Trace:
    """One synthetic series with its ground truth."""

    cls: str
    seed: int
    times: list[float]
    counts: list[int]
    limit: int
    onset: float | None  # None: healthy
    rate_per_hour: float | None  # mean leak rate after the onset

    @property
    def leaking(self) -> bool:
        return self.onset is not None


class _Noise:
    """Gaussian noise plus an Ornstein-Uhlenbeck wander (slow level drift that reverts)."""

    def __init__(self, rng: random.Random, sigma: float, wander: float, tau: float) -> None:
        self.rng, self.sigma, self.wander, self.tau = rng, sigma, wander, tau
        self.x = 0.0

    def __call__(self) -> float:
        a = math.exp(-DT / self.tau)
        self.x = a * self.x + self.wander * math.sqrt(1 - a * a) * self.rng.gauss(0, 1)
        return self.x + self.rng.gauss(0, self.sigma)


def _times(duration: float) -> list[float]:
    return [i * DT for i in range(int(duration / DT))]


def _base_and_noise(rng: random.Random) -> tuple[float, _Noise]:
    base = math.exp(rng.uniform(math.log(20), math.log(2000)))
    sigma = rng.uniform(0.3, 0.05 * base + 1.5)
    wander = rng.uniform(0.0, 1.0) * sigma
    return base, _Noise(rng, sigma, wander, rng.uniform(HOUR, 3 * HOUR))


def _cycle(day_amp: list[float], phase: float) -> Callable[[float], float]:
    """A daily cosine from 0 (its trough) to `day_amp[d]` on day d, shifted by
    `phase`; a day's amplitude changes at its trough, so the cycle stays continuous."""

    def f(t: float) -> float:
        return day_amp[int((t + phase) // DAY)] * (
            0.5 - 0.5 * math.cos(2 * math.pi * (t + phase) / DAY)
        )

    return f


def _daily(rng: random.Random, base: float) -> Callable[[float], float]:
    amp = rng.uniform(0.2, 1.0) * base
    phase = rng.uniform(0, DAY)
    return _cycle([amp * rng.uniform(0.85, 1.15) for _ in range(12)], phase)


def _healthy_limit(rng: random.Random, counts: list[int]) -> int:
    return math.ceil(max(counts) / rng.uniform(0.3, 0.75))


def _finish(cls: str, seed: int, ts: list[float], raw: list[float], rng: random.Random) -> Trace:
    counts = [max(0, round(v)) for v in raw]
    return Trace(cls, seed, ts, counts, _healthy_limit(rng, counts), None, None)


# -- healthy ----------------------------------------------------------------------------


def stationary(seed: int) -> Trace:
    rng = random.Random(f"stationary/{seed}")
    base, noise = _base_and_noise(rng)
    ts = _times(HEALTHY_DAYS * DAY)
    return _finish("stationary", seed, ts, [base + noise() for _ in ts], rng)


def daily(seed: int) -> Trace:
    rng = random.Random(f"daily/{seed}")
    base, noise = _base_and_noise(rng)
    cyc = _daily(rng, base)
    ts = _times(HEALTHY_DAYS * DAY)
    return _finish("daily", seed, ts, [base + cyc(t) + noise() for t in ts], rng)


def sawtooth(seed: int) -> Trace:
    rng = random.Random(f"sawtooth/{seed}")
    base, noise = _base_and_noise(rng)
    period = math.exp(rng.uniform(math.log(600), math.log(20 * HOUR)))
    height = rng.uniform(0.2, 1.5) * base + 5
    offset = rng.uniform(0, period)
    ts = _times(HEALTHY_DAYS * DAY)
    raw = [base + height * (((t + offset) % period) / period) + noise() for t in ts]
    return _finish("sawtooth", seed, ts, raw, rng)


def step(seed: int) -> Trace:
    rng = random.Random(f"step/{seed}")
    base, noise = _base_and_noise(rng)
    at = rng.uniform(0.3 * DAY, 3.5 * DAY)
    height = rng.uniform(3 * noise.sigma + 3, 0.8 * base + 20)
    ramp = rng.choice([0.0, rng.uniform(60, HOUR)])
    ts = _times(HEALTHY_DAYS * DAY)

    def s(t: float) -> float:
        if t < at:
            return 0.0
        return height if ramp == 0 or t >= at + ramp else height * (t - at) / ramp

    return _finish("step", seed, ts, [base + s(t) + noise() for t in ts], rng)


def _bursts(
    rng: random.Random,
    duration: float,
    per_hour: float,
    lifetime: tuple[float, float] = (60, 30 * 60),
) -> list[tuple[float, float]]:
    out, t = [], 0.0
    while True:
        t += rng.expovariate(per_hour / HOUR)
        if t >= duration:
            return out
        out.append((t, rng.uniform(*lifetime)))


def bursty(seed: int) -> Trace:
    rng = random.Random(f"bursty/{seed}")
    base, noise = _base_and_noise(rng)
    ts = _times(HEALTHY_DAYS * DAY)
    extra = _burst_array(rng, HEALTHY_DAYS * DAY, rng.uniform(1, 6), (0.2 * base, 2.0 * base))
    return _finish("bursty", seed, ts, [base + extra(t) + noise() for t in ts], rng)


def warmup(seed: int) -> Trace:
    rng = random.Random(f"warmup/{seed}")
    base, noise = _base_and_noise(rng)
    tau = math.exp(rng.uniform(math.log(300), math.log(3 * HOUR))) / 3
    start = rng.uniform(3, 12)
    ts = _times(HEALTHY_DAYS * DAY)
    raw = [start + (base - start) * (1 - math.exp(-t / tau)) + noise() for t in ts]
    return _finish("warmup", seed, ts, raw, rng)


def _churn_background(
    rng: random.Random, base: float, noise: _Noise, duration: float
) -> Callable[[float], float]:
    """Heavy churn: fast noise of 10-50% of the base and frequent short bursts
    (lifetimes of 1-5 min) of up to twice the base."""
    noise.sigma = rng.uniform(0.1, 0.5) * base + 2
    return _burst_array(rng, duration, rng.uniform(2, 10), (0.3 * base, 2.0 * base), (60, 300))


def churn_step(seed: int) -> Trace:
    rng = random.Random(f"churn_step/{seed}")
    base, noise = _base_and_noise(rng)
    churn = _churn_background(rng, base, noise, HEALTHY_DAYS * DAY)
    at = rng.uniform(0.3 * DAY, 3.5 * DAY)
    height = rng.uniform(0.3, 1.5) * noise.sigma
    ts = _times(HEALTHY_DAYS * DAY)
    raw = [base + churn(t) + (height if t >= at else 0.0) + noise() for t in ts]
    return _finish("churn_step", seed, ts, raw, rng)


WEEKLY_DAYS = 9


def weekly(seed: int) -> Trace:
    rng = random.Random(f"weekly/{seed}")
    base, noise = _base_and_noise(rng)
    amp = rng.uniform(0.2, 1.0) * base
    weekend = rng.uniform(0.3, 0.8)
    phase = rng.uniform(0, DAY)
    first_day = rng.randrange(7)  # 0 = Monday
    day_amp = [
        amp * rng.uniform(0.85, 1.15) * (weekend if (first_day + d) % 7 >= 5 else 1.0)
        for d in range(WEEKLY_DAYS + 1)
    ]
    ts = _times(WEEKLY_DAYS * DAY)
    cyc = _cycle(day_amp, phase)
    return _finish("weekly", seed, ts, [base + cyc(t) + noise() for t in ts], rng)


# -- leaking ----------------------------------------------------------------------------


def _background(rng: random.Random) -> tuple[float, _Noise, Callable[[float], float]]:
    base, noise = _base_and_noise(rng)
    cyc = _daily(rng, base) if rng.random() < 0.5 else (lambda t: 0.0)
    return base, noise, cyc


def _leaking(
    cls: str,
    seed: int,
    rng: random.Random,
    base: float,
    noise: Callable[[], float],
    shape: Callable[[float], float],
    leaked: Callable[[float], float],
    rate: float,
    transient: Callable[[float], float] = lambda dt: 0.0,
) -> Trace:
    """Background `shape` + `leaked(t)` (+ `transient(t)`) fds from the onset, cut at
    the soft limit."""
    onset = rng.uniform(0, 36 * HOUR)
    t_ex = rng.uniform(1.5 * DAY, 5 * DAY)
    ts = _times(onset + t_ex + 3 * DAY)
    background = [shape(t) + noise() + (transient(t - onset) if t >= onset else 0.0) for t in ts]
    raw = [
        base + b + (leaked(t - onset) if t >= onset else 0.0)
        for t, b in zip(ts, background, strict=True)
    ]
    # The soft limit: what the leak leaves behind by t_ex on top of the highest peak
    # of everything else (traffic, storms' transient spikes), so the EMFILE comes
    # from the leak, not from one spike.
    limit = math.ceil(base + leaked(t_ex) + max(background))
    counts: list[int] = []
    for v in raw:
        c = max(0, round(v))
        if c >= limit:
            counts.append(limit)  # EMFILE: the service dies here; the trace ends.
            break
        counts.append(c)
    return Trace(cls, seed, ts[: len(counts)], counts, limit, onset, rate)


def linear(seed: int) -> Trace:
    rng = random.Random(f"linear/{seed}")
    base, noise, cyc = _background(rng)
    rate = math.exp(rng.uniform(0, math.log(40)))
    return _leaking("linear", seed, rng, base, noise, cyc, lambda dt: rate * dt / HOUR, rate)


def _staircase(
    rng: random.Random, events: list[tuple[float, float]], per_event: tuple[float, float]
) -> tuple[Callable[[float], float], Callable[[float], float], float]:
    """Permanent fds left by each event (spread over it) and its transient spike."""
    left = [rng.uniform(*per_event) for _ in events]
    spike = [rng.uniform(3.0, 30.0) for _ in events]
    starts = [s for s, _ in events]
    before = [0.0, *accumulate(left)]  # fds left by the events before event i

    def leaked(dt: float) -> float:
        i = bisect_right(starts, dt)  # events started by dt
        if i == 0:
            return 0.0
        s, d = events[i - 1]
        return before[i - 1] + left[i - 1] * min(1.0, (dt - s) / d)

    def transient(dt: float) -> float:
        i = bisect_right(starts, dt)
        if i == 0:
            return 0.0
        s, d = events[i - 1]
        return spike[i - 1] * math.sin(math.pi * (dt - s) / d) if dt < s + d else 0.0

    n = len(starts)
    span = (starts[-1] - starts[0]) / HOUR if n > 1 else 1.0
    return leaked, transient, sum(left) / max(span, 1.0)


def error_burst(seed: int) -> Trace:
    rng = random.Random(f"error_burst/{seed}")
    base, noise, cyc = _background(rng)
    per_hour = rng.uniform(0.3, 2.0)
    events = _bursts(rng, 7 * DAY, per_hour)
    events = [(s, min(d, 20 * 60)) for s, d in events] or [(HOUR, 600.0)]
    leaked, transient, rate = _staircase(rng, events, (2.0, 30.0))
    return _leaking("error_burst", seed, rng, base, noise, cyc, leaked, rate, transient)


def storm_step(seed: int) -> Trace:
    rng = random.Random(f"storm_step/{seed}")
    base, noise, cyc = _background(rng)
    events, t = [], 0.0
    while t < 7 * DAY:
        t += rng.uniform(HOUR, 6 * HOUR)
        events.append((t, rng.uniform(60, 600)))
    leaked, transient, rate = _staircase(rng, events, (3.0, 40.0))
    return _leaking(
        "storm_step",
        seed,
        rng,
        base,
        noise,
        cyc,
        leaked,
        rate,
        lambda dt: (0.2 * base + 5) * transient(dt) / 10,
    )


def _burst_array(
    rng: random.Random,
    duration: float,
    per_hour: float,
    size: tuple[float, float],
    lifetime: tuple[float, float] = (60, 30 * 60),
) -> Callable[[float], float]:
    """Extra short-lived fds of Poisson bursts that decay exponentially, on the DT grid."""
    extra = [0.0] * (int(duration / DT) + 1)
    for s, d in _bursts(rng, duration, per_hour, lifetime):
        height = rng.uniform(*size)
        for i in range(int(s / DT), min(len(extra), int((s + 3 * d) / DT) + 1)):
            if i * DT >= s:
                extra[i] += height * math.exp(-(i * DT - s) / d)
    return lambda t: extra[min(len(extra) - 1, int(t / DT))]


def churn_leak(seed: int) -> Trace:
    rng = random.Random(f"churn_leak/{seed}")
    base, noise = _base_and_noise(rng)
    churn = _churn_background(rng, base, noise, 8 * DAY)
    rate = math.exp(rng.uniform(0, math.log(10)))
    return _leaking("churn_leak", seed, rng, base, noise, churn, lambda dt: rate * dt / HOUR, rate)


MAKERS: dict[str, Callable[[int], Trace]] = {
    "stationary": stationary,
    "daily": daily,
    "sawtooth": sawtooth,
    "step": step,
    "bursty": bursty,
    "warmup": warmup,
    "weekly": weekly,
    "churn_step": churn_step,
    "linear": linear,
    "error_burst": error_burst,
    "storm_step": storm_step,
    "churn_leak": churn_leak,
}


def make(cls: str, seed: int) -> Trace:
    """The trace of class `cls` number `seed` (deterministic)."""
    return MAKERS[cls](seed)
