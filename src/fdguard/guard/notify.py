"""The sd_notify receiving end: a datagram socket workers tell `READY=1` to.

Same protocol as systemd's NOTIFY_SOCKET (sd_notify(3)): newline-separated
`KEY=VALUE` datagrams. SO_PASSCRED makes the kernel attach the sender's pid to
each datagram, so a message is credited to the worker that sent it, or whose
descendant sent it (a wrapper such as `npm start`); MAINPID= names the process
that serves.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass

_UCRED = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class NotifyMessage:
    """One datagram: the sender's pid (from the kernel) and its fields."""

    pid: int
    fields: dict[str, str]

    @property
    def ready(self) -> bool:
        return self.fields.get("READY") == "1"

    @property
    def stopping(self) -> bool:
        return self.fields.get("STOPPING") == "1"

    @property
    def main_pid(self) -> int | None:
        main = self.fields.get("MAINPID", "")
        return int(main) if main.isdigit() else None


def parse_notify(data: bytes) -> dict[str, str]:
    """Parse `KEY=VALUE` lines; lines without `=` are ignored, as systemd does."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            out[key] = value
    return out


class NotifySocket:
    """A bound, non-blocking AF_UNIX datagram socket at `path` (mode 0600)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self.sock.bind(path)
            os.chmod(path, 0o600)
        except BaseException:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[NotifyMessage]:
        """Every datagram waiting now (never blocks)."""
        out: list[NotifyMessage] = []
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
            except (BlockingIOError, InterruptedError):
                return out
            pid = 0
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack(payload[: _UCRED.size])[0]
            out.append(NotifyMessage(pid=pid, fields=parse_notify(data)))

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def sd_notify(message: bytes, path: str | None) -> bool:
    """Send one sd_notify datagram to `path` (a NOTIFY_SOCKET value; '@' is abstract).

    Returns False when there is no socket to tell or it is gone: telling the
    service manager is best effort, as with sd_notify(3).
    """
    if not path:
        return False
    addr = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.sendto(message, addr)
        except OSError:
            return False
    return True
