"""The guard's control socket: `fdguard guard restart|status|stop` talk to a running guard.

A unix stream socket in a directory only the guard's user can enter (0700),
itself mode 0600, and every peer's uid checked with SO_PEERCRED (root or the
guard's own user): restarting a service is not for everyone on the machine.
One JSON line in, one JSON line out.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from fdguard.errors import AccessDenied, FdguardError, UsageError

_UCRED = struct.Struct("3i")
MAX_REQUEST = 4096


class GuardNotRunning(FdguardError):
    """No guard answers on the control socket (not started, or it exited)."""


def runtime_dir(name: str, base: str | None = None) -> Path:
    """The private directory of the guard `name`: $XDG_RUNTIME_DIR/fdguard/NAME or /tmp.

    Created 0700 if missing; an existing one must belong to us and not be
    group/world accessible.

    Raises:
        UsageError: the directory is someone else's or too open.
    """
    if base is None:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(xdg, "fdguard") if xdg else f"/tmp/fdguard-{os.getuid()}"
    path = Path(base) / name
    for p in (Path(base), path):
        p.mkdir(mode=0o700, exist_ok=True)
        st = p.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise UsageError(f"{p} is not a directory owned by uid {os.getuid()}")
        if st.st_mode & 0o077:
            raise UsageError(f"{p} is accessible by other users (mode {st.st_mode & 0o777:o})")
    return path


def control_path(name: str, base: str | None = None) -> Path:
    return runtime_dir(name, base) / "control.sock"


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(creds)[1])


class ControlServer:
    """The listening end, owned by the supervisor's loop (non-blocking accept)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            old = os.umask(0o177)
            try:
                self.sock.bind(self.path)
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
            self.sock.listen(16)
        except BaseException:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, dict[str, Any]] | None:
        """Accept one client and read its request; None when nobody is waiting.

        The client gets at most one second to send its line (it is a local tool,
        not a network peer); a peer of another uid is refused.
        """
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        try:
            conn.setblocking(True)
            conn.settimeout(1.0)
            uid = peer_uid(conn)
            if uid not in (0, os.getuid()):
                reply(conn, {"ok": False, "error": f"uid {uid} may not control this guard"})
                conn.close()
                return None
            buf = b""
            while b"\n" not in buf and len(buf) < MAX_REQUEST:
                chunk = conn.recv(MAX_REQUEST)
                if not chunk:
                    break
                buf += chunk
            try:
                req = json.loads(buf.split(b"\n", 1)[0] or b"{}")
                if not isinstance(req, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                reply(conn, {"ok": False, "error": f"bad request: {err}"})
                conn.close()
                return None
            return conn, req
        except OSError:
            conn.close()
            return None

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def reply(conn: socket.socket, doc: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(doc).encode() + b"\n")


def send_command(
    path: str | Path, request: dict[str, Any], timeout: float = 10.0
) -> dict[str, Any]:
    """Send one request to the guard at `path` and return its answer.

    Raises:
        GuardNotRunning: nothing listens there.
        AccessDenied: the socket is not ours to use.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as err:
            raise GuardNotRunning(f"no guard is listening on {path}") from err
        except PermissionError as err:
            raise AccessDenied(0, f"control socket {path}") from err
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise GuardNotRunning(f"the guard on {path} closed the connection without answering")
    doc = json.loads(buf.split(b"\n", 1)[0])
    if not isinstance(doc, dict):
        raise GuardNotRunning(f"the guard on {path} answered {doc!r}")
    return doc
