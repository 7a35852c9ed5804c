"""The only code in fdguard that touches /proc or netlink.

Each module pairs pure `parse_x(data: bytes) -> model` functions, unit-tested over
committed samples, with thin `read_x(...)` functions that do the I/O and turn
`OSError` into fdguard's typed errors (see `_oserror`). Everything takes the
procfs root as a parameter so tests can point it at a fake tree.
"""

from fdguard.procfs.fdinfo import parse_fdinfo
from fdguard.procfs.process import (
    DEFAULT_ROOT,
    ProcessDir,
    ProcStat,
    count_fds,
    parse_limits,
    parse_stat,
)

__all__ = [
    "DEFAULT_ROOT",
    "ProcStat",
    "ProcessDir",
    "count_fds",
    "parse_fdinfo",
    "parse_limits",
    "parse_stat",
]
