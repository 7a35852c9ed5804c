"""When to replace a worker: pure decisions over its fd count, limit, age and leak verdict.

No I/O and no clock here: the supervisor passes the numbers and the time, so
every rule is unit-tested in microseconds. Each rule returns a human reason
(it goes into the restart log line) or None.
"""

from __future__ import annotations

import random
from typing import Protocol

from fdguard.guard.spec import Triggers


class Verdict(Protocol):
    """What the leak detector says (fdguard.detect.LeakVerdict has these fields)."""

    @property
    def leak(self) -> bool: ...
    @property
    def eta_seconds(self) -> float | None: ...
    @property
    def rate_per_hour(self) -> float | None: ...


class Detector(Protocol):
    """A leak detector fed one (time, count) sample at a time."""

    def update(self, t: float, count: int) -> Verdict: ...


def lifetime_deadline(started: float, triggers: Triggers, rng: random.Random) -> float | None:
    """When a worker started at `started` reaches its max lifetime (plus its own jitter)."""
    if triggers.max_lifetime is None:
        return None
    return started + triggers.max_lifetime + rng.uniform(0.0, triggers.lifetime_jitter)


def fd_share_reason(count: int, soft_limit: int | None, triggers: Triggers) -> str | None:
    """'fd share' when count / soft limit reaches max_fd_share."""
    if triggers.max_fd_share is None or not soft_limit:
        return None
    share = count / soft_limit
    if share >= triggers.max_fd_share:
        return (
            f"fd share {share:.0%} >= {triggers.max_fd_share:.0%} "
            f"({count}/{soft_limit} fds)"
        )
    return None


def eta_reason(verdict: Verdict | None, triggers: Triggers) -> str | None:
    """'leak ETA' when the detector sees a leak reaching the limit sooner than eta_below."""
    if triggers.eta_below is None or verdict is None or not verdict.leak:
        return None
    eta = verdict.eta_seconds
    if eta is None or eta >= triggers.eta_below:
        return None
    rate = verdict.rate_per_hour
    at = f" at {rate:.0f} fds/h" if rate is not None else ""
    return f"leak ETA {eta:.0f}s < {triggers.eta_below:.0f}s{at}"


def lifetime_reason(now: float, started: float, deadline: float | None) -> str | None:
    """'max lifetime' once the (jittered) deadline has passed."""
    if deadline is None or now < deadline:
        return None
    return f"max lifetime reached (up {now - started:.0f}s)"


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff after `failures` start failures in a row: base * 2**(n-1), capped."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * (2 ** (failures - 1))))
