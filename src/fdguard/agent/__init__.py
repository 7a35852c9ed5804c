"""In-process agent for Python services (asyncio or uvloop): list what owns each fd, on request.

Start it with `python -m fdguard.agent app.py ...` or `import fdguard.agent;
fdguard.agent.start()`. It serves an owner-only unix socket,
$FDGUARD_AGENT_DIR/PID.sock (default /tmp/fdguard-UID/PID.sock, directory mode
0700, socket 0600); a client sends one line and gets one JSON document back.

What it lists, found through the garbage collector at the moment of the
request (so nothing has to be registered in advance):
  - event loops, and for selector loops their epoll fd and self-pipe sockets;
  - transports and servers (asyncio's and uvloop's), with their socket's fd and
    whether they are closing;
  - socket.socket objects (the application's and the libraries');
  - raw file objects (io.FileIO): what `open()` returned and was not closed.
uvloop's libuv-level handles have no Python-visible fd beyond these; its loop
internals (epoll, pipes, eventfd, ring) are found from outside by fdguard.

Applications may also publish their own expected count of open resources with
`publish(name, count)`; the agent returns it as-is.

The agent never changes the application: its thread is a daemon, its socket
file is removed at exit, and errors inside it are swallowed, never raised into
the application.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import io
import json
import os
import selectors
import socket
import sys
import threading
from typing import Any

_published: dict[str, int] = {}
_state: dict[str, Any] = {}


def socket_dir() -> str:
    """Where agents put their sockets: $FDGUARD_AGENT_DIR, else /tmp/fdguard-UID."""
    return os.environ.get("FDGUARD_AGENT_DIR") or f"/tmp/fdguard-{os.getuid()}"


def publish(name: str, count: int, *, expected_fds: int | None = None) -> None:
    """Publish the application's own count of an open resource (e.g. "db_connections").

    The counts go out with the agent's answers and, for tools without the agent,
    to the documented file $FDGUARD_AGENT_DIR/PID.expected.json (see
    fdguard.runtimes.published), replaced atomically.
    """
    _published[name] = int(count)
    if expected_fds is not None:
        _state["expected_fds"] = int(expected_fds)
    directory = socket_dir()
    path = os.path.join(directory, f"{os.getpid()}.expected.json")
    tmp = f"{path}.{threading.get_ident()}.tmp"
    doc = {"expected_fds": _state.get("expected_fds"), "resources": dict(_published)}
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except OSError:
        return
    if "published_cleanup" not in _state:
        _state["published_cleanup"] = True
        atexit.register(_unlink_if_mine, path, os.getpid())


def _unlink_if_mine(path: str, pid: int) -> None:
    if os.getpid() == pid:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _sock_detail(s: socket.socket) -> str:
    try:
        local = s.getsockname()
    except OSError:
        local = None
    try:
        remote = s.getpeername()
    except OSError:
        remote = None
    fam = {socket.AF_INET: "inet", socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}.get(
        s.family, str(s.family)
    )
    text = f"{fam} {local!r}" if local else fam
    if remote:
        text += f" -> {remote!r}"
    return text


def collect() -> dict[str, Any]:
    """Everything in this process that says it owns an fd, as the agent's JSON payload."""
    objects: list[dict[str, Any]] = []
    loops: list[dict[str, Any]] = []
    internal_ids: set[int] = set()
    agent_ids = {id(x) for x in _state.get("own", ())}
    everything = gc.get_objects()

    def add(fd: int, kind: str, owns: str, detail: str | None = None,
            closing: bool | None = None, active: bool | None = None) -> None:
        if fd >= 0:
            objects.append({"fd": fd, "type": kind, "owns": owns, "detail": detail,
                            "closing": closing, "active": active})

    for o in everything:
        if isinstance(o, asyncio.AbstractEventLoop):
            entry: dict[str, Any] = {"type": f"{type(o).__module__}.{type(o).__qualname__}",
                                     "closed": o.is_closed(), "running": o.is_running()}
            backend = getattr(o, "_get_backend_id", None)  # uvloop: uv_backend_fd()
            if callable(backend):
                with contextlib.suppress(Exception):
                    entry["epoll_fd"] = int(backend())
            sel = getattr(o, "_selector", None)
            if isinstance(sel, selectors.BaseSelector):
                with contextlib.suppress(Exception):
                    entry["epoll_fd"] = sel.fileno()  # type: ignore[attr-defined]
            for attr in ("_ssock", "_csock"):
                s = getattr(o, attr, None)
                if isinstance(s, socket.socket):
                    internal_ids.add(id(s))
                    add(s.fileno(), "loop-self-pipe", "loop-internal", f"{attr} of {entry['type']}")
            loops.append(entry)

    uv_handles: dict[str, int] = {}
    for o in everything:
        t = type(o)
        # uvloop's libuv handles (UVPoll, UVAsync, UVTimer, TCPServer, TCPTransport...):
        # counted by type; their fds are visible only through transports and servers.
        if t.__module__ == "uvloop.loop" and any(
            b.__name__ == "UVHandle" for b in t.__mro__
        ):
            uv_handles[t.__name__] = uv_handles.get(t.__name__, 0) + 1
        try:
            if isinstance(o, socket.socket):
                if id(o) in internal_ids:
                    continue
                owner = "fdguard agent" if id(o) in agent_ids else None
                detail = _sock_detail(o)
                add(o.fileno(), "socket", "handle", f"{owner}: {detail}" if owner else detail)
            elif hasattr(o, "get_extra_info") and hasattr(o, "is_closing"):
                # Transports: asyncio's, and uvloop's (which are no BaseTransport subclass).
                extra = o.get_extra_info("socket") or o.get_extra_info("pipe")
                fileno = getattr(extra, "fileno", None)
                if fileno is None:
                    continue
                add(int(fileno()), type(o).__name__, "handle", None, closing=o.is_closing())
            elif hasattr(o, "sockets") and hasattr(o, "is_serving"):
                # Servers: asyncio.Server and uvloop.loop.Server (no AbstractServer subclass).
                for s in o.sockets or ():
                    add(int(s.fileno()), type(o).__name__, "handle", f"server {_sock_detail(s)}",
                        active=bool(o.is_serving()))
            elif isinstance(o, io.FileIO):
                if not o.closed:
                    add(o.fileno(), "file", "fs", str(o.name))
            elif isinstance(o, selectors.BaseSelector):
                fileno = getattr(o, "fileno", None)
                if fileno is not None:
                    add(int(fileno()), "selector", "loop-internal", type(o).__name__)
        except Exception:  # an object mid-teardown must not break the view
            continue
    del everything

    versions: dict[str, str] = {"python": sys.version.split()[0]}
    uvloop = sys.modules.get("uvloop")
    if uvloop is not None:
        versions["uvloop"] = str(getattr(uvloop, "__version__", "?"))
        with contextlib.suppress(Exception):
            v = int(uvloop.loop.libuv_get_version())
            versions["uv"] = f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"
    return {"agent": "python", "pid": os.getpid(), "versions": versions, "loops": loops,
            "objects": objects, "uv_handles": uv_handles, "published": dict(_published)}


def _serve(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        try:
            _state["own"] = (server, conn)
            conn.settimeout(5)
            conn.recv(64)
            conn.sendall(json.dumps(collect()).encode())
        except Exception:  # never raise into the application
            conn.close()
        finally:
            _state["own"] = (server,)
            conn.close()


def start() -> str | None:
    """Start the agent (once); return its socket path, or None if it could not start safely."""
    if "path" in _state:
        return str(_state["path"])
    directory = socket_dir()
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        # Owner-only: refuse a directory that others own or can enter.
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None
        path = os.path.join(directory, f"{os.getpid()}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            server.bind(path)
        finally:
            os.umask(old)
        server.listen(4)
    except OSError:
        return None
    _state.update(path=path, own=(server,))
    threading.Thread(target=_serve, args=(server,), name="fdguard-agent", daemon=True).start()
    pid = os.getpid()

    def _cleanup() -> None:
        if os.getpid() == pid:
            with contextlib.suppress(OSError):
                os.unlink(path)

    atexit.register(_cleanup)
    return path


__all__ = ["collect", "publish", "socket_dir", "start"]
