"""The typed errors of fdguard: whose fault it is, and the exit status it becomes.

Every error the library raises derives from `FdguardError` and carries an
`exit_status`; `fdguard.cli.main` is the one place that turns them into exit
codes and one-line messages. The library itself never prints or exits.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """The documented exit codes of the `fdguard` command."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NO_SUCH_PROCESS = 3
    ACCESS_DENIED = 4
    LEAK_FOUND = 10
    INTERRUPTED = 130


class FdguardError(Exception):
    """Base class of every error fdguard raises on purpose."""

    exit_status: ExitStatus = ExitStatus.ERROR


class UsageError(FdguardError):
    """The caller asked for something that cannot be done as asked."""

    exit_status = ExitStatus.USAGE


class NoSuchProcess(FdguardError):
    """The process does not exist, exited while being read, or its PID was reused."""

    exit_status = ExitStatus.NO_SUCH_PROCESS

    def __init__(self, pid: int, detail: str = "") -> None:
        self.pid = pid
        msg = f"no such process: {pid}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class AccessDenied(FdguardError):
    """The kernel refused to show this process's fds to us."""

    exit_status = ExitStatus.ACCESS_DENIED

    def __init__(self, pid: int, what: str = "") -> None:
        self.pid = pid
        where = f" reading {what}" if what else ""
        super().__init__(
            f"access denied{where} for pid {pid}: run as the same user as the process, "
            "or as root / with CAP_SYS_PTRACE"
        )


class ProcfsFormatError(FdguardError):
    """A /proc file or netlink message did not have the format the kernel documents."""

    def __init__(self, source: str, line: int | None, detail: str) -> None:
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"unexpected format in {where}: {detail}")


class ToolMissing(FdguardError):
    """An external program fdguard needs (strace, node, prometheus, ...) is not installed."""

    def __init__(self, tool: str, hint: str = "") -> None:
        self.tool = tool
        msg = f"{tool} is not installed or not on PATH"
        if hint:
            msg += f": {hint}"
        super().__init__(msg)


class LeakDetected(FdguardError):
    """A check found an fd leak; carries the exit status that gates CI."""

    exit_status = ExitStatus.LEAK_FOUND


class StoreError(FdguardError):
    """The time-series store cannot be opened or written (path, permissions, corruption)."""


class KnownBaseError(FdguardError):
    """The shipped base of known libuv bugs is malformed (a packaging bug, not the user's)."""


class TraceRefused(FdguardError):
    """The kernel refused to let strace ptrace the target (YAMA, capabilities, a tracer)."""

    exit_status = ExitStatus.ACCESS_DENIED

    def __init__(self, pid: int | None, reason: str) -> None:
        self.pid = pid
        self.reason = reason
        super().__init__(f"cannot trace {pid if pid is not None else 'the command'}: {reason}")


class LabUnsupported(FdguardError):
    """The libuv under test lacks what a lab scenario needs (a symbol, a platform feature)."""


class LabBuildError(FdguardError):
    """A libuv source tree could not be found, configured or compiled into a shared library."""
