"""fdguard: find, prove and contain file-descriptor exhaustion in long-running services.

Only re-exports live here. The layers, in the one direction data flows:
procfs/ (the only code touching /proc and netlink) -> model -> inspect
(snapshot, count) -> analyses -> cli/ (the only code that prints or exits).
"""

from fdguard.errors import (
    AccessDenied,
    ExitStatus,
    FdguardError,
    LeakDetected,
    NoSuchProcess,
    ProcfsFormatError,
    ToolMissing,
    UsageError,
)
from fdguard.inspect import count, snapshot
from fdguard.model import Fd, FdInfo, FdKind, Limits, ProcessRef, Snapshot, TcpState

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "ExitStatus",
    "Fd",
    "FdInfo",
    "FdKind",
    "FdguardError",
    "LeakDetected",
    "Limits",
    "NoSuchProcess",
    "ProcessRef",
    "ProcfsFormatError",
    "Snapshot",
    "TcpState",
    "ToolMissing",
    "UsageError",
    "__version__",
    "count",
    "snapshot",
]
