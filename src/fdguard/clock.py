"""The one place fdguard reads or waits for time: a `Clock` protocol and its two clocks.

Every sampling loop, detector window and alert timer takes a `Clock` instead of
calling `time` directly, so tests swap in a `ManualClock` that advances only when
told and an hour of sampling runs in milliseconds (pytest's own trick).

Two readings, two purposes:
- `monotonic()` measures intervals (sampling cadence, timeouts, heartbeats); it
  never jumps when the wall clock is set.
- `time()` is wall-clock epoch seconds, used only to *label* samples and alerts
  so that they can be joined with other monitoring.
"""

from __future__ import annotations

import threading
import time as _time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What fdguard needs from a clock."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for labelling, never for intervals)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` (a non-positive value returns at once)."""
        ...


class SystemClock:
    """The real clock: `time.monotonic`, `time.time` and `time.sleep`."""

    def monotonic(self) -> float:
        return _time.monotonic()

    def time(self) -> float:
        return _time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            _time.sleep(seconds)


class ManualClock:
    """A clock for tests that moves only when told (`advance`, `set`, or `sleep`).

    `sleep(s)` advances the clock by `s` at once instead of waiting, so code under
    test that sleeps between samples runs at full speed and sees exactly the
    intervals it asked for. Thread-safe: a watcher thread and the test thread may
    share one instance.

    Example:
        >>> clock = ManualClock(start=1000.0)
        >>> clock.sleep(60)
        >>> clock.monotonic(), clock.time()
        (1060.0, 1060.0)
    """

    def __init__(self, start: float = 0.0, *, wall_offset: float = 0.0) -> None:
        """Start at `start` monotonic seconds; `time()` is `monotonic() + wall_offset`."""
        self._now = float(start)
        self._wall_offset = float(wall_offset)
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        with self._lock:
            return self._now + self._wall_offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds` (must not be negative); return the new reading."""
        if seconds < 0:
            raise ValueError(f"a clock does not go backwards (advance by {seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Jump to monotonic reading `now` (must not be earlier than the current one)."""
        with self._lock:
            if now < self._now:
                raise ValueError(f"a clock does not go backwards ({now} < {self._now})")
            self._now = float(now)


SYSTEM_CLOCK: Clock = SystemClock()
"""The shared real clock; pass a `ManualClock` instead in tests."""
