"""Enumerate processes and read the identity of one cheaply: for following targets.

`fdguard watch` resolves targets (a PID, a name or cmdline pattern, a pidfile, a
cgroup) every few seconds and checks each followed process's identity on every
sample, so these reads avoid `ProcessDir` (which opens directory fds): one
open+read+close of /proc/PID/stat per call, nothing held between calls.
cgroup membership is read from cgroupfs (`cgroup.procs`), the kernel's other
process table, so it lives here too.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

from fdguard.errors import NoSuchProcess, ProcfsFormatError
from fdguard.model import Limits, ProcessRef
from fdguard.procfs._oserror import process_errors, translate
from fdguard.procfs.cputime import CLOCK_TICKS
from fdguard.procfs.process import (
    DEFAULT_ROOT,
    _read_all,
    parse_limits,
    parse_stat,
    stat_fields,
)

DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who a process is: its identity, its short name (comm) and its command line."""

    ref: ProcessRef
    comm: str
    cmdline: tuple[str, ...]
    state: str


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


def list_pids(*, root: str = DEFAULT_ROOT) -> list[int]:
    """Every PID (thread-group leader) currently listed in the procfs root."""
    return sorted(int(name) for name in os.listdir(root) if name.isdigit())


def start_time_of(data: bytes, source: str = "stat") -> tuple[str, int]:
    """(state, start time) from /proc/PID/stat: the two fields an identity check needs.

    A lean `parse_stat` for the per-sample check: no comm decoding, no other fields.

    Raises:
        ProcfsFormatError: the line does not have the documented shape.
    """
    fields = stat_fields(data, source, maxsplit=20)
    try:
        return fields[0].decode("ascii"), int(fields[19])
    except (IndexError, ValueError, UnicodeDecodeError) as err:
        raise ProcfsFormatError(source, 1, "fields missing or not numbers") from err


def read_ref(pid: int, *, root: str = DEFAULT_ROOT) -> ProcessRef:
    """The identity (pid + start time) of `pid` now: one open, read and close.

    The watcher calls this once per target per sample, so it avoids the
    context-manager and full-parse overhead of the general readers.

    Raises:
        NoSuchProcess: it does not exist (or is a zombie: it holds no fds any more).
        AccessDenied.
    """
    path = f"{root}/{pid}/stat"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError as err:
        new = translate(err, pid, "stat")
        if new is err:
            raise
        raise new from err
    state, start = start_time_of(data, path)
    if state in ("Z", "X"):
        raise NoSuchProcess(pid, "exited (zombie)")
    return ProcessRef(pid, start)


def read_identity(pid: int, *, root: str = DEFAULT_ROOT) -> ProcessIdentity:
    """Identity, comm and cmdline of `pid`.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    with process_errors(pid, "stat"):
        st = parse_stat(_read(f"{root}/{pid}/stat"), f"{root}/{pid}/stat")
    with process_errors(pid, "cmdline"):
        raw = _read(f"{root}/{pid}/cmdline")
    cmd = (
        tuple(p.decode("utf-8", "replace") for p in raw.rstrip(b"\0").split(b"\0"))
        if raw
        else (f"[{st.comm}]",)
    )
    return ProcessIdentity(ProcessRef(pid, st.start_time), st.comm, cmd, st.state)


def read_limits(pid: int, *, root: str = DEFAULT_ROOT) -> Limits:
    """RLIMIT_NOFILE of `pid` (raises NoSuchProcess, AccessDenied)."""
    with process_errors(pid, "limits"):
        return parse_limits(_read(f"{root}/{pid}/limits"), f"{root}/{pid}/limits")


def boot_time(*, root: str = DEFAULT_ROOT) -> float:
    """When the machine booted, in wall-clock seconds (/proc/stat's btime).

    Raises:
        ProcfsFormatError: no btime line.
    """
    data = _read(f"{root}/stat")
    for line in data.split(b"\n"):
        if line.startswith(b"btime "):
            return float(line.split()[1])
    raise ProcfsFormatError(f"{root}/stat", None, "no btime line")


def started_at(ref: ProcessRef, *, root: str = DEFAULT_ROOT) -> float:
    """The wall-clock time `ref` started (its start time is in clock ticks since boot;
    to within a tick, and to within a wall-clock step since boot)."""
    return boot_time(root=root) + ref.start_time / CLOCK_TICKS


def read_comm(pid: int, *, root: str = DEFAULT_ROOT) -> str:
    """The short name of `pid` (/proc/PID/comm: half the kernel's work of /proc/PID/stat).

    Raises:
        NoSuchProcess, AccessDenied.
    """
    with process_errors(pid, "comm"):
        return _read(f"{root}/{pid}/comm").rstrip(b"\n").decode("utf-8", "replace")


def read_nofile(pid: int, *, root: str = DEFAULT_ROOT) -> Limits:
    """RLIMIT_NOFILE of `pid`, by the prlimit() syscall where it is allowed (30 times
    cheaper than formatting /proc/PID/limits), else from that file: prlimit needs
    the same user or CAP_SYS_RESOURCE even to read, the file does not. A fake root
    is always read from its file.

    Raises:
        NoSuchProcess, AccessDenied, ProcfsFormatError.
    """
    if root == DEFAULT_ROOT:
        try:
            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        except ProcessLookupError as err:
            raise NoSuchProcess(pid) from err
        except PermissionError:
            pass  # another user's process: the file is world-readable
        else:
            inf = resource.RLIM_INFINITY
            return Limits(None if soft == inf else soft, None if hard == inf else hard)
    return read_limits(pid, root=root)


def parse_pid_list(data: bytes) -> list[int]:
    """Parse a list of PIDs, one per line (cgroup.procs, pidfiles)."""
    out = []
    for raw in data.split(b"\n"):
        line = raw.strip()
        if line.isdigit():
            out.append(int(line))
    return out


def read_cgroup_pids(cgroup: str, *, root: str = DEFAULT_CGROUP_ROOT) -> list[int]:
    """The PIDs in a cgroup (v2) and all its descendants.

    `cgroup` is a path relative to the cgroup mount ("system.slice/nginx.service")
    or an absolute path under it. A cgroup that vanished yields no PIDs.
    """
    if cgroup.startswith(root + "/"):
        base = cgroup
    else:
        base = os.path.join(root, cgroup.lstrip("/"))
        # Hybrid v1/v2 hosts mount the v2 hierarchy (the path /proc/PID/cgroup
        # shows on its "0::" line) at ROOT/unified.
        unified = os.path.join(root, "unified", cgroup.lstrip("/"))
        if not os.path.isdir(base) and os.path.isdir(unified):
            base = unified
    pids: set[int] = set()
    for dirpath, _dirs, files in os.walk(base):
        if "cgroup.procs" in files:
            try:
                pids.update(parse_pid_list(_read(os.path.join(dirpath, "cgroup.procs"))))
            except FileNotFoundError:
                continue
    return sorted(pids)
