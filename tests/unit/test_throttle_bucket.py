"""The throttle's token bucket and limits, on an injected clock (no sockets, no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from fdguard.errors import UsageError
from fdguard.guard.throttle import Limiter, ThrottleSpec, ThrottleStats, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_then_paces() -> None:
    clock = Clock()
    b = TokenBucket(rate=10.0, burst=3, clock=clock)
    assert [b.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take() == pytest.approx(0.1)  # next token in 1/rate seconds
    clock.now += 0.05
    assert b.take() == pytest.approx(0.05)
    clock.now += 0.05
    assert b.take() == 0.0


def test_bucket_never_saves_more_than_the_burst() -> None:
    clock = Clock()
    b = TokenBucket(rate=100.0, burst=2, clock=clock)
    clock.now += 3600
    assert [b.take() for _ in range(2)] == [0.0, 0.0]
    assert b.take() > 0


def test_admitted_count_over_time_matches_the_rate() -> None:
    clock = Clock()
    b = TokenBucket(rate=50.0, burst=1, clock=clock)
    admitted = 0
    for _ in range(10_000):  # a client trying every millisecond for 10 s
        if b.take() == 0.0:
            admitted += 1
        clock.now += 0.001
    assert admitted == pytest.approx(1 + 50 * 10, abs=1)


def test_concurrency_cap_and_queue_bound() -> None:
    async def scenario() -> tuple[list[str | None], ThrottleStats]:
        stats = ThrottleStats()
        lim = Limiter(ThrottleSpec(max_conns=2, queue=1, queue_timeout=5.0), stats)
        got = [await lim.admit(), await lim.admit()]
        waiter = asyncio.ensure_future(lim.admit())  # queued: the one queue place
        await asyncio.sleep(0)
        got.append(await lim.admit())  # queue full: refused at once
        lim.release()
        got.append(await waiter)  # the release lets the queued one in
        await lim.close()
        return got, stats

    got, stats = asyncio.run(scenario())
    assert got == [None, None, "queue full", None]
    assert stats.admitted == 3
    assert stats.active == 2
    assert stats.peak_active == 2
    assert stats.refused_queue_full == 1


def test_queue_timeout_refuses() -> None:
    async def scenario() -> tuple[str | None, ThrottleStats]:
        stats = ThrottleStats()
        lim = Limiter(ThrottleSpec(max_conns=1, queue=4, queue_timeout=0.05), stats)
        assert await lim.admit() is None
        why = await lim.admit()
        await lim.close()
        return why, stats

    why, stats = asyncio.run(scenario())
    assert why == "queue timeout"
    assert stats.refused_timeout == 1


@pytest.mark.parametrize(
    "kw", [{"rate": 0}, {"burst": 0}, {"max_conns": 0}, {"queue": -1}, {"refuse": "drop"}]
)
def test_bad_specs(kw: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        ThrottleSpec(**kw)  # type: ignore[arg-type]
