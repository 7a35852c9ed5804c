"""Squeeze a running process's fd limit to force EMFILE, restore it, check it recovers.

What a service should do at EMFILE: keep running, refuse or drop what it cannot
take, and serve again once fds are free. libuv's accept path does this with a
reserve fd (uv__emfile_trick: close the spare fd, accept and close the pending
connections, reopen the spare). What goes wrong instead: the loop spins on a
listening socket that stays readable (100% CPU), the service stops accepting
for good (wedged), or the fds opened while failing are never given back.

The squeeze: lower the soft RLIMIT_NOFILE to the current count plus
`headroom`, open `flood` loopback connections to the service and hold them for
`hold_s` while measuring its CPU, then close them and restore the limit (always,
even on error), and check recovery: a probe request succeeds, the fd count
comes back to the baseline, and the CPU is idle again.

This changes the target: callers must have asked for it explicitly.
"""

from __future__ import annotations

import contextlib
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass

from fdguard.clock import Clock, SystemClock
from fdguard.errors import AccessDenied, NoSuchProcess
from fdguard.inspect import count
from fdguard.model import Limits
from fdguard.procfs.cputime import CLOCK_TICKS, read_cpu_times


@dataclass(frozen=True, slots=True)
class SqueezeResult:
    """What happened to one process under an fd-limit squeeze."""

    pid: int
    original: Limits
    squeezed_soft: int
    baseline_fds: int
    peak_fds: int
    flood_connected: int
    cpu_during: float
    cpu_after: float
    served_after: bool
    fds_after: int
    restored: bool
    spin_threshold: float
    fd_tolerance: int

    @property
    def spinning(self) -> bool:
        """The service burned CPU while squeezed (or after): a busy accept loop."""
        return max(self.cpu_during, self.cpu_after) >= self.spin_threshold

    @property
    def back_to_baseline(self) -> bool:
        return self.fds_after <= self.baseline_fds + self.fd_tolerance

    @property
    def recovered(self) -> bool:
        return self.served_after and self.back_to_baseline and not self.spinning and self.restored

    @property
    def problems(self) -> list[str]:
        out = []
        if not self.served_after:
            out.append("does not serve again after the limit was restored (wedged)")
        if not self.back_to_baseline:
            out.append(f"fd count {self.fds_after} did not come back to {self.baseline_fds}")
        if self.spinning:
            out.append(
                f"CPU spinning: {self.cpu_during:.0%} of a core while squeezed, "
                f"{self.cpu_after:.0%} after"
            )
        if not self.restored:
            out.append("could not restore the original limit")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "original": self.original.to_json(),
            "squeezed_soft": self.squeezed_soft,
            "baseline_fds": self.baseline_fds,
            "peak_fds": self.peak_fds,
            "flood_connected": self.flood_connected,
            "cpu_during": round(self.cpu_during, 3),
            "cpu_after": round(self.cpu_after, 3),
            "served_after": self.served_after,
            "fds_after": self.fds_after,
            "restored": self.restored,
            "spinning": self.spinning,
            "back_to_baseline": self.back_to_baseline,
            "recovered": self.recovered,
            "problems": self.problems,
        }


def cpu_share(pid: int, window_s: float, clock: Clock) -> float:
    """The share of one core `pid` used over the next `window_s` seconds."""
    t0, c0 = clock.monotonic(), read_cpu_times(pid).total_ticks
    clock.sleep(window_s)
    t1, c1 = clock.monotonic(), read_cpu_times(pid).total_ticks
    return (c1 - c0) / CLOCK_TICKS / max(t1 - t0, 1e-6)


def _to_limit(value: int | None) -> int:
    return resource.RLIM_INFINITY if value is None else value


def _from_limit(value: int) -> int | None:
    return None if value == resource.RLIM_INFINITY else value


def get_limits(pid: int) -> Limits:
    """RLIMIT_NOFILE of `pid` through prlimit(2).

    Raises:
        NoSuchProcess, AccessDenied.
    """
    try:
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    except ProcessLookupError as err:
        raise NoSuchProcess(pid) from err
    except PermissionError as err:
        raise AccessDenied(pid, "RLIMIT_NOFILE") from err
    return Limits(_from_limit(soft), _from_limit(hard))


def set_soft_limit(pid: int, soft: int | None, hard: int | None) -> None:
    """Set RLIMIT_NOFILE of `pid`.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (_to_limit(soft), _to_limit(hard)))
    except ProcessLookupError as err:
        raise NoSuchProcess(pid) from err
    except PermissionError as err:
        raise AccessDenied(pid, "RLIMIT_NOFILE (needs CAP_SYS_RESOURCE)") from err


def _wait_count(pid: int, target: int, timeout_s: float, poll_s: float, clock: Clock) -> int:
    deadline = clock.monotonic() + timeout_s
    n = count(pid)
    while n > target and clock.monotonic() < deadline:
        clock.sleep(poll_s)
        n = count(pid)
    return n


def squeeze(
    pid: int,
    address: tuple[str, int],
    probe: Callable[[], bool],
    *,
    headroom: int = 2,
    flood: int = 32,
    hold_s: float = 0.5,
    recover_timeout_s: float = 5.0,
    idle_window_s: float = 0.5,
    spin_threshold: float = 0.3,
    fd_tolerance: int = 0,
    clock: Clock | None = None,
) -> SqueezeResult:
    """Squeeze `pid`'s fd limit, flood `address` with connections, restore, check recovery.

    Args:
        pid: the service process (the one holding the fds and the listener).
        address: where it listens (loopback).
        probe: one request to the service; True if it was served.
        headroom: fds allowed above the current count while squeezed.
        flood: loopback connections opened and held while squeezed.
        hold_s: how long they are held (the CPU window during the squeeze).
        recover_timeout_s: how long recovery (serving, fd count) may take.
        idle_window_s: the CPU window after recovery.
        spin_threshold: share of one core above which the service counts as spinning.
        fd_tolerance: fds above the baseline still counted as "back".
        clock: waits and timeouts (the system clock by default).

    Raises:
        NoSuchProcess, AccessDenied.
    """
    clock = clock or SystemClock()
    original = get_limits(pid)
    baseline = count(pid)
    squeezed = baseline + headroom
    if original.soft is not None:
        squeezed = min(squeezed, original.soft)
    held: list[socket.socket] = []
    restored = False
    peak = baseline
    try:
        set_soft_limit(pid, squeezed, original.hard)
        deadline = clock.monotonic() + max(hold_s, 1.0) + 5.0
        for _ in range(flood):
            if clock.monotonic() > deadline:
                break
            with contextlib.suppress(OSError):
                held.append(socket.create_connection(address, timeout=1.0))
        peak = max(peak, count(pid))
        cpu_during = cpu_share(pid, hold_s, clock)
        peak = max(peak, count(pid))
    finally:
        for s in held:
            s.close()
        with contextlib.suppress(NoSuchProcess, AccessDenied):
            set_soft_limit(pid, original.soft, original.hard)
            restored = get_limits(pid) == original
    served = False
    deadline = clock.monotonic() + recover_timeout_s
    while clock.monotonic() < deadline:
        if probe():
            served = True
            break
        clock.sleep(0.05)
    fds_after = _wait_count(pid, baseline + fd_tolerance, max(deadline - clock.monotonic(), 0.5),
                            0.02, clock)
    cpu_after = cpu_share(pid, idle_window_s, clock)
    return SqueezeResult(
        pid=pid,
        original=original,
        squeezed_soft=squeezed,
        baseline_fds=baseline,
        peak_fds=peak,
        flood_connected=len(held),
        cpu_during=cpu_during,
        cpu_after=cpu_after,
        served_after=served,
        fds_after=fds_after,
        restored=restored,
        spin_threshold=spin_threshold,
        fd_tolerance=fd_tolerance,
    )
