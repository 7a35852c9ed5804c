"""The syscalls `trace` follows: which create fds, which close them, which explain a leak.

One table so the strace command line and the lifecycle tracker cannot disagree.
Names prefixed "?" in the strace filter are ones some architectures lack
(open, creat, pipe, ... exist on x86_64 but not on arm64); strace then ignores
them instead of refusing to start.
"""

from __future__ import annotations

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


def strace_filter(*, epoll: bool = True) -> str:
    """The `-e trace=` value: every syscall above, optional ones marked with '?'."""
    names = (
        CREATE_RETURN
        | CREATE_PAIR
        | DUP_TO
        | {"fcntl"}
        | RECV_FDS
        | CLOSE
        | AFTER
        | PROCESS
        | ({EPOLL_CTL} if epoll else set())
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
