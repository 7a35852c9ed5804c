"""Read whether and how much a process runs: CPU time and run state from /proc/PID/stat.

CPU time tells a service that idles from one that spins on a failing
accept(): the CPU seconds it burns over a short wall-clock window. Children's
times (cutime/cstime) are left out: a spinning loop is the process itself.
The run state ("R" runnable, "S" sleeping...) tells a service waiting for
work from one that has work queued but no CPU yet (a loaded machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fdguard.errors import ProcfsFormatError
from fdguard.procfs._oserror import process_errors
from fdguard.procfs.process import DEFAULT_ROOT, stat_fields

# Clock ticks per second: the unit of utime/stime in /proc/PID/stat (proc(5)).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """User and system CPU time of a process, in clock ticks."""

    utime: int
    stime: int

    @property
    def total_ticks(self) -> int:
        return self.utime + self.stime

    def seconds(self, ticks_per_second: int = CLOCK_TICKS) -> float:
        return self.total_ticks / ticks_per_second


def _read_stat(pid: int, root: str) -> tuple[bytes, str]:
    path = f"{root}/{pid}/stat"
    with process_errors(pid, "stat"), open(path, "rb") as fh:
        return fh.read(), path


def parse_cpu_times(data: bytes, source: str = "stat") -> CpuTimes:
    """Parse utime (field 14) and stime (field 15) out of /proc/PID/stat.

    Raises:
        ProcfsFormatError: the line does not have the documented shape.
    """
    fields = stat_fields(data, source)
    try:
        return CpuTimes(utime=int(fields[11]), stime=int(fields[12]))
    except (ValueError, IndexError) as err:
        raise ProcfsFormatError(source, 1, "utime/stime missing or not numbers") from err


def parse_run_state(data: bytes, source: str = "stat") -> str:
    """The state letter (field 3) of a /proc/PID/stat line.

    Raises:
        ProcfsFormatError: the line does not have the documented shape.
    """
    fields = stat_fields(data, source)
    if not fields or len(fields[0]) != 1:
        raise ProcfsFormatError(source, 1, "no state field after '(comm)'")
    return fields[0].decode("ascii", "replace")


def read_cpu_times(pid: int, *, root: str = DEFAULT_ROOT) -> CpuTimes:
    """CPU times of `pid`.

    Raises:
        NoSuchProcess, AccessDenied, ProcfsFormatError.
    """
    return parse_cpu_times(*_read_stat(pid, root))


def read_run_state(pid: int, *, root: str = DEFAULT_ROOT) -> str:
    """The state letter of `pid`'s main thread (field 3 of /proc/PID/stat: R, S, D, t...).

    Raises:
        NoSuchProcess, AccessDenied, ProcfsFormatError.
    """
    return parse_run_state(*_read_stat(pid, root))
