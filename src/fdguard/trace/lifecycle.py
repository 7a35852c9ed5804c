"""Follow every fd of a traced process from birth to close, across reuse, dup and exec.

Fds are tracked per fd *table*, not per thread: threads made with CLONE_FILES
share one table (a close in a worker thread closes the main thread's fd);
a fork gets a copy. Which thread uses which table is decided in a first pass
over all events, because strace may print a child's first syscalls before the
parent's clone() returns. The table of the traced process itself (the "root")
is the one reported; tables of its children are followed only so that their
closes and dup2s are not mistaken for the root's.

Only fds born during the window are tracked; syscalls on older fds are
counted and otherwise ignored (the window cannot say who created them).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fdguard.classify import classify_link
from fdguard.model import FdKind
from fdguard.trace import syscalls as sc
from fdguard.trace.frames import Frame
from fdguard.trace.parse import (
    Event,
    ExitEvent,
    SyscallEvent,
    fd_arg,
    fd_list,
    parse_lines,
    scm_rights_fds,
    split_args,
)

MAX_FD = 2**31 - 1


@dataclass(frozen=True, slots=True)
class AfterEvent:
    """Something that happened to an fd after its birth and helps explain a leak."""

    syscall: str
    at: float
    error: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"syscall": self.syscall, "error": self.error, "at": self.at, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Birth:
    """One fd created during the window: how, when, by which stack, and what came after."""

    fd: int
    syscall: str
    created_at: float
    tid: int
    frames: tuple[Frame, ...]
    kind: FdKind | None
    target: str | None  # strace's -y decoding: "socket:[123]", "/etc/x", "pipe:[9]"
    inode: int | None
    cloexec: bool
    after: tuple[AfterEvent, ...] = ()
    epoll_added: bool = False
    dup_of: str | None = None  # "socket at 1796.2" for fds made by dup*/fcntl
    closed_at: float | None = None
    closed_by: str | None = None


@dataclass(frozen=True, slots=True)
class Exhaustion:
    """A syscall that failed because a file table was full (EMFILE/ENFILE)."""

    syscall: str
    errno: str
    at: float
    tid: int


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Every birth in the root fd table, open or closed, and what the window saw overall."""

    root: int
    open: tuple[Birth, ...]
    closed: tuple[Birth, ...]
    closes_of_older_fds: int
    exhaustion: tuple[Exhaustion, ...]
    root_exited_at: float | None
    first_ts: float | None
    last_ts: float | None
    events: int
    other_tables: int = 0
    notes: tuple[str, ...] = field(default=())


class _Live:
    """The mutable state of one open fd while events are replayed."""

    __slots__ = ("after", "birth", "cloexec", "epoll")

    def __init__(self, birth: Birth) -> None:
        self.birth = birth
        self.after: list[AfterEvent] = []
        self.epoll = False
        self.cloexec = birth.cloexec

    def freeze(self, closed_at: float | None = None, closed_by: str | None = None) -> Birth:
        return dataclasses.replace(
            self.birth,
            after=tuple(self.after),
            epoll_added=self.epoll,
            cloexec=self.cloexec,
            closed_at=closed_at,
            closed_by=closed_by,
        )

    def fork_copy(self) -> _Live:
        c = _Live(self.birth)
        c.after = list(self.after)
        c.epoll = self.epoll
        c.cloexec = self.cloexec
        return c


_INODE = re.compile(r"^[a-z_]+:\[(\d+)\]$")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_ADDR4 = re.compile(r'sin_addr=inet_addr\("([^"]+)"\)')
_ADDR6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_SUN = re.compile(r'sun_path=(@?"[^"]*")')


def _inode(annotation: str | None) -> int | None:
    if not annotation:
        return None
    m = _INODE.match(annotation)
    return int(m.group(1)) if m else None


def sockaddr(text: str) -> str | None:
    """`{sa_family=AF_INET, sin_port=htons(1), sin_addr=...}` -> "127.0.0.1:1"."""
    port = _PORT.search(text)
    if port:
        a4 = _ADDR4.search(text)
        if a4:
            return f"{a4.group(1)}:{port.group(1)}"
        a6 = _ADDR6.search(text)
        if a6:
            return f"[{a6.group(1)}]:{port.group(1)}"
    sun = _SUN.search(text)
    if sun:
        return sun.group(1).replace('"', "")
    return None


def _kind_of(annotation: str | None, syscall: str, args: list[str]) -> FdKind | None:
    if syscall == "socket" and len(args) >= 2:
        return sc.socket_kind(args[0], args[1])
    if syscall == "socketpair":
        return FdKind.UNIX
    if annotation is None:
        return None
    lc = classify_link(annotation)
    if lc.kind is not None:
        return lc.kind
    if lc.is_path:
        if any("O_DIRECTORY" in a for a in args):
            return FdKind.DIR
        if annotation.startswith("/dev/"):
            return FdKind.CHARDEV
        return FdKind.FILE
    return None


def _cloexec_flag(syscall: str, args: list[str]) -> bool:
    if syscall in ("pidfd_open", "pidfd_getfd", "io_uring_setup"):
        return True  # always close-on-exec
    return any("CLOEXEC" in a for a in args)


class _Tables:
    """Which fd table each thread uses (first pass over the events)."""

    def __init__(self, events: Iterable[Event], root: int) -> None:
        self.root = root
        self.parent: dict[int, tuple[int, bool]] = {}
        for ev in events:
            if isinstance(ev, SyscallEvent) and ev.name in ("clone", "clone3", "fork", "vfork"):
                if ev.retval is None or ev.retval <= 0:
                    continue
                shares = ev.name in ("clone", "clone3") and "CLONE_FILES" in ev.args
                self.parent[ev.retval] = (ev.tid, shares)

    def table_of(self, tid: int) -> int:
        seen = 0
        while tid in self.parent and seen < 64:
            parent, shares = self.parent[tid]
            if not shares:
                return tid
            tid = parent
            seen += 1
        return self.root if tid not in self.parent else tid

    def parent_table(self, table: int) -> int | None:
        got = self.parent.get(table)
        return self.table_of(got[0]) if got else None


class Tracker:
    """Replay strace events and keep the births of the root table."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.tables: dict[int, dict[int, _Live]] = {}
        self.closed: list[Birth] = []
        self.older_closes = 0
        self.exhaustion: list[Exhaustion] = []
        self.root_exited_at: float | None = None
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.count = 0
        self._layout: _Tables | None = None

    # -- table bookkeeping ------------------------------------------------------

    def _table(self, tid: int) -> tuple[int, dict[int, _Live]]:
        assert self._layout is not None
        tid_table = self._layout.table_of(tid)
        table = self.tables.get(tid_table)
        if table is None:
            parent = self._layout.parent_table(tid_table)
            src = self.tables.get(parent, {}) if parent is not None else {}
            table = {fd: live.fork_copy() for fd, live in src.items()}
            self.tables[tid_table] = table
        return tid_table, table

    def _close(self, table_id: int, table: dict[int, _Live], fd: int, at: float, by: str) -> bool:
        live = table.pop(fd, None)
        if live is None:
            return False
        if table_id == self.root:
            self.closed.append(live.freeze(at, by))
        return True

    def _born(
        self,
        table_id: int,
        table: dict[int, _Live],
        ev: SyscallEvent,
        fd: int,
        annotation: str | None,
        *,
        kind: FdKind | None,
        cloexec: bool,
        dup_of: str | None = None,
    ) -> None:
        self._close(table_id, table, fd, ev.ts, f"{ev.name} (fd number reused, close unseen)")
        birth = Birth(
            fd=fd,
            syscall=ev.name,
            created_at=ev.ts,
            tid=ev.tid,
            frames=ev.frames,
            kind=kind,
            target=annotation,
            inode=_inode(annotation),
            cloexec=cloexec,
            dup_of=dup_of,
        )
        table[fd] = _Live(birth)

    # -- replay -----------------------------------------------------------------

    def run(self, events: Iterable[Event], layout: _Tables | None = None) -> Lifecycle:
        """Replay `events`. `layout` is the thread-to-table map from a first pass over
        the same events; without it, the events are held in memory for both passes."""
        if layout is None:
            evs: Iterable[Event] = list(events)
            self._layout = _Tables(evs, self.root)
        else:
            evs = events
            self._layout = layout
        self.tables[self.root] = {}
        for ev in evs:
            self.count += 1
            if self.first_ts is None:
                self.first_ts = ev.ts
            self.last_ts = ev.ts
            if isinstance(ev, ExitEvent):
                if ev.tid == self.root:
                    self.root_exited_at = ev.ts
                continue
            self._apply(ev)
        root = self.tables.get(self.root, {})
        return Lifecycle(
            root=self.root,
            open=tuple(sorted((lv.freeze() for lv in root.values()), key=lambda b: b.created_at)),
            closed=tuple(self.closed),
            closes_of_older_fds=self.older_closes,
            exhaustion=tuple(self.exhaustion),
            root_exited_at=self.root_exited_at,
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            events=self.count,
            other_tables=len(self.tables) - 1,
        )

    def _apply(self, ev: SyscallEvent) -> None:
        name = ev.name
        if ev.errno in sc.EXHAUSTION_ERRORS:
            self.exhaustion.append(Exhaustion(name, ev.errno, ev.ts, ev.tid))
        table_id, table = self._table(ev.tid)
        args = split_args(ev.args)
        if name in sc.CLOSE:
            self._apply_close(table_id, table, ev, args)
            return
        if ev.failed or ev.retval is None:
            self._note_failure(table, ev, args)
            return
        if name in sc.CREATE_RETURN:
            if name in ("signalfd", "signalfd4") and args and args[0] != "-1":
                return  # updates the mask of an existing signalfd
            if ev.retval < 0:
                return
            kind = _kind_of(ev.annotation, name, args)
            if name in ("accept", "accept4") and args:
                listener = fd_arg(args[0])
                if listener is not None and listener[0] in table:
                    kind = table[listener[0]].birth.kind or kind
                if kind is None:
                    kind = FdKind.OTHER
            self._born(
                table_id,
                table,
                ev,
                ev.retval,
                ev.annotation,
                kind=kind,
                cloexec=_cloexec_flag(name, args),
                dup_of=self._dup_source(table, args) if name == "dup" else None,
            )
        elif name in sc.CREATE_PAIR:
            pair = next((fd_list(a) for a in args if a.startswith("[")), [])
            kind_args = args if name == "socketpair" else []
            for fd, ann in pair:
                self._born(
                    table_id,
                    table,
                    ev,
                    fd,
                    ann,
                    kind=_kind_of(ann, name, kind_args),
                    cloexec=_cloexec_flag(name, args),
                )
        elif name in sc.DUP_TO:
            if len(args) < 2:
                return
            new = fd_arg(args[1])
            old = fd_arg(args[0])
            if new is None or old is None or new[0] == old[0]:
                return
            self._close(table_id, table, new[0], ev.ts, f"{name} (replaced)")
            self._born(
                table_id,
                table,
                ev,
                ev.retval,
                ev.annotation or old[1],
                kind=_kind_of(ev.annotation or old[1], name, []),
                cloexec=name == "dup3" and "O_CLOEXEC" in ev.args,
                dup_of=self._dup_source(table, args),
            )
        elif name == "fcntl":
            self._apply_fcntl(table_id, table, ev, args)
        elif name in sc.RECV_FDS:
            for fd, ann in scm_rights_fds(ev.args):
                self._born(
                    table_id,
                    table,
                    ev,
                    fd,
                    ann,
                    kind=_kind_of(ann, name, []),
                    cloexec="MSG_CMSG_CLOEXEC" in ev.args,
                )
        elif name == sc.EPOLL_CTL:
            if len(args) >= 3 and args[1] == "EPOLL_CTL_ADD":
                target = fd_arg(args[2])
                if target is not None and target[0] in table:
                    table[target[0]].epoll = True
        elif name == "getsockopt":
            if len(args) >= 4 and args[2] == "SO_ERROR":
                value = args[3].strip("[]")
                if value.startswith("E"):
                    self._after(table, args, AfterEvent("connect", ev.ts, value, "SO_ERROR"))
        elif name in ("execve", "execveat"):
            for fd, live in list(table.items()):
                if live.cloexec:
                    self._close(table_id, table, fd, ev.ts, "execve (close-on-exec)")

    def _dup_source(self, table: dict[int, _Live], args: list[str]) -> str | None:
        old = fd_arg(args[0]) if args else None
        if old is None:
            return None
        live = table.get(old[0])
        if live is None:
            return f"fd {old[0]} (born before the window)"
        return f"fd {old[0]} ({live.birth.syscall} at {live.birth.created_at:.6f})"

    def _apply_fcntl(
        self, table_id: int, table: dict[int, _Live], ev: SyscallEvent, args: list[str]
    ) -> None:
        if len(args) < 2:
            return
        fd = fd_arg(args[0])
        if fd is None or ev.retval is None:
            return
        if args[1] in sc.FCNTL_DUP:
            ann = ev.annotation or fd[1]
            self._born(
                table_id,
                table,
                ev,
                ev.retval,
                ann,
                kind=_kind_of(ann, "fcntl", []),
                cloexec=args[1] == "F_DUPFD_CLOEXEC",
                dup_of=self._dup_source(table, args),
            )
        elif args[1] == "F_SETFD" and fd[0] in table and len(args) >= 3:
            table[fd[0]].cloexec = "FD_CLOEXEC" in args[2]

    def _apply_close(
        self, table_id: int, table: dict[int, _Live], ev: SyscallEvent, args: list[str]
    ) -> None:
        if ev.name == "close":
            got = fd_arg(args[0]) if args else None
            # close() frees the fd even when it reports EINTR/EIO; only EBADF means
            # there was nothing to close.
            if got is None or ev.errno == "EBADF":
                return
            if not self._close(table_id, table, got[0], ev.ts, "close"):
                self.older_closes += 1
            return
        if ev.failed or len(args) < 3:
            return
        first = _int(args[0])
        last = _int(args[1])
        if first is None or last is None:
            return
        flags = args[2]
        if "CLOSE_RANGE_CLOEXEC" in flags:
            for fd, live in table.items():
                if first <= fd <= last:
                    live.cloexec = True
            return
        if "CLOSE_RANGE_UNSHARE" in flags and table_id == self.root and ev.tid != self.root:
            # The thread now has its own copy; the root table is untouched.
            return
        for fd in [fd for fd in table if first <= fd <= last]:
            self._close(table_id, table, fd, ev.ts, "close_range")

    def _after(self, table: dict[int, _Live], args: list[str], what: AfterEvent) -> None:
        got = fd_arg(args[0]) if args else None
        if got is not None and got[0] in table:
            table[got[0]].after.append(what)

    def _note_failure(self, table: dict[int, _Live], ev: SyscallEvent, args: list[str]) -> None:
        if ev.name not in sc.AFTER or ev.errno is None or ev.errno in sc.ROUTINE_ERRORS:
            return
        detail = sockaddr(args[1]) if ev.name in ("connect", "bind") and len(args) > 1 else None
        self._after(table, args, AfterEvent(ev.name, ev.ts, ev.errno, detail))


def _int(text: str) -> int | None:
    text = text.strip()
    if text in ("~0", "~0U", "-1", "4294967295", "UINT_MAX"):
        return MAX_FD
    try:
        return int(text, 0)
    except ValueError:
        return None


def track(events: Iterable[Event], root: int) -> Lifecycle:
    """Replay `events` and return the births of `root`'s fd table, open and closed."""
    return Tracker(root).run(events)


def track_file(path: str, root: int) -> Lifecycle:
    """`track` over an strace output file, streamed (it is read twice, never held whole).

    A file strace never created (it failed before tracing) holds no events.
    """
    if not os.path.exists(path):
        return Tracker(root).run(())
    with open(path, encoding="utf-8", errors="replace") as first:
        layout = (
            e
            for e in parse_lines(_clone_lines(first), default_tid=root)
            if isinstance(e, SyscallEvent)
        )
        tables = _Tables(layout, root)
    with open(path, encoding="utf-8", errors="replace") as second:
        tracker = Tracker(root)
        return tracker.run(parse_lines(second, default_tid=root), layout=tables)


def _clone_lines(lines: Iterable[str]) -> Iterable[str]:
    # Only clone/fork lines (and their resumptions) matter to the layout pass.
    for line in lines:
        if "clone" in line or "fork" in line:
            yield line
