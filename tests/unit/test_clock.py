"""ManualClock moves only when told; SystemClock reads the real clocks."""

from __future__ import annotations

import threading

import pytest

from fdguard.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(start=100.0, wall_offset=1_700_000_000.0)
    assert clock.monotonic() == 100.0
    assert clock.monotonic() == 100.0
    assert clock.time() == 1_700_000_100.0
    clock.sleep(3600)  # an hour passes at once
    assert clock.monotonic() == 3700.0
    assert clock.advance(0.5) == 3700.5
    clock.set(5000.0)
    assert clock.time() == 1_700_005_000.0
    clock.sleep(-1)  # a non-positive sleep is a no-op
    assert clock.monotonic() == 5000.0


def test_manual_clock_never_goes_backwards() -> None:
    clock = ManualClock(start=10.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(9.0)
    assert clock.monotonic() == 10.0


def test_manual_clock_is_thread_safe() -> None:
    clock = ManualClock()
    threads = [
        threading.Thread(target=lambda: [clock.advance(1) for _ in range(1000)]) for _ in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert clock.monotonic() == 4000.0


def test_system_clock_satisfies_the_protocol() -> None:
    assert isinstance(SYSTEM_CLOCK, Clock)
    assert isinstance(ManualClock(), Clock)
    clock = SystemClock()
    a = clock.monotonic()
    clock.sleep(0)
    assert clock.monotonic() >= a
    assert clock.time() > 1_600_000_000
