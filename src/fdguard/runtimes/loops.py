"""Find a process's libuv event loops and the fds each loop opened for itself (Linux).

What libuv opens on Linux, read from src/unix/{loop,linux,async,signal,stream}.c
at v1.44.2 (Debian 12), v1.46.0 (Node 20) and v1.52.1 (uvloop 0.23), in the
order uv_loop_init() creates them:

  per loop   epoll instance          epoll_create1(O_CLOEXEC): uv_backend_fd()
             io_uring ring (>=1.45)  the "ctl" ring batching epoll_ctl, not polled;
                                     an SQPOLL ring for fs ops is added to the epoll
                                     set (1.45/1.46 at init, >= 1.49 lazily and only
                                     with UV_USE_IO_URING=1). Node 20's bundled 1.46
                                     is built with io_uring off: no ring.
             signal pipe pair        uv__make_pipe(O_NONBLOCK): the child watcher's
                                     uv_signal_init; the read end is polled
             wakeup eventfd          eventfd(EFD_CLOEXEC|EFD_NONBLOCK) for wq_async,
                                     polled
             EMFILE reserve          /dev/null (or "/") O_RDONLY|O_CLOEXEC, opened at
                                     the first stream handle's init (stream.c): closed
                                     and reopened around accept() on EMFILE
             inotify instance        inotify_init1(IN_NONBLOCK|IN_CLOEXEC) at the
                                     first uv_fs_event_start, polled
  process    signal lock pipe pair   uv__make_pipe(0): blocking, CLOEXEC, never
                                     polled; created once, by the first loop

Not steady, so not looked for: uv_spawn's exec-error pipe (closed before
uv_spawn returns) and the files uv__slurp reads. The child watcher is a signal
handle on the loop's signal pipe: no fd of its own.

Watchers are registered with epoll lazily, in uv__io_poll(): a loop that was
initialised but never run (Node 20 has one) has an empty interest list. Its
internals are then found by creation order: they follow its epoll fd. The
evidence of every finding says which rule made it and whether it is certain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fdguard.model import Fd, FdInfo, FdKind, Snapshot

ROLE_EPOLL = "epoll"
ROLE_RING = "io_uring"
ROLE_SIGNAL_READ = "signal-pipe-read"
ROLE_SIGNAL_WRITE = "signal-pipe-write"
ROLE_ASYNC = "async-eventfd"
ROLE_EMFILE = "emfile-reserve"
ROLE_INOTIFY = "inotify"
ROLE_LOCK_READ = "signal-lock-pipe-read"
ROLE_LOCK_WRITE = "signal-lock-pipe-write"


@dataclass(frozen=True, slots=True)
class InternalFd:
    """An fd libuv opened for itself. `loop` is the epoll fd of its loop, None if process-wide."""

    fd: int
    role: str
    loop: int | None
    evidence: str
    certain: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "fd": self.fd,
            "role": self.role,
            "loop": self.loop,
            "evidence": self.evidence,
            "certain": self.certain,
        }


@dataclass(frozen=True, slots=True)
class Loop:
    """One libuv event loop: its epoll fd, its own fds, and the fds it watches."""

    epoll_fd: int
    internal: tuple[InternalFd, ...]
    watched: tuple[int, ...]
    # False for a loop initialised but never run: only what libuv registers at
    # once (an SQPOLL ring) is in its interest list.
    polled: bool = True

    @property
    def internal_fds(self) -> tuple[int, ...]:
        return tuple(i.fd for i in self.internal)

    def to_json(self) -> dict[str, Any]:
        return {
            "epoll_fd": self.epoll_fd,
            "internal_fds": list(self.internal_fds),
            "watched_fds": list(self.watched),
            "polled": self.polled,
            "internal": [i.to_json() for i in self.internal],
        }


@dataclass(frozen=True, slots=True)
class LoopMap:
    """Every loop of a process, the process-wide libuv fds, and an index by fd."""

    loops: tuple[Loop, ...]
    process_wide: tuple[InternalFd, ...]
    by_fd: Mapping[int, InternalFd] = field(default_factory=dict)
    watched_by: Mapping[int, int] = field(default_factory=dict)


def _flags(fd: Fd, flags: Mapping[int, int]) -> int | None:
    if fd.fd in flags:
        return flags[fd.fd]
    return fd.info.flags if fd.info is not None else None


def _is_emfile_shape(fd: Fd, flags: Mapping[int, int]) -> bool:
    if fd.target not in ("/dev/null", "/"):
        return False
    f = _flags(fd, flags)
    # O_RDONLY|O_CLOEXEC exactly as uv__open_cloexec opens it (largefile bit aside).
    return f is not None and f & FdInfo.O_ACCMODE == 0 and bool(f & FdInfo.O_CLOEXEC)


def find_loops(snap: Snapshot, flags: Mapping[int, int] | None = None) -> LoopMap:
    """Reconstruct the libuv loops of a snapshot.

    Args:
        snap: a snapshot; epoll fds must carry their interest lists (they do by default).
        flags: open-file flags by fd for pipes and /dev/null fds, when the snapshot
            was taken without fdinfo for every fd; used to tell libuv's pipes apart
            (the signal lock pipe is blocking, loop pipes are not).
    """
    flags = flags or {}
    by_number = {f.fd: f for f in snap.fds}
    epolls = sorted(f.fd for f in snap.fds if f.kind is FdKind.EPOLL)
    watched_by: dict[int, int] = {}
    interest: dict[int, tuple[int, ...]] = {}
    for e in epolls:
        info = by_number[e].info
        targets = info.epoll_targets if info is not None and info.epoll_targets else ()
        interest[e] = tuple(targets)
        for t in targets:
            watched_by.setdefault(t, e)

    pipe_ends: dict[int, list[int]] = {}
    for f in snap.fds:
        if f.kind is FdKind.PIPE and f.inode is not None:
            pipe_ends.setdefault(f.inode, []).append(f.fd)
    pairs = {ino: sorted(fds) for ino, fds in pipe_ends.items() if len(fds) == 2}
    pair_of: dict[int, list[int]] = {}
    for ends in pairs.values():
        for n in ends:
            pair_of[n] = ends

    taken: dict[int, InternalFd] = {}

    def take(n: int, role: str, loop: int | None, evidence: str, certain: bool) -> None:
        taken[n] = InternalFd(n, role, loop, evidence, certain)

    def nonblocking(n: int) -> bool | None:
        f = _flags(by_number[n], flags)
        return None if f is None else bool(f & FdInfo.O_NONBLOCK)

    # The process-wide signal lock pipe: a blocking pair nobody polls, created by
    # the first loop right after its epoll (and ring). Without flags, creation
    # order alone decides, and the finding is marked uncertain.
    process_wide: list[InternalFd] = []
    if epolls:
        first = epolls[0]
        for ends in sorted(pairs.values()):
            if ends[0] < first or any(n in watched_by for n in ends):
                continue
            nb = [nonblocking(n) for n in ends]
            if any(b is True for b in nb):
                continue
            certain = all(b is False for b in nb)
            why = "blocking pipe pair never polled, created after the first loop's epoll"
            if not certain:
                why += " (flags unknown: by creation order)"
            take(ends[0], ROLE_LOCK_READ, None, why + ": uv__signal_lock_pipefd", certain)
            take(ends[1], ROLE_LOCK_WRITE, None, why + ": uv__signal_lock_pipefd", certain)
            process_wide = [taken[ends[0]], taken[ends[1]]]
            break

    loops: list[Loop] = []
    bounds = [*epolls[1:], 1 << 31]
    for e, upper in zip(epolls, bounds, strict=True):
        watched = interest[e]
        take(e, ROLE_EPOLL, e, "epoll instance (uv_backend_fd)", True)
        in_window = [f for f in snap.fds if e < f.fd < upper and f.fd not in taken]

        # Wakeup eventfd: polled by this loop, else the first unpolled eventfd after it.
        evs = [t for t in watched if by_number.get(t) and by_number[t].kind is FdKind.EVENTFD]
        if evs:
            take(min(evs), ROLE_ASYNC, e, "eventfd in this loop's interest list (wq_async)", True)
        else:
            for f in in_window:
                if f.kind is FdKind.EVENTFD and f.fd not in watched_by:
                    take(f.fd, ROLE_ASYNC, e,
                         "eventfd created after this loop's epoll (loop not polled yet)", False)
                    break

        # Signal pipe: the read end is polled; the write end is its pair.
        sig = [t for t in watched if t in pair_of and t not in taken and pair_of[t][0] == t]
        if sig:
            r = min(sig)
            w = pair_of[r][1]
            take(r, ROLE_SIGNAL_READ, e, "pipe read end in this loop's interest list", True)
            take(w, ROLE_SIGNAL_WRITE, e, f"write end of the signal pipe read at fd {r}", True)
        else:
            for f in in_window:
                pair = pair_of.get(f.fd)
                if pair and pair[0] == f.fd and not any(n in watched_by or n in taken
                                                        for n in pair):
                    ends = pair
                    if nonblocking(ends[0]) is False:
                        continue
                    why = "pipe pair created after this loop's epoll (loop not polled yet)"
                    take(ends[0], ROLE_SIGNAL_READ, e, why, False)
                    take(ends[1], ROLE_SIGNAL_WRITE, e, why, False)
                    break

        # io_uring rings: the SQPOLL ring (fs ops) is added to the epoll set at once;
        # the ctl ring (epoll_ctl batching) is never polled. uv__platform_loop_init
        # creates both right after the epoll fd; a ring nobody polls belongs to the
        # nearest loop before it (a gap can sit between: an fd closed meanwhile).
        rings: set[int] = set()
        for t in watched:
            if by_number.get(t) and by_number[t].kind is FdKind.IO_URING:
                rings.add(t)
                take(t, ROLE_RING, e, "io_uring ring in this loop's interest list (SQPOLL)", True)
        for f in in_window:
            if f.kind is FdKind.IO_URING and f.fd not in taken and f.fd not in watched_by:
                take(f.fd, ROLE_RING, e, "io_uring ring created after this loop's epoll "
                     "(uv__platform_loop_init; the epoll_ctl batching ring is never polled)",
                     False)

        for t in watched:
            if by_number.get(t) and by_number[t].kind is FdKind.INOTIFY:
                take(t, ROLE_INOTIFY, e, "inotify instance in this loop's interest list", True)

        for f in in_window:
            if f.fd not in taken and _is_emfile_shape(f, flags):
                take(f.fd, ROLE_EMFILE, e,
                     f"{f.target} O_RDONLY|O_CLOEXEC after this loop's epoll: the reserve "
                     "fd libuv closes to accept-and-drop on EMFILE (uv__emfile_trick)", False)
                break

        internal = tuple(sorted((i for i in taken.values() if i.loop == e), key=lambda i: i.fd))
        loops.append(Loop(epoll_fd=e, internal=internal, watched=watched,
                          polled=any(t not in rings for t in watched)))

    return LoopMap(
        loops=tuple(loops),
        process_wide=tuple(process_wide),
        by_fd=taken,
        watched_by=watched_by,
    )
