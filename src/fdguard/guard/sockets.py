"""The listening sockets a guard owns, and handing them to workers the systemd way.

Design: the guard, not the worker, owns every listening socket. It binds them
once (or adopts the ones systemd passed to it) and every worker inherits the
*same* sockets at fds 3, 4, ... with `LISTEN_FDS`, `LISTEN_PID` and
`LISTEN_FDNAMES` set (sd_listen_fds(3)). While an old and a new worker both
hold a socket, both accept from its one queue; when the old one stops
accepting, connections still queued are taken by the new one. Nothing is
refused during a restart because the socket never closes: that is the whole
trick, and why no SO_REUSEPORT dance is needed.

How servers pick them up:

- Node.js: `server.listen({fd: 3})` when `process.env.LISTEN_FDS` is set
  (check `LISTEN_PID == process.pid`).
- asyncio / uvloop: `await loop.create_server(proto, sock=socket.socket(fileno=3))`.
- C on libuv: `uv_tcp_open(&server, 3)` then `uv_listen`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fdguard.errors import UsageError
from fdguard.guard.spec import ListenSpec

SD_LISTEN_FDS_START = 3
BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class Listener:
    """A bound, listening socket owned by the guard."""

    spec: ListenSpec
    sock: socket.socket
    inode: int
    adopted: bool = False

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    @property
    def address(self) -> str:
        """The bound address (with the real port when the spec asked for port 0)."""
        if self.spec.family == "unix":
            return f"unix:{self.spec.path}"
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1]) if self.spec.family == "tcp" else 0


def bind(spec: ListenSpec) -> Listener:
    """Create, bind and listen. TCP gets SO_REUSEADDR so a restarted guard rebinds at once.

    Raises:
        UsageError: the address is in use or cannot be bound.
    """
    if spec.family == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(spec.path).st_mode):
                    os.unlink(spec.path)  # a stale socket file from a previous run
            sock.bind(spec.path)
        except OSError as err:
            sock.close()
            raise UsageError(f"cannot bind {spec}: {err.strerror}") from err
    else:
        fam = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((spec.host, spec.port))
        except OSError as err:
            sock.close()
            raise UsageError(f"cannot bind {spec}: {err.strerror}") from err
    sock.listen(BACKLOG)
    return Listener(spec=spec, sock=sock, inode=os.fstat(sock.fileno()).st_ino)


def adopt_systemd(
    specs: Sequence[ListenSpec], env: Mapping[str, str] | None = None
) -> list[Listener] | None:
    """Take the sockets systemd passed to *this* process (socket activation), if any.

    Matched to `specs` by LISTEN_FDNAMES when given, else by position. Returns None
    when nothing was passed to us (LISTEN_PID missing or another process's).

    Raises:
        UsageError: systemd passed fewer sockets than the specs name.
    """
    env = os.environ if env is None else env
    if env.get("LISTEN_PID") != str(os.getpid()):
        return None
    n = int(env.get("LISTEN_FDS", "0"))
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n))
    by_name = dict(zip(names, fds, strict=False))
    out = []
    for i, spec in enumerate(specs):
        fd = by_name.get(spec.name, fds[i] if i < len(fds) else None)
        if fd is None:
            raise UsageError(f"systemd passed {n} sockets; none for {spec.name} ({spec})")
        sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)
        out.append(Listener(spec=spec, sock=sock, inode=os.fstat(fd).st_ino, adopted=True))
    return out


def listen_env(listeners: Sequence[Listener]) -> dict[str, str]:
    """The sd_listen_fds(3) variables except LISTEN_PID (set in the child, after fork)."""
    if not listeners:
        return {}
    return {
        "LISTEN_FDS": str(len(listeners)),
        "LISTEN_FDNAMES": ":".join(ls.spec.name for ls in listeners),
    }


def close_all(listeners: Sequence[Listener]) -> None:
    for ls in listeners:
        ls.sock.close()
        if ls.spec.family == "unix" and not ls.adopted:
            with contextlib.suppress(OSError):
                os.unlink(ls.spec.path)
