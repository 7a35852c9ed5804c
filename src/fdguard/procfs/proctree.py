"""Find a process's children from /proc/PID/task/TID/children.

Used when fdguard starts a target through a wrapper (strace, fiu-run's exec is
transparent but strace forks): the fds to watch are the wrapper's child's.
"""

from __future__ import annotations

import os

from fdguard.errors import ProcfsFormatError
from fdguard.procfs._oserror import process_errors
from fdguard.procfs.process import DEFAULT_ROOT


def parse_children(data: bytes, source: str = "children") -> list[int]:
    """Parse a task's `children` file: PIDs separated by spaces.

    Raises:
        ProcfsFormatError: a field is not a number.
    """
    try:
        return [int(p) for p in data.split()]
    except ValueError as err:
        raise ProcfsFormatError(source, 1, f"not a PID list: {data[:80]!r}") from err


def read_children(pid: int, *, root: str = DEFAULT_ROOT) -> list[int]:
    """The PIDs of every direct child of `pid`, over all its threads, in order.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    out: list[int] = []
    task_dir = f"{root}/{pid}/task"
    with process_errors(pid, "task"):
        tids = sorted(os.listdir(task_dir), key=int)
    for tid in tids:
        path = f"{task_dir}/{tid}/children"
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            continue  # the thread exited between listing and reading
        except OSError:
            with process_errors(pid, path):
                raise
        out.extend(parse_children(data, path))
    return out
