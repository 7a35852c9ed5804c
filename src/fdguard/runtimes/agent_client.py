"""Ask fdguard's in-process agent (Node or Python) for its handle view.

The agent listens on $FDGUARD_AGENT_DIR/PID.sock of the target (default
/tmp/fdguard-UID/PID.sock). Before connecting, the client checks the socket
belongs to the target's user and is owner-only, so a socket planted by
someone else is never trusted. A stale socket (the agent's process was
killed) refuses the connection: that is "no agent", not an error.
"""

from __future__ import annotations

import json
import socket
import stat
from typing import Any

from fdguard.errors import FdguardError
from fdguard.procfs.maps import (
    reachable_path,
    read_environ,
    read_nspid,
    read_uids,
    stat_in_root,
)
from fdguard.procfs.process import DEFAULT_ROOT
from fdguard.runtimes.handles import OWNER_HANDLE, Handle, HandleView
from fdguard.runtimes.node_report import parse_report

_MAX_REPLY = 256 << 20


class AgentUnavailable(FdguardError):
    """No usable fdguard agent answers for this process (the reason says why)."""


def agent_file(pid: int, suffix: str, *, root: str = DEFAULT_ROOT) -> tuple[str, int]:
    """Where the agent of `pid` keeps its file PID`suffix`, as `pid` sees it, and
    the effective uid that file must belong to (the directory is the same for
    the socket and for published counts).

    Raises:
        NoSuchProcess, AccessDenied.
    """
    try:
        env = read_environ(pid, root=root)
    except FdguardError:
        env = {}
    _, euid = read_uids(pid, root=root)
    directory = env.get("FDGUARD_AGENT_DIR") or f"/tmp/fdguard-{euid}"
    # The agent names its files by the PID it knows itself by: inside a container
    # that is its PID in the container's namespace, not ours.
    return f"{directory}/{read_nspid(pid, root=root)}{suffix}", euid


def agent_socket_path(pid: int, *, root: str = DEFAULT_ROOT) -> str:
    """Where the agent of `pid` would listen, as `pid` sees it.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    return agent_file(pid, ".sock", root=root)[0]


def _view_from(doc: dict[str, Any]) -> HandleView:
    if doc.get("agent") == "node" and isinstance(doc.get("report"), dict):
        view = parse_report(doc["report"], "agent:node")
        own = {fd for fd in doc.get("agent_fds") or () if isinstance(fd, int)}
        handles = tuple(
            Handle(h.type, h.fd, h.owns, h.active, h.referenced, h.closing,
                   f"fdguard agent: {h.detail or ''}".strip()) if h.fd in own else h
            for h in view.handles
        )
        return HandleView(view.source, handles, view.versions, view.notes)
    if doc.get("agent") == "python":
        found: list[Handle] = []
        for o in doc.get("objects") or ():
            if isinstance(o, dict) and isinstance(o.get("fd"), int):
                found.append(Handle(
                    type=str(o.get("type", "?")),
                    fd=o["fd"],
                    owns=str(o.get("owns", OWNER_HANDLE)),
                    active=o.get("active"),
                    closing=o.get("closing"),
                    detail=o.get("detail"),
                ))
        for lp in doc.get("loops") or ():
            if isinstance(lp, dict) and isinstance(lp.get("epoll_fd"), int):
                found.append(Handle("event-loop", lp["epoll_fd"], "loop-internal",
                                      detail=f"{lp.get('type')} epoll (uv_backend_fd)"))
        for name, n in (doc.get("uv_handles") or {}).items():
            if isinstance(n, int):
                found.extend(Handle(f"uvloop.{name}", None) for _ in range(min(n, 100_000)))
        versions = {k: str(v) for k, v in (doc.get("versions") or {}).items()}
        notes = ["the Python agent lists loops, transports, servers, sockets and open "
                 "file objects found by the garbage collector"]
        published = doc.get("published") or {}
        if published:
            notes.append("published by the application: " +
                         ", ".join(f"{k}={v}" for k, v in published.items()))
        return HandleView("agent:python", tuple(found), versions, tuple(notes))
    raise AgentUnavailable(f"the agent answered with an unknown payload ({doc.get('agent')!r})")


def query_agent(pid: int, *, root: str = DEFAULT_ROOT, timeout: float = 10.0) -> HandleView:
    """The handle view from the agent inside `pid`.

    Raises:
        AgentUnavailable: no agent, a stale or untrusted socket, or a bad answer.
        NoSuchProcess, AccessDenied: reading the process.
    """
    path, euid = agent_file(pid, ".sock", root=root)
    try:
        st = stat_in_root(pid, path, root=root)
    except OSError as err:
        raise AgentUnavailable(f"no agent socket at {path}") from err
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != euid or st.st_mode & 0o077:
        raise AgentUnavailable(f"{path} is not an owner-only socket of uid {euid}: not trusted")
    target = reachable_path(pid, path, root=root)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(target)
        except OSError as err:
            raise AgentUnavailable(f"agent socket {path} refused: {err.strerror}") from err
        sock.sendall(b"view\n")
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError as err:
                raise AgentUnavailable(f"the agent of pid {pid} did not answer in time") from err
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_REPLY:
                raise AgentUnavailable("the agent's answer is too large")
    finally:
        sock.close()
    try:
        doc = json.loads(b"".join(chunks))
    except ValueError as err:
        raise AgentUnavailable(f"the agent of pid {pid} sent malformed JSON") from err
    if not isinstance(doc, dict):
        raise AgentUnavailable(f"the agent of pid {pid} sent no JSON object")
    if doc.get("pid") not in (read_nspid(pid, root=root), None):
        raise AgentUnavailable(f"the agent socket {path} answers for another process")
    return _view_from(doc)


def has_agent_socket(pid: int, *, root: str = DEFAULT_ROOT) -> bool:
    """True when an agent socket file exists for `pid` (it may still be stale)."""
    try:
        return stat.S_ISSOCK(stat_in_root(pid, agent_socket_path(pid, root=root),
                                          root=root).st_mode)
    except (OSError, FdguardError):
        return False


__all__ = ["AgentUnavailable", "agent_file", "agent_socket_path", "has_agent_socket", "query_agent"]
