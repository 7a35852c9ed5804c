"""Frozen value types passed between fdguard's layers: processes, fds, snapshots, limits.

JSON appears only at the edge (`to_json` methods build plain dicts following the
contract in DESIGN.md); inside the library everything is one of these types.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class FdKind(enum.StrEnum):
    """What kind of kernel object an fd refers to. Values are the JSON contract."""

    FILE = "file"
    DIR = "dir"
    CHARDEV = "chardev"
    BLOCKDEV = "blockdev"
    PIPE = "pipe"
    FIFO = "fifo"
    TCP = "tcp"
    TCP6 = "tcp6"
    UDP = "udp"
    UDP6 = "udp6"
    UNIX = "unix"
    NETLINK = "netlink"
    RAW = "raw"
    PACKET = "packet"
    EPOLL = "epoll"
    EVENTFD = "eventfd"
    INOTIFY = "inotify"
    FANOTIFY = "fanotify"
    SIGNALFD = "signalfd"
    TIMERFD = "timerfd"
    IO_URING = "io_uring"
    PIDFD = "pidfd"
    MEMFD = "memfd"
    OTHER = "other"

    @property
    def is_tcp(self) -> bool:
        return self in (FdKind.TCP, FdKind.TCP6)

    @property
    def is_socket(self) -> bool:
        return self in _SOCKET_KINDS


_SOCKET_KINDS = frozenset(
    {
        FdKind.TCP,
        FdKind.TCP6,
        FdKind.UDP,
        FdKind.UDP6,
        FdKind.UNIX,
        FdKind.NETLINK,
        FdKind.RAW,
        FdKind.PACKET,
    }
)


class TcpState(enum.StrEnum):
    """Socket states with the names `ss` prints. Values are the JSON contract.

    TCP sockets use the kernel's TCP states; UDP and unix sockets use ESTAB
    (connected), LISTEN and UNCONN, as `ss` does.
    """

    ESTAB = "ESTAB"
    SYN_SENT = "SYN-SENT"
    SYN_RECV = "SYN-RECV"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    TIME_WAIT = "TIME-WAIT"
    CLOSE = "CLOSE"
    CLOSE_WAIT = "CLOSE-WAIT"
    LAST_ACK = "LAST-ACK"
    LISTEN = "LISTEN"
    CLOSING = "CLOSING"
    NEW_SYN_RECV = "NEW-SYN-RECV"
    UNCONN = "UNCONN"

    @classmethod
    def from_kernel(cls, code: int) -> TcpState:
        """Map the kernel's numeric TCP state (include/net/tcp_states.h) to its `ss` name."""
        return _TCP_BY_CODE.get(code, cls.CLOSE)


_TCP_BY_CODE: dict[int, TcpState] = {
    1: TcpState.ESTAB,
    2: TcpState.SYN_SENT,
    3: TcpState.SYN_RECV,
    4: TcpState.FIN_WAIT_1,
    5: TcpState.FIN_WAIT_2,
    6: TcpState.TIME_WAIT,
    7: TcpState.CLOSE,
    8: TcpState.CLOSE_WAIT,
    9: TcpState.LAST_ACK,
    10: TcpState.LISTEN,
    11: TcpState.CLOSING,
    12: TcpState.NEW_SYN_RECV,
}

# TCP states that, piling up, point at a bug rather than at traffic: CLOSE-WAIT is
# a peer that hung up on an fd the application never closed; CLOSE is a socket
# that never connected (or whose connect failed) and was never closed.
TROUBLE_STATES = frozenset({TcpState.CLOSE_WAIT, TcpState.CLOSE})


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A process identity that survives PID reuse: its PID plus its start time.

    `start_time` is field 22 of /proc/PID/stat, in clock ticks since boot.
    """

    pid: int
    start_time: int


@dataclass(frozen=True, slots=True)
class Limits:
    """RLIMIT_NOFILE of a process; None means unlimited."""

    soft: int | None
    hard: int | None

    def to_json(self) -> dict[str, int | None]:
        return {"soft": self.soft, "hard": self.hard}


@dataclass(frozen=True, slots=True)
class FdInfo:
    """What /proc/PID/fdinfo/FD says about one fd."""

    pos: int
    flags: int
    mnt_id: int | None = None
    ino: int | None = None
    epoll_targets: tuple[int, ...] | None = None
    inotify_watches: int | None = None
    eventfd_count: int | None = None
    eventfd_id: int | None = None
    pidfd_pid: int | None = None
    timerfd_clockid: int | None = None
    signalfd_mask: int | None = None

    # Open-file flag bits (asm-generic/fcntl.h); fdinfo prints them in octal.
    O_NONBLOCK = 0o4000
    O_CLOEXEC = 0o2000000
    O_ACCMODE = 0o3

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & self.O_NONBLOCK)

    @property
    def cloexec(self) -> bool:
        return bool(self.flags & self.O_CLOEXEC)

    @property
    def access_mode(self) -> str:
        return ("r", "w", "rw", "rw")[self.flags & self.O_ACCMODE]


class SocketEntry(NamedTuple):
    """One row of a kernel socket table (sock_diag or /proc/net), keyed by inode.

    A NamedTuple rather than a frozen dataclass: a busy host has tens of
    thousands of rows per snapshot, and tuple construction is several times
    cheaper than a frozen dataclass's __init__. It is just as immutable.
    """

    inode: int
    kind: FdKind
    state: TcpState | None = None
    local: str | None = None
    remote: str | None = None
    peer_inode: int | None = None
    recv_q: int | None = None
    send_q: int | None = None
    uid: int | None = None


class Fd(NamedTuple):
    """One classified file descriptor of a process.

    A NamedTuple for the same reason as SocketEntry: a snapshot builds one per
    fd, up to hundreds of thousands, and must cost little more than readlink.
    Use `_replace` to derive a changed copy.
    """

    fd: int
    kind: FdKind
    target: str | None
    inode: int | None = None
    state: TcpState | None = None
    local: str | None = None
    remote: str | None = None
    deleted: bool = False
    info: FdInfo | None = None
    peer_inode: int | None = None
    recv_q: int | None = None
    send_q: int | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fd": self.fd,
            "kind": self.kind.value,
            "target": self.target,
            "state": self.state.value if self.state is not None else None,
            "local": self.local,
            "remote": self.remote,
            "inode": self.inode,
        }
        if self.kind in (FdKind.FILE, FdKind.MEMFD, FdKind.DIR):
            out["deleted"] = self.deleted
        if self.peer_inode is not None:
            out["peer_inode"] = self.peer_inode
        if self.recv_q is not None:
            out["recv_q"] = self.recv_q
            out["send_q"] = self.send_q
        if self.info is not None:
            info = self.info
            out["flags"] = f"0{info.flags:o}"
            out["nonblocking"] = info.nonblocking
            out["cloexec"] = info.cloexec
            out["pos"] = info.pos
            if info.epoll_targets is not None:
                out["epoll_targets"] = list(info.epoll_targets)
            if info.inotify_watches is not None:
                out["inotify_watches"] = info.inotify_watches
            if info.eventfd_count is not None:
                out["eventfd_count"] = info.eventfd_count
            if info.pidfd_pid is not None:
                out["pidfd_pid"] = info.pidfd_pid
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every fd of one process at one moment, classified, with the process's limits.

    `complete` is False when some fds could not be fully classified (their
    notes say why); `socket_source` names the socket table that was used.
    """

    process: ProcessRef
    command: tuple[str, ...]
    limits: Limits
    fds: tuple[Fd, ...]
    taken_at: float
    socket_source: str
    runtime: dict[str, Any] | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def count(self) -> int:
        return len(self.fds)

    @property
    def by_kind(self) -> dict[str, int]:
        return dict(Counter(fd.kind.value for fd in self.fds).most_common())

    @property
    def by_tcp_state(self) -> dict[str, int]:
        return dict(
            Counter(
                fd.state.value for fd in self.fds if fd.kind.is_tcp and fd.state is not None
            ).most_common()
        )

    @property
    def share_of_soft_limit(self) -> float | None:
        if not self.limits.soft:
            return None
        return self.count / self.limits.soft

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.process.pid,
            "start_time": self.process.start_time,
            "command": list(self.command),
            "limits": self.limits.to_json(),
            "count": self.count,
            "share_of_soft_limit": self.share_of_soft_limit,
            "by_kind": self.by_kind,
            "by_tcp_state": self.by_tcp_state,
            "runtime": self.runtime
            if self.runtime is not None
            else {"name": None, "libuv_version": None},
            "taken_at": self.taken_at,
            "socket_source": self.socket_source,
            "warnings": list(self.warnings),
            "fds": [fd.to_json() for fd in self.fds],
        }
