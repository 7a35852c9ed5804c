"""Host-wide survey: every process's fd count against its soft limit, nearest to EMFILE first.

What `fdguard top` shows in the first minute of an incident, when the question is
"which process on this host is running out of fds?" rather than "what does this
one hold?": one line per process, ranked by the share of its soft RLIMIT_NOFILE in
use, and the host's own table (fs.file-nr against fs.file-max, whose exhaustion is
ENFILE for everyone).

Per process it reads three things and holds nothing: the size of /proc/PID/fd (the
fd count in O(1) on Linux >= 6.2), /proc/PID/comm and RLIMIT_NOFILE (by prlimit(),
falling back to /proc/PID/limits for another user's process). No fd is listed or
classified, so a host of a thousand processes is surveyed in tens of milliseconds
(bench/top_cost.py times it against psutil and lsof). A process that
exits while being read is left out; one whose files are refused (another user's,
without root) is counted as unreadable, not guessed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from fdguard.errors import AccessDenied, NoSuchProcess, ProcfsFormatError
from fdguard.procfs.pids import list_pids, read_comm, read_nofile
from fdguard.procfs.process import DEFAULT_ROOT, count_fds
from fdguard.procfs.system import read_file_nr

SortKey = Literal["usage", "count", "growth"]


@dataclass(frozen=True, slots=True)
class FdUsage:
    """One process's open fds against its RLIMIT_NOFILE."""

    pid: int
    name: str
    count: int
    soft: int | None
    """None: unlimited."""
    hard: int | None

    @property
    def share(self) -> float | None:
        """The share of the soft limit in use (None without a finite limit)."""
        return self.count / self.soft if self.soft else None

    def to_json(self) -> dict[str, Any]:
        share = self.share
        return {
            "pid": self.pid,
            "name": self.name,
            "count": self.count,
            "soft_limit": self.soft,
            "hard_limit": self.hard,
            "share": None if share is None else round(share, 4),
        }


@dataclass(frozen=True, slots=True)
class HostSurvey:
    """Every readable process's `FdUsage`, ranked, and the host's file table."""

    t: float
    processes: tuple[FdUsage, ...]
    """Ranked (see `survey`); processes holding no fd (kernel threads) are left out."""
    unreadable: int
    """Processes whose fds or limits could not be read (access denied, odd format)."""
    file_nr: tuple[int, int, int] | None
    """fs.file-nr: allocated file handles, unused ones, fs.file-max."""

    @property
    def file_share(self) -> float | None:
        """The share of fs.file-max allocated (None if unknown)."""
        if self.file_nr is None or self.file_nr[2] <= 0:
            return None
        return (self.file_nr[0] - self.file_nr[1]) / self.file_nr[2]

    def to_json(self, top: int | None = None) -> dict[str, Any]:
        shown = self.processes if top is None else self.processes[:top]
        nr = self.file_nr
        return {
            "t": self.t,
            "processes": [p.to_json() for p in shown],
            "surveyed": len(self.processes),
            "unreadable": self.unreadable,
            "system": None
            if nr is None
            else {"allocated": nr[0], "unused": nr[1], "file_max": nr[2]},
        }


def growth(before: HostSurvey, after: HostSurvey) -> dict[int, int]:
    """How many fds each process of `after` opened (or closed, < 0) since `before`;
    a process `before` did not list (new, or it held none) counts from 0.

    By PID alone: over the seconds between two surveys a PID is not reused.
    """
    was = {p.pid: p.count for p in before.processes}
    return {p.pid: p.count - was.get(p.pid, 0) for p in after.processes}


def rank_key(
    p: FdUsage, by: SortKey, grown: dict[int, int] | None = None
) -> tuple[float, ...]:
    """Sort key: by share of the soft limit, unlimited last ("usage"), by count, or by
    `grown[pid]` (see `growth`), the fastest-growing first."""
    if by == "growth":
        return (-(grown or {}).get(p.pid, 0), -p.count, p.pid)
    if by == "count":
        return (-p.count, p.pid)
    share = p.share
    # Unlimited last: nothing to exhaust, whatever it holds.
    return (share is None, -(share or 0.0), -p.count, p.pid)


def survey(
    *,
    root: str = DEFAULT_ROOT,
    name: re.Pattern[str] | None = None,
    sort: SortKey = "usage",
) -> HostSurvey:
    """Survey every process under `root` (optionally only those whose comm matches
    `name`), ranked by share of soft limit in use (`sort="usage"`, unlimited last)
    or by fd count (`sort="count"`); growth needs two surveys (see `growth`), so
    `sort="growth"` ranks by usage here."""
    found: list[FdUsage] = []
    unreadable = 0
    for pid in list_pids(root=root):
        try:
            # The count first: kernel threads and zombies hold none, and cost no more.
            n = count_fds(pid, root=root)
            if n == 0:
                continue
            comm = read_comm(pid, root=root)
            if name is not None and not name.search(comm):
                continue
            lim = read_nofile(pid, root=root)
        except NoSuchProcess:
            continue  # exited while being read
        except (AccessDenied, ProcfsFormatError):
            unreadable += 1
            continue
        found.append(FdUsage(pid, comm, n, lim.soft, lim.hard))
    found.sort(key=lambda p: rank_key(p, "usage" if sort == "growth" else sort))
    return HostSurvey(time.time(), tuple(found), unreadable, read_file_nr(proc=root))
