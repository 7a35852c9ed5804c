"""Read who ptraces each thread of a process, and the YAMA ptrace policy.

`trace` uses these to know when strace has attached to every thread (each
task's TracerPid is strace's pid) and to explain a refused attach.
"""

from __future__ import annotations

import os

from fdguard.errors import ProcfsFormatError
from fdguard.procfs._oserror import process_errors
from fdguard.procfs.process import DEFAULT_ROOT

YAMA_SCOPE = "sys/kernel/yama/ptrace_scope"


def parse_tracer_pid(data: bytes, source: str = "status") -> int:
    """The `TracerPid:` field of a /proc/.../status file (0: not traced).

    Raises:
        ProcfsFormatError: the field is missing or not a number.
    """
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if line.startswith(b"TracerPid:"):
            try:
                return int(line.split(b":", 1)[1])
            except ValueError as err:
                raise ProcfsFormatError(source, lineno, "TracerPid is not a number") from err
    raise ProcfsFormatError(source, None, "no TracerPid line")


def read_task_tracers(pid: int, *, root: str = DEFAULT_ROOT) -> dict[int, int]:
    """{tid: tracer pid} for every thread of `pid`; threads that exit mid-read are skipped.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    out: dict[int, int] = {}
    task_dir = f"{root}/{pid}/task"
    with process_errors(pid, "task"):
        tids = sorted(int(t) for t in os.listdir(task_dir))
    for tid in tids:
        path = f"{task_dir}/{tid}/status"
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[tid] = parse_tracer_pid(data, path)
    return out


def read_yama_scope(*, root: str = DEFAULT_ROOT) -> int | None:
    """The YAMA ptrace_scope (0 classic, 1 descendants only, 2 admin only, 3 none).

    None when YAMA is not built into the kernel.
    """
    try:
        with open(f"{root}/{YAMA_SCOPE}", "rb") as fh:
            return int(fh.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int, *, root: str = DEFAULT_ROOT) -> bool:
    """Whether /proc/PID exists and is not a zombie."""
    try:
        with open(f"{root}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    close = data.rfind(b")")
    return close > 0 and data[close + 2 : close + 3] not in (b"Z", b"X")


def read_exe(pid: int, *, root: str = DEFAULT_ROOT) -> str | None:
    """The executable of `pid` (readlink /proc/PID/exe), or None if gone or unreadable."""
    try:
        return os.readlink(f"{root}/{pid}/exe")
    except OSError:
        return None
