"""What changed between two snapshots of one process: fds opened, closed, sockets moved.

The manual leak hunt is `lsof -p PID` twice and a diff by eye; `fdguard inspect PID
--diff BEFORE.json` (or `--for 30s`) does it on the classified fds, so what grew is
named at once: "+120 file /var/log/app/req-*.log", "+30 tcp CLOSE-WAIT
10.0.0.7:* -> 10.0.0.5:5432".

Both sides are `fdguard inspect --json` documents (the JSON contract of a
snapshot), so a snapshot saved by anyone, hours ago, diffs against one taken now.
An fd is the same fd on both sides if its number, kind and object (inode, else
link target) are; a number reused for another object is one closed and one
opened. A socket that is the same on both sides but in another TCP state is
reported as moved (ESTAB -> CLOSE-WAIT is how a CLOSE-WAIT pile grows).

Changes are grouped by what they are, so a thousand leaked fds are one line: the
kind, and for files the path with each run of digits made `*`, for sockets the
state and both ends with ephemeral ports (32768 and up, Linux's default local
range) made `*`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fdguard.errors import UsageError

EPHEMERAL_PORT = 32768
"""The low end of Linux's default ip_local_port_range: ports from here up are
collapsed to `*` when grouping sockets (one per connection, never the service's)."""

_DIGITS = re.compile(r"\d+")
_PATH_KINDS = frozenset({"file", "dir", "memfd", "fifo", "chardev", "blockdev"})
_INET_KINDS = frozenset({"tcp", "tcp6", "udp", "udp6"})


def _endpoint(addr: str | None) -> str:
    if not addr:
        return "*"
    host, sep, port = addr.rpartition(":")
    if sep and port.isdigit() and int(port) >= EPHEMERAL_PORT:
        return f"{host}:*"
    return addr


def group_of(fd: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, what): the line an fd's change is counted on (see module comment)."""
    kind = str(fd.get("kind"))
    if kind in _PATH_KINDS:
        target = str(fd.get("target") or "?")
        what = _DIGITS.sub("*", target) if kind in ("file", "memfd", "dir") else target
        if fd.get("deleted"):
            what += " (deleted)"
        return kind, what
    if kind in _INET_KINDS:
        state = fd.get("state") or "?"
        remote = fd.get("remote")
        if remote:
            return kind, f"{state} {_endpoint(fd.get('local'))} -> {_endpoint(remote)}"
        return kind, f"{state} {_endpoint(fd.get('local'))}"
    if kind == "unix":
        return kind, f"{fd.get('state') or '?'} {fd.get('local') or '(unnamed)'}"
    return kind, ""


def _identity(fd: Mapping[str, Any]) -> tuple[Any, ...]:
    obj = fd.get("inode") if fd.get("inode") is not None else fd.get("target")
    return (fd.get("fd"), fd.get("kind"), obj)


@dataclass(frozen=True)
class GroupChange:
    """Opened and closed fds of one group."""

    kind: str
    what: str
    opened: int
    closed: int

    @property
    def net(self) -> int:
        return self.opened - self.closed

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "what": self.what, "opened": self.opened,
                "closed": self.closed, "net": self.net}


@dataclass(frozen=True)
class SnapshotDiff:
    """The change of one process's fds from `before` to `after` (inspect JSON docs)."""

    pid: int
    before_at: float
    after_at: float
    before_count: int
    after_count: int
    opened: tuple[Mapping[str, Any], ...]
    closed: tuple[Mapping[str, Any], ...]
    moved: tuple[tuple[Mapping[str, Any], Mapping[str, Any]], ...]
    """Sockets in another TCP state: (before, after)."""
    groups: tuple[GroupChange, ...] = field(default=())
    """Largest net change first."""

    @property
    def seconds(self) -> float:
        return self.after_at - self.before_at

    def moves(self) -> Counter[tuple[str, str]]:
        """How many sockets went from one state to another."""
        return Counter((str(a.get("state")), str(b.get("state"))) for a, b in self.moved)

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "before": {"taken_at": self.before_at, "count": self.before_count},
            "after": {"taken_at": self.after_at, "count": self.after_count},
            "seconds": round(self.seconds, 3),
            "opened": len(self.opened),
            "closed": len(self.closed),
            "groups": [g.to_json() for g in self.groups],
            "moved": [
                {"from": a, "to": b, "count": n} for (a, b), n in self.moves().most_common()
            ],
            "opened_fds": list(self.opened),
            "closed_fds": list(self.closed),
        }


def _check(doc: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("fds"), list):
        raise UsageError(
            f"{source}: not an fdguard snapshot (save one with `fdguard inspect PID --json`)"
        )
    for key in ("pid", "start_time", "taken_at"):
        if not isinstance(doc.get(key), (int, float)) or isinstance(doc.get(key), bool):
            raise UsageError(f"{source}: not an fdguard snapshot: no numeric {key!r}")
    for i, fd in enumerate(doc["fds"]):
        if not isinstance(fd, Mapping) or not isinstance(fd.get("fd"), int):
            raise UsageError(f"{source}: fds[{i}] is not an fd (an object with its number)")
        for key in ("kind", "target", "state", "local", "remote"):
            if not isinstance(fd.get(key), (str, type(None))):
                raise UsageError(f"{source}: fds[{i}].{key} is not a string")
        if not isinstance(fd.get("inode"), (int, type(None))):
            raise UsageError(f"{source}: fds[{i}].inode is not a number")
    return doc


def diff(
    before: Any,
    after: Any,
    *,
    source: str = "BEFORE",
    keep: Callable[[str, str | None], bool] | None = None,
) -> SnapshotDiff:
    """The change from snapshot `before` to `after` (both `fdguard inspect --json` docs),
    of the fds `keep(kind, state)` accepts on both sides (all without it).

    Raises:
        UsageError: a document that is not a snapshot, or snapshots of two different
            processes (another PID, or the same PID started again: its fd numbers
            would mean nothing here).
    """
    b, a = _check(before, source), _check(after, "the snapshot taken now")
    if (b["pid"], b["start_time"]) != (a["pid"], a["start_time"]):
        raise UsageError(
            f"{source} is a snapshot of pid {b['pid']} (start time {b['start_time']}), not "
            f"of pid {a['pid']} as it runs now (start time {a['start_time']}): take a new one"
        )
    b_fds, a_fds = b["fds"], a["fds"]
    if keep is not None:
        b_fds = [f for f in b_fds if keep(f.get("kind"), f.get("state"))]
        a_fds = [f for f in a_fds if keep(f.get("kind"), f.get("state"))]
    old = {_identity(f): f for f in b_fds}
    new = {_identity(f): f for f in a_fds}
    opened = tuple(f for k, f in new.items() if k not in old)
    closed = tuple(f for k, f in old.items() if k not in new)
    moved = tuple(
        (old[k], f)
        for k, f in new.items()
        if k in old and old[k].get("state") != f.get("state") and f.get("state") is not None
    )
    return SnapshotDiff(
        pid=int(a["pid"]),
        before_at=float(b["taken_at"]),
        after_at=float(a["taken_at"]),
        before_count=len(b_fds),
        after_count=len(a_fds),
        opened=opened,
        closed=closed,
        moved=moved,
        groups=_groups(opened, closed),
    )


def _groups(
    opened: Sequence[Mapping[str, Any]], closed: Sequence[Mapping[str, Any]]
) -> tuple[GroupChange, ...]:
    up = Counter(group_of(f) for f in opened)
    down = Counter(group_of(f) for f in closed)
    out = [GroupChange(k, w, up[(k, w)], down[(k, w)]) for (k, w) in up.keys() | down.keys()]
    out.sort(key=lambda g: (-abs(g.net), -g.opened, g.kind, g.what))
    return tuple(out)
