"""Ask a socket itself what it is, when it sits in no kernel socket table.

A TCP socket that never connected, or whose connect failed, is in none of the
tables sock_diag or /proc/net show. That is exactly the fd a failed
`uv_tcp_connect` leaks, so it must still be classified. pidfd_getfd(2) (Linux
5.6+, needs ptrace rights over the target) duplicates the target's fd into
fdguard; getsockopt(SO_DOMAIN/SO_TYPE/SO_PROTOCOL), which Python's socket()
does for us on a bare fileno, then tells its family and type. The duplicate
is closed before returning, whatever happens.
"""

from __future__ import annotations

import ctypes
import os
import socket
from dataclasses import dataclass

from fdguard.model import FdKind, TcpState

# pidfd_getfd has the same number on every architecture (asm-generic unistd).
_SYS_PIDFD_GETFD = 438

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


@dataclass(frozen=True, slots=True)
class ProbedSocket:
    """What getsockopt says about a socket found in no table."""

    kind: FdKind
    state: TcpState | None
    local: str | None


def _pidfd_getfd(pidfd: int, fd: int) -> int:
    res = _syscall(_SYS_PIDFD_GETFD, ctypes.c_int(pidfd), ctypes.c_int(fd), ctypes.c_uint(0))
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(res)


def _kind_of(family: int, sock_type: int) -> FdKind:
    if family in (socket.AF_INET, socket.AF_INET6):
        v6 = family == socket.AF_INET6
        if sock_type == socket.SOCK_STREAM:
            return FdKind.TCP6 if v6 else FdKind.TCP
        if sock_type == socket.SOCK_DGRAM:
            return FdKind.UDP6 if v6 else FdKind.UDP
        return FdKind.RAW
    if family == socket.AF_UNIX:
        return FdKind.UNIX
    if family == socket.AF_NETLINK:
        return FdKind.NETLINK
    if family == getattr(socket, "AF_PACKET", 17):
        return FdKind.PACKET
    return FdKind.OTHER


def _format_local(family: int, name: object) -> str | None:
    if family == socket.AF_INET and isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    if family == socket.AF_INET6 and isinstance(name, tuple):
        return f"[{name[0]}]:{name[1]}"
    if isinstance(name, str) and name:
        return name
    return None


class SocketProber:
    """Probes sockets of one process through a pidfd; close() it when done."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def probe(self, fd: int) -> ProbedSocket:
        """Classify the target's socket `fd`.

        Raises:
            OSError: pidfd_getfd refused (EPERM without ptrace rights) or the fd closed.
        """
        dup = _pidfd_getfd(self._pidfd, fd)
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            raise
        with sock:
            family = int(sock.family)
            kind = _kind_of(family, int(sock.type) & 0xF)
            try:
                local = _format_local(family, sock.getsockname())
            except OSError:
                local = None
        if local is not None and local.endswith(":0"):
            local = None
        if kind.is_tcp:
            state: TcpState | None = TcpState.CLOSE
        elif kind in (FdKind.UDP, FdKind.UDP6, FdKind.UNIX):
            state = TcpState.UNCONN
        else:
            state = None
        return ProbedSocket(kind=kind, state=state, local=local)
