"""Birth certificates for leaked fds: run strace -k, parse it, follow each fd, report.

Layers, in the one direction data flows: runner (strace process) -> parse
(lines -> SyscallEvent with frames) -> lifecycle (per fd table, across reuse,
dup, close_range, exec, SCM_RIGHTS) -> report (open at end, groups, verdicts)
-> session (the facades below, which also cross-check with snapshots).
"""

from fdguard.trace.frames import Frame, FrameOrigin
from fdguard.trace.lifecycle import AfterEvent, Birth, Lifecycle, track
from fdguard.trace.parse import ExitEvent, SyscallEvent, parse_lines
from fdguard.trace.report import (
    Group,
    OpenFd,
    Ownership,
    TraceReport,
    Verdict,
    VerdictCode,
    build_report,
)
from fdguard.trace.runner import StraceInfo, StraceRun, probe_strace
from fdguard.trace.session import (
    Launched,
    finish_command,
    poll_window,
    start_command,
    trace_command,
    trace_pid,
)

__all__ = [
    "AfterEvent",
    "Birth",
    "ExitEvent",
    "Frame",
    "FrameOrigin",
    "Group",
    "Launched",
    "Lifecycle",
    "OpenFd",
    "Ownership",
    "StraceInfo",
    "StraceRun",
    "SyscallEvent",
    "TraceReport",
    "Verdict",
    "VerdictCode",
    "build_report",
    "finish_command",
    "parse_lines",
    "poll_window",
    "probe_strace",
    "start_command",
    "trace_command",
    "trace_pid",
    "track",
]
