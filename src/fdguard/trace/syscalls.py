"""The syscalls `trace` follows: which create fds, which close them, which explain a leak.

One table so the strace command line and the lifecycle tracker cannot disagree.
Names prefixed "?" in the strace filter are ones some architectures lack
(open, creat, pipe, ... exist on x86_64 but not on arm64); strace then ignores
them instead of refusing to start.
"""

from __future__ import annotations

from dataclasses import dataclass

from fdguard.model import FdKind

# Syscalls whose return value is a new fd.
CREATE_RETURN = frozenset(
    {
        "open",
        "openat",
        "openat2",
        "creat",
        "socket",
        "accept",
        "accept4",
        "dup",
        "epoll_create",
        "epoll_create1",
        "eventfd",
        "eventfd2",
        "inotify_init",
        "inotify_init1",
        "signalfd",
        "signalfd4",
        "timerfd_create",
        "memfd_create",
        "pidfd_open",
        "pidfd_getfd",
        "io_uring_setup",
        "fanotify_init",
    }
)
# Syscalls that fill an array argument with two new fds.
CREATE_PAIR = frozenset({"pipe", "pipe2", "socketpair"})
# dup2/dup3(old, new): new is (re)created, closing what it held.
DUP_TO = frozenset({"dup2", "dup3"})
# fcntl commands that return a new fd.
FCNTL_DUP = frozenset({"F_DUPFD", "F_DUPFD_CLOEXEC"})
# Syscalls that may receive fds with SCM_RIGHTS.
RECV_FDS = frozenset({"recvmsg", "recvmmsg"})
CLOSE = frozenset({"close", "close_range"})
# Syscalls on an fd (first argument) whose failure explains why it was kept.
AFTER = frozenset({"connect", "bind", "listen", "getsockopt", "accept", "accept4"})
EPOLL_CTL = "epoll_ctl"
# Process structure: which threads share an fd table, and exec's close-on-exec.
PROCESS = frozenset({"clone", "clone3", "fork", "vfork", "execve", "execveat"})

# Errors that are the normal life of a non-blocking fd, not an explanation.
ROUTINE_ERRORS = frozenset({"EAGAIN", "EWOULDBLOCK", "EINPROGRESS", "EINTR", "EALREADY"})
# Errors that mean the fd table or the system file table is full.
EXHAUSTION_ERRORS = frozenset({"EMFILE", "ENFILE"})

_OPTIONAL = frozenset(
    {
        "open",
        "creat",
        "pipe",
        "dup2",
        "epoll_create",
        "eventfd",
        "inotify_init",
        "signalfd",
        "fork",
        "vfork",
        "openat2",
        "close_range",
        "pidfd_open",
        "pidfd_getfd",
        "io_uring_setup",
        "clone3",
        "fanotify_init",
    }
)


@dataclass(frozen=True, slots=True)
class Follow:
    """Which frequent syscalls to follow beyond births, failures and process structure.

    Each followed syscall costs a stop and, with -k, a stack unwind, which on a
    large binary such as node takes milliseconds (bench/trace_cost.py): closes
    and epoll_ctl happen on every connection, recvmsg on every UDP datagram or
    IPC message. Births alone are cheap enough to leave on a busy server; when
    closes are not followed, an fd counts as still open only if the snapshot
    taken right after the window holds the same object under that number.
    """

    closes: bool = False
    epoll: bool = False
    scm_rights: bool = False

    @classmethod
    def everything(cls) -> Follow:
        return cls(closes=True, epoll=True, scm_rights=True)

    def names(self) -> tuple[str, ...]:
        out = []
        if self.closes:
            out.append("closes")
        if self.epoll:
            out.append("epoll")
        if self.scm_rights:
            out.append("scm_rights")
        return tuple(out)


def strace_filter(follow: Follow | None = None) -> str:
    """The `-e trace=` value for `follow` (default: everything), optional names with '?'."""
    f = follow or Follow.everything()
    names = (
        CREATE_RETURN
        | CREATE_PAIR
        | DUP_TO
        | {"fcntl", "close_range"}
        | AFTER
        | PROCESS
        | ({"close"} if f.closes else set())
        | (RECV_FDS if f.scm_rights else set())
        | ({EPOLL_CTL} if f.epoll else set())
    )
    return ",".join(("?" + n) if n in _OPTIONAL else n for n in sorted(names))


_SOCKET_KINDS: dict[tuple[str, str], FdKind] = {
    ("AF_INET", "SOCK_STREAM"): FdKind.TCP,
    ("AF_INET6", "SOCK_STREAM"): FdKind.TCP6,
    ("AF_INET", "SOCK_DGRAM"): FdKind.UDP,
    ("AF_INET6", "SOCK_DGRAM"): FdKind.UDP6,
}


def socket_kind(domain: str, type_flags: str) -> FdKind:
    """The FdKind of `socket(domain, type|flags, proto)` from strace's symbolic args."""
    sock_type = type_flags.split("|", 1)[0]
    if domain in ("AF_UNIX", "AF_LOCAL"):
        return FdKind.UNIX
    if domain == "AF_NETLINK":
        return FdKind.NETLINK
    if domain == "AF_PACKET":
        return FdKind.PACKET
    if sock_type == "SOCK_RAW":
        return FdKind.RAW
    return _SOCKET_KINDS.get((domain, sock_type), FdKind.OTHER)
