"""Read and raise RLIMIT_NOFILE of a running process (prlimit), safely.

Raising the fd limit is the bluntest workaround for a leak: it buys time and
hides the leak a little longer. So:

- reading goes through /proc/PID/limits (readable for any process we may
  inspect) and `fdguard.count`, never through prlimit, so `fdguard limits PID`
  works without privilege;
- raising only ever moves the *soft* limit, up to the hard limit; going above
  the hard limit needs an explicit `allow_hard=True` and the privilege
  (CAP_SYS_RESOURCE) to do so -- the kernel is the judge, EPERM becomes
  `AccessDenied`; lowering is refused (that is a squeeze, not a raise);
- the process identity (pid + start time) is checked before and after the
  prlimit call, so a reused PID is reported instead of silently changed;
- the result says how much time was bought at a given leak rate, so the
  caller can print the "this only buys time" warning with the new ETA.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Literal

from fdguard.errors import ExitStatus, FdguardError, NoSuchProcess, UsageError
from fdguard.inspect import count
from fdguard.model import Limits, ProcessRef
from fdguard.procfs.process import DEFAULT_ROOT, ProcessDir
from fdguard.store import Store


class LimitRefused(FdguardError):
    """The kernel refused to change a process's fd limit (no privilege for it)."""

    exit_status = ExitStatus.ACCESS_DENIED


@dataclass(frozen=True, slots=True)
class LimitsReport:
    """RLIMIT_NOFILE of a process and how much of it is used."""

    process: ProcessRef
    command: tuple[str, ...]
    limits: Limits
    count: int

    @property
    def share(self) -> float | None:
        """Share of the soft limit in use; None when unlimited."""
        return None if not self.limits.soft else self.count / self.limits.soft

    @property
    def headroom(self) -> int | None:
        """Fds left before the soft limit; None when unlimited."""
        return None if self.limits.soft is None else max(0, self.limits.soft - self.count)

    def eta_seconds(self, rate_per_hour: float) -> float | None:
        """Seconds until the soft limit at `rate_per_hour` fds per hour (None: never)."""
        return _eta(self.headroom, rate_per_hour)

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.process.pid,
            "start_time": self.process.start_time,
            "command": list(self.command),
            "limits": self.limits.to_json(),
            "count": self.count,
            "share_of_soft_limit": self.share,
            "headroom": self.headroom,
        }


@dataclass(frozen=True, slots=True)
class LimitChange:
    """What `raise_limit` did: the limits before and after, and the fds in use then."""

    process: ProcessRef
    before: Limits
    after: Limits
    count: int
    command: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def gained(self) -> int | None:
        """How many more fds the process may open now (None: now unlimited)."""
        if self.after.soft is None:
            return None
        return self.after.soft - (self.before.soft or 0)

    def eta_seconds(self, rate_per_hour: float, *, after: bool = True) -> float | None:
        """Seconds until the soft limit (new one by default) at `rate_per_hour`."""
        soft = (self.after if after else self.before).soft
        headroom = None if soft is None else max(0, soft - self.count)
        return _eta(headroom, rate_per_hour)

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.process.pid,
            "start_time": self.process.start_time,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "count": self.count,
            "changed": self.changed,
        }


def _eta(headroom: int | None, rate_per_hour: float) -> float | None:
    if headroom is None or rate_per_hour <= 0:
        return None
    return headroom / rate_per_hour * 3600.0


def read_limits(pid: int, *, root: str = DEFAULT_ROOT) -> LimitsReport:
    """RLIMIT_NOFILE and fd count of `pid`, read from /proc (no privilege needed).

    Raises:
        NoSuchProcess, AccessDenied, ProcfsFormatError.
    """
    with ProcessDir(pid, root=root) as proc:
        limits = proc.read_limits()
        command = proc.read_cmdline()
        n = count(pid, root=root)
        proc.check_alive()
        return LimitsReport(process=proc.ref, command=command, limits=limits, count=n)


def _rlim(value: int | None) -> int:
    return resource.RLIM_INFINITY if value is None else value


def _prlimit(pid: int, new: tuple[int, int] | None = None) -> Limits:
    try:
        if new is None:
            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        else:
            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE, new)
    except ProcessLookupError as err:
        raise NoSuchProcess(pid) from err
    except PermissionError as err:
        # EPERM: another user's process without CAP_SYS_RESOURCE, or a hard limit
        # raised without it, or above fs.nr_open even with it.
        what = "change" if new is not None else "read"
        raise LimitRefused(
            f"pid {pid}: not allowed to {what} RLIMIT_NOFILE ({err.strerror}): needs the "
            "same user, and CAP_SYS_RESOURCE to go above the hard limit or fs.nr_open caps it"
        ) from err
    except ValueError as err:
        # EINVAL: soft above hard, which raise_limit never asks for.
        raise UsageError(f"the kernel refused the limits {new}: {err}") from err

    def conv(v: int) -> int | None:
        return None if v == resource.RLIM_INFINITY else v

    return Limits(soft=conv(soft), hard=conv(hard))


def raise_limit(
    pid: int,
    to: int | Literal["hard"],
    *,
    allow_hard: bool = False,
    root: str = DEFAULT_ROOT,
) -> LimitChange:
    """Raise the soft RLIMIT_NOFILE of the running process `pid` to `to`.

    Args:
        pid: the process (any process we are allowed to prlimit: same user or root).
        to: the new soft limit, or "hard" for the current hard limit.
        allow_hard: also raise the hard limit when `to` is above it (needs
            CAP_SYS_RESOURCE; the kernel caps it at fs.nr_open).

    Returns:
        The limits before and after. Asking for the current value changes nothing.

    Raises:
        UsageError: `to` is below the current soft limit, or above the hard limit
            without `allow_hard`.
        LimitRefused: not allowed to change this process's limits.
        NoSuchProcess: the process is gone or its PID was reused meanwhile.
    """
    with ProcessDir(pid, root=root) as proc:
        ref = proc.ref
        before = proc.read_limits()
        n = count(pid, root=root)
        soft, hard = before.soft, before.hard
        target: int | None = hard if to == "hard" else to
        if target is not None and target <= 0:
            raise UsageError(f"a limit must be positive, not {target}")
        if soft is None or (target is not None and target < soft):
            shown = "unlimited" if soft is None else soft
            raise UsageError(
                f"pid {pid}: the soft limit is {shown}; refusing to lower it to {target} "
                "(lowering is a squeeze, not a raise)"
            )
        new_hard = hard
        if hard is not None and (target is None or target > hard):
            if not allow_hard:
                raise UsageError(
                    f"pid {pid}: {target} is above the hard limit {hard}; pass --allow-hard "
                    "(needs CAP_SYS_RESOURCE) or raise to 'hard'"
                )
            new_hard = target
        command = proc.read_cmdline()
        if target == soft and new_hard == hard:
            return LimitChange(ref, before, before, n, command)
        proc.check_alive()
        _prlimit(pid, (_rlim(target), _rlim(new_hard)))
        after = _prlimit(pid)
        try:
            proc.check_alive()
        except NoSuchProcess as err:
            raise NoSuchProcess(pid, "exited or was replaced while its limit was raised") from err
        return LimitChange(ref, before, after, n, command)


def record_change(store: Store, change: LimitChange, t: float) -> None:
    """Record a limit change as a `limit_change` event of its target in the store."""
    tid = store.target_id(change.process, change.command, t)
    store.add_event(tid, t, "limit_change", change.to_json())
