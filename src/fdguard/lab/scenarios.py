"""The lab scenario catalogue: libuv call loops that must leave the fd table as they found it.

Each scenario is one iteration of libuv calls against the ctypes binding,
normal path or error path, that should end with every fd it made closed again.
`fdguard.lab.child` runs it N times in a child process and counts the fds
after each iteration; `fdguard.lab.runner` turns the counts into a verdict.

Error paths are provoked for real, on loopback and in a scratch directory
only: EMFILE by lowering RLIMIT_NOFILE around the one call (`Ctx.squeeze`),
refused connects against a port held bound but not listening, EADDRINUSE
against a port held by a listening socket, ENOENT on paths that do not exist,
cancellation by closing a handle while its request is pending.

Loop-internal fds that libuv creates once, on first use (the signal pipe, the
async eventfd, the inotify fd, the reserve fd for the EMFILE trick, the
process-global signal lock pipe) are not leaks: the runner takes its baseline
after the first (warm-up) iteration, so only growth after that counts.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fdguard.errors import LabUnsupported
from fdguard.lab import binding as b
from fdguard.procfs.process import ProcessDir

O_RDONLY = os.O_RDONLY
O_CREAT_WRONLY = os.O_CREAT | os.O_WRONLY
RTLD_NOW = 2


def open_fd_numbers() -> set[int]:
    """The fd numbers this process has open, excluding the ones used to list them."""
    with ProcessDir(os.getpid()) as proc:
        links = proc.read_fd_links()
        own = {proc.dir_fd, proc.fd_dir}
    return {fd for fd, _ in links if fd not in own}


def limit_leaving(free: int) -> int:
    """The RLIMIT_NOFILE soft limit under which exactly `free` fd numbers are free.

    The kernel hands out the lowest free number and refuses numbers at or above
    the soft limit, so the limit is set just past the `free`-th hole.
    """
    used = open_fd_numbers()
    lim = 0
    holes = 0
    while holes < free or lim in used:
        if lim not in used:
            if holes == free:
                break
            holes += 1
        lim += 1
    return lim


@dataclass
class Ctx:
    """What one scenario run has: the binding, a loop, a scratch dir and its fixtures."""

    uv: b.Libuv
    libuv_path: str
    workdir: str
    loop: int = 0
    state: dict[str, object] = field(default_factory=dict)
    holders: list[socket.socket] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    # Set for a scenario run under strace fault injection (`Scenario.inject`):
    # `squeeze` then marks the window instead of lowering the fd limit.
    inject: bool = False

    def init_loop(self) -> None:
        self.loop = self.uv.new_loop()
        self.check("uv_loop_init", self.uv.uv_loop_init(self.loop))

    def check(self, what: str, rc: int) -> int:
        """Raise if a call that must succeed (fixture setup) failed."""
        if rc < 0:
            raise RuntimeError(f"{what} failed: {self.uv.err_name(rc)}")
        return rc

    def run(self, mode: int = b.UV_RUN_DEFAULT) -> int:
        return int(self.uv.uv_run(self.loop, mode))

    def close_and_run(self, *handles: int) -> None:
        """Close `handles` and turn the loop until their close callbacks ran.

        NOWAIT turns, not UV_RUN_DEFAULT: a shared loop may hold a listening
        server for the whole run, and DEFAULT would wait on it forever.
        """
        closed: list[int | None] = []
        pending = 0
        for h in handles:
            if not self.uv.uv_is_closing(h):
                self.uv.close(h, closed.append)
                pending += 1
        for _ in range(1000):
            if len(closed) >= pending:
                break
            self.run(b.UV_RUN_NOWAIT)

    @contextlib.contextmanager
    def squeeze(self, free: int) -> Iterator[None]:
        """Exhaust the fd table around a call: exactly `free` fds can be opened inside.

        Real exhaustion has every number below the limit taken, so the holes
        below the highest open fd are first filled with placeholders, then the
        soft limit is set `free` numbers past the highest fd. (Merely lowering
        the limit below open fds would also refuse the number libuv frees for
        its EMFILE trick, which never happens for real.) Placeholders close and
        the limit returns on exit, before anything is counted.

        Under fault injection (`self.inject`) nothing is squeezed: the window is
        marked by a `sched_yield` on entry and on exit, which the runner's dry
        run under strace uses to find the invocation number of the first
        injected call (see `fdguard.lab.runner`).
        """
        if self.inject:
            os.sched_yield()
            try:
                yield
            finally:
                os.sched_yield()
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = open_fd_numbers()
        top = max(used, default=-1)
        placeholders: list[int] = []
        try:
            for _ in range(top + 1 - len(used)):
                placeholders.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            top = max(top, *placeholders) if placeholders else top
            resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1 + free, hard))
            try:
                yield
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        finally:
            for fd in placeholders:
                os.close(fd)

    def hold_port(self, kind: int, *, listen: bool) -> int:
        """A loopback port held by a socket of this process for the whole run."""
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        if listen:
            s.listen(64)
            s.setblocking(False)
        self.holders.append(s)
        port: int = s.getsockname()[1]
        return port

    def drain(self) -> None:
        """Accept and close whatever connected to the listening holders."""
        for s in self.holders:
            if s.type == socket.SOCK_STREAM:
                with contextlib.suppress(BlockingIOError, OSError):
                    while True:
                        conn, _ = s.accept()
                        conn.close()

    def teardown(self) -> None:
        for fn in reversed(self.cleanups):
            fn()
        self.cleanups.clear()
        for s in self.holders:
            s.close()
        self.holders.clear()


Iteration = Callable[[Ctx], str]
Setup = Callable[[Ctx], None]


@dataclass(frozen=True)
class Scenario:
    """One catalogue entry."""

    name: str
    api: str
    path: str  # "normal" or "error"
    summary: str
    expect: str
    iterate: Iteration
    setup: Setup | None = None
    min_version: str | None = None  # first release with every symbol it needs
    needs_shared_loop: bool = True
    # (syscall, errno, step): run the child under strace failing that syscall
    # with that errno at the first call inside a `Ctx.squeeze` window and every
    # step-th call after it (1: every call from there on).
    inject: tuple[str, str, int] | None = None
    twin: str | None = None  # the scenario this one is the injected variant of


CATALOGUE: dict[str, Scenario] = {}


def scenario(
    name: str,
    api: str,
    path: str,
    summary: str,
    expect: str = "no fd growth after the warm-up iteration",
    *,
    setup: Setup | None = None,
    min_version: str | None = None,
    shared_loop: bool = True,
) -> Callable[[Iteration], Iteration]:
    def register(fn: Iteration) -> Iteration:
        CATALOGUE[name] = Scenario(
            name, api, path, summary, expect, fn, setup, min_version, shared_loop
        )
        return fn

    return register


def _cb(ctx: Ctx, factory: type, fn: Callable[..., None]) -> object:
    cb = factory(fn)
    ctx.uv.keep(cb)
    return cb


def _port_of(ctx: Ctx, getsockname: str, handle: int) -> int:
    buf = ctx.uv.buffer(b.SOCKADDR_BYTES)
    n = ctypes.c_int(b.SOCKADDR_BYTES)
    ctx.check(getsockname, ctx.uv.fn(getsockname)(handle, buf, ctypes.byref(n)))
    return int.from_bytes(buf.raw[2:4], "big")


# -- loop ------------------------------------------------------------------


@scenario("loop-churn", "loop", "normal", "uv_loop_init + uv_loop_close on a fresh loop",
          shared_loop=False)
def _loop_churn(ctx: Ctx) -> str:
    loop = ctx.uv.new_loop()
    rc = ctx.uv.uv_loop_init(loop)
    if rc == 0:
        ctx.uv.uv_loop_close(loop)
    return f"init={ctx.uv.err_name(rc)}"


def _warm_loop(ctx: Ctx) -> None:
    # The first loop in a process also creates libuv's process-global signal
    # lock pipe, whose failure aborts: create it before any squeeze.
    loop = ctx.uv.new_loop()
    ctx.check("uv_loop_init", ctx.uv.uv_loop_init(loop))
    ctx.uv.uv_loop_close(loop)


@scenario("loop-init-emfile", "loop", "error",
          "uv_loop_init with one free fd: the epoll fd fits, the next fd does not (EMFILE)",
          "uv_loop_init fails and closes everything it opened",
          setup=_warm_loop, shared_loop=False)
def _loop_init_emfile(ctx: Ctx) -> str:
    loop = ctx.uv.new_loop()
    with ctx.squeeze(1):
        rc = ctx.uv.uv_loop_init(loop)
    if rc == 0:
        ctx.uv.uv_loop_close(loop)
    return f"init={ctx.uv.err_name(rc)}"


# -- tcp -------------------------------------------------------------------


def _hold_refusing_port(ctx: Ctx) -> None:
    # Bound but not listening: a SYN to it gets a RST, i.e. ECONNREFUSED.
    ctx.state["port"] = ctx.hold_port(socket.SOCK_STREAM, listen=False)


@scenario("tcp-connect-refused", "tcp", "error",
          "uv_tcp_connect to a loopback port nobody listens on; close in the callback",
          "the connect callback gets ECONNREFUSED; closing the handle closes the socket",
          setup=_hold_refusing_port)
def _tcp_connect_refused(ctx: Ctx) -> str:
    uv = ctx.uv
    tcp = uv.new_handle(b.HandleType.TCP)
    req = uv.new_req(b.ReqType.CONNECT)
    seen: list[int] = []

    def on_connect(_req: int | None, status: int) -> None:
        seen.append(status)
        uv.close(tcp)

    ctx.check("uv_tcp_init", uv.uv_tcp_init(ctx.loop, tcp))
    rc = uv.uv_tcp_connect(req, tcp, uv.ip4("127.0.0.1", int(ctx.state["port"])),  # type: ignore[call-overload]
                           _cb(ctx, b.ConnectCb, on_connect))
    if rc != 0:
        uv.close(tcp)
    ctx.run()
    return f"connect={uv.err_name(rc)} cb={','.join(uv.err_name(s) for s in seen)}"


def _hold_listening_port(ctx: Ctx) -> None:
    ctx.state["port"] = ctx.hold_port(socket.SOCK_STREAM, listen=True)


@scenario("tcp-bind-in-use", "tcp", "error",
          "uv_tcp_bind to a loopback port another socket listens on (EADDRINUSE)",
          setup=_hold_listening_port)
def _tcp_bind_in_use(ctx: Ctx) -> str:
    uv = ctx.uv
    tcp = uv.new_handle(b.HandleType.TCP)
    ctx.check("uv_tcp_init", uv.uv_tcp_init(ctx.loop, tcp))
    rc = uv.uv_tcp_bind(tcp, uv.ip4("127.0.0.1", int(ctx.state["port"])), 0)  # type: ignore[call-overload]
    lrc = 0
    if rc == 0:
        # Some releases defer the bind error to listen().
        lrc = uv.uv_listen(tcp, 8, _cb(ctx, b.ConnectionCb, lambda _s, _st: None))
    ctx.close_and_run(tcp)
    return f"bind={uv.err_name(rc)} listen={uv.err_name(lrc)}"


@scenario("tcp-close-pending-connect", "tcp", "error",
          "uv_close on a TCP handle whose connect request is still pending",
          "the connect callback gets ECANCELED; the socket is closed",
          setup=_hold_listening_port)
def _tcp_close_pending(ctx: Ctx) -> str:
    uv = ctx.uv
    tcp = uv.new_handle(b.HandleType.TCP)
    req = uv.new_req(b.ReqType.CONNECT)
    seen: list[int] = []
    ctx.check("uv_tcp_init", uv.uv_tcp_init(ctx.loop, tcp))
    rc = uv.uv_tcp_connect(req, tcp, uv.ip4("127.0.0.1", int(ctx.state["port"])),  # type: ignore[call-overload]
                           _cb(ctx, b.ConnectCb, lambda _r, st: seen.append(st)))
    uv.close(tcp)
    ctx.run()
    ctx.drain()
    return f"connect={uv.err_name(rc)} cb={','.join(uv.err_name(s) for s in seen)}"


def _uv_server(ctx: Ctx) -> None:
    uv = ctx.uv
    server = uv.new_handle(b.HandleType.TCP)
    statuses: list[int] = []

    def on_connection(srv: int | None, status: int) -> None:
        statuses.append(status)
        if status != 0:
            return
        client = uv.new_handle(b.HandleType.TCP)
        uv.uv_tcp_init(ctx.loop, client)
        statuses.append(uv.uv_accept(srv, client))
        uv.close(client)

    ctx.check("uv_tcp_init", uv.uv_tcp_init(ctx.loop, server))
    ctx.check("uv_tcp_bind", uv.uv_tcp_bind(server, uv.ip4("127.0.0.1", 0), 0))
    ctx.check("uv_listen", uv.uv_listen(server, 64, _cb(ctx, b.ConnectionCb, on_connection)))
    ctx.state["server"] = server
    ctx.state["statuses"] = statuses
    ctx.state["port"] = _port_of(ctx, "uv_tcp_getsockname", server)


def _connect_client(ctx: Ctx) -> socket.socket:
    # The kernel completes the handshake into the backlog; no loop turn needed.
    c = socket.create_connection(("127.0.0.1", int(ctx.state["port"])), timeout=5)  # type: ignore[call-overload]
    return c


@scenario("tcp-listen-accept", "tcp", "normal",
          "a loopback client connects; the uv server accepts and closes the connection",
          setup=_uv_server)
def _tcp_accept(ctx: Ctx) -> str:
    statuses: list[int] = ctx.state["statuses"]  # type: ignore[assignment]
    statuses.clear()
    client = _connect_client(ctx)
    try:
        while not statuses:
            ctx.run(b.UV_RUN_ONCE)
        ctx.run(b.UV_RUN_NOWAIT)
    finally:
        client.close()
    return "cb=" + ",".join(ctx.uv.err_name(s) for s in statuses)


@scenario("tcp-accept-emfile", "tcp", "error",
          "a client connects while no fd is free: accept fails with EMFILE (libuv's EMFILE trick)",
          "libuv's EMFILE trick accepts and closes the pending connection and the callback "
          "is not called (uv__server_io stops at EAGAIN); no fd kept",
          setup=_uv_server)
def _tcp_accept_emfile(ctx: Ctx) -> str:
    statuses: list[int] = ctx.state["statuses"]  # type: ignore[assignment]
    statuses.clear()
    client = _connect_client(ctx)
    try:
        with ctx.squeeze(0):
            ctx.run(b.UV_RUN_NOWAIT)
            ctx.run(b.UV_RUN_NOWAIT)
        ctx.run(b.UV_RUN_NOWAIT)
    finally:
        client.close()
    ctx.run(b.UV_RUN_NOWAIT)
    return "cb=" + ",".join(ctx.uv.err_name(s) for s in statuses)


@scenario("tcp-close-twice", "tcp", "error",
          "uv_close called a second time on a TCP handle that is already closing",
          "a build with assertions aborts (a call on a closing handle is a caller bug)")
def _tcp_close_twice(ctx: Ctx) -> str:
    uv = ctx.uv
    tcp = uv.new_handle(b.HandleType.TCP)
    ctx.check("uv_tcp_init", uv.uv_tcp_init(ctx.loop, tcp))
    uv.close(tcp)
    uv.close(tcp)
    ctx.run()
    return "closed twice"


# -- pipe ------------------------------------------------------------------


def _pipe_server(ctx: Ctx) -> None:
    uv = ctx.uv
    path = os.path.join(ctx.workdir, "lab.sock")
    server = uv.new_handle(b.HandleType.NAMED_PIPE)
    accepted: list[int] = []

    def on_connection(srv: int | None, status: int) -> None:
        accepted.append(status)
        if status == 0:
            client = uv.new_handle(b.HandleType.NAMED_PIPE)
            uv.uv_pipe_init(ctx.loop, client, 0)
            accepted.append(uv.uv_accept(srv, client))
            uv.close(client)

    ctx.check("uv_pipe_init", uv.uv_pipe_init(ctx.loop, server, 0))
    ctx.check("uv_pipe_bind", uv.uv_pipe_bind(server, path.encode()))
    ctx.check("uv_listen", uv.uv_listen(server, 64, _cb(ctx, b.ConnectionCb, on_connection)))
    ctx.state["path"] = path
    ctx.state["accepted"] = accepted


def _pipe_connect(ctx: Ctx, path: str) -> tuple[int, list[int]]:
    uv = ctx.uv
    pipe = uv.new_handle(b.HandleType.NAMED_PIPE)
    req = uv.new_req(b.ReqType.CONNECT)
    seen: list[int] = []

    def on_connect(_req: int | None, status: int) -> None:
        seen.append(status)
        uv.close(pipe)

    ctx.check("uv_pipe_init", uv.uv_pipe_init(ctx.loop, pipe, 0))
    uv.uv_pipe_connect(req, pipe, path.encode(), _cb(ctx, b.ConnectCb, on_connect))
    return pipe, seen


@scenario("pipe-connect-accept", "pipe", "normal",
          "uv_pipe_connect to a uv pipe server on a unix socket; accept; close both ends",
          setup=_pipe_server)
def _pipe_connect_accept(ctx: Ctx) -> str:
    accepted: list[int] = ctx.state["accepted"]  # type: ignore[assignment]
    accepted.clear()
    _, seen = _pipe_connect(ctx, str(ctx.state["path"]))
    while not (seen and accepted):
        ctx.run(b.UV_RUN_ONCE)
    ctx.run(b.UV_RUN_NOWAIT)
    return "connect=" + ",".join(ctx.uv.err_name(s) for s in seen)


@scenario("pipe-connect-enoent", "pipe", "error",
          "uv_pipe_connect to a unix socket path that does not exist",
          "the connect callback gets ENOENT; closing the handle closes the socket")
def _pipe_connect_enoent(ctx: Ctx) -> str:
    _, seen = _pipe_connect(ctx, os.path.join(ctx.workdir, "nobody.sock"))
    ctx.run()
    return "connect=" + ",".join(ctx.uv.err_name(s) for s in seen)


@scenario("pipe-bind-in-use", "pipe", "error",
          "uv_pipe_bind to a path that already exists (EADDRINUSE)",
          setup=_pipe_server)
def _pipe_bind_in_use(ctx: Ctx) -> str:
    uv = ctx.uv
    pipe = uv.new_handle(b.HandleType.NAMED_PIPE)
    ctx.check("uv_pipe_init", uv.uv_pipe_init(ctx.loop, pipe, 0))
    rc = uv.uv_pipe_bind(pipe, str(ctx.state["path"]).encode())
    ctx.close_and_run(pipe)
    return f"bind={uv.err_name(rc)}"


@scenario("pipe-open-close", "pipe", "normal",
          "uv_pipe_open on one end of a socketpair, then uv_close (which closes that fd)",
          "the handle owns the fd after uv_pipe_open: closing it closes the fd")
def _pipe_open(ctx: Ctx) -> str:
    uv = ctx.uv
    a, c = socket.socketpair()
    fd = a.detach()
    pipe = uv.new_handle(b.HandleType.NAMED_PIPE)
    ctx.check("uv_pipe_init", uv.uv_pipe_init(ctx.loop, pipe, 0))
    rc = uv.uv_pipe_open(pipe, fd)
    if rc != 0:
        os.close(fd)
    ctx.close_and_run(pipe)
    c.close()
    return f"open={uv.err_name(rc)}"


# -- udp -------------------------------------------------------------------


class UvBuf(ctypes.Structure):
    _fields_ = [("base", ctypes.c_char_p), ("len", ctypes.c_size_t)]


@scenario("udp-bind-send", "udp", "normal",
          "uv_udp_bind on 127.0.0.1:0 and uv_udp_try_send a datagram to itself; close")
def _udp_send(ctx: Ctx) -> str:
    uv = ctx.uv
    udp = uv.new_handle(b.HandleType.UDP)
    ctx.check("uv_udp_init", uv.uv_udp_init(ctx.loop, udp))
    ctx.check("uv_udp_bind", uv.uv_udp_bind(udp, uv.ip4("127.0.0.1", 0), 0))
    port = _port_of(ctx, "uv_udp_getsockname", udp)
    buf = UvBuf(b"lab", 3)
    uv.keep(buf)
    rc = uv.uv_udp_try_send(udp, ctypes.byref(buf), 1, uv.ip4("127.0.0.1", port))
    ctx.close_and_run(udp)
    return f"try_send={uv.err_name(rc)}"


def _hold_udp_port(ctx: Ctx) -> None:
    ctx.state["port"] = ctx.hold_port(socket.SOCK_DGRAM, listen=False)


@scenario("udp-bind-in-use", "udp", "error",
          "uv_udp_bind to a loopback port another UDP socket holds (EADDRINUSE)",
          setup=_hold_udp_port)
def _udp_bind_in_use(ctx: Ctx) -> str:
    uv = ctx.uv
    udp = uv.new_handle(b.HandleType.UDP)
    ctx.check("uv_udp_init", uv.uv_udp_init(ctx.loop, udp))
    rc = uv.uv_udp_bind(udp, uv.ip4("127.0.0.1", int(ctx.state["port"])), 0)  # type: ignore[call-overload]
    ctx.close_and_run(udp)
    return f"bind={uv.err_name(rc)}"


# -- tty -------------------------------------------------------------------


@scenario("tty-init-close", "tty", "normal",
          "uv_tty_init on a pseudo-terminal (libuv reopens it), then uv_close",
          "the fd libuv reopened is closed with the handle; the caller's fd stays the caller's")
def _tty(ctx: Ctx) -> str:
    uv = ctx.uv
    master, slave = os.openpty()
    try:
        tty = uv.new_handle(b.HandleType.TTY)
        rc = uv.uv_tty_init(ctx.loop, tty, slave, 0)
        if rc == 0:
            ctx.close_and_run(tty)
    finally:
        os.close(master)
        with contextlib.suppress(OSError):
            os.close(slave)
    return f"init={uv.err_name(rc)}"


# -- fs --------------------------------------------------------------------


def _scratch_file(ctx: Ctx) -> None:
    path = os.path.join(ctx.workdir, "data.txt")
    with open(path, "w") as f:
        f.write("lab\n")
    ctx.state["file"] = path


def _fs_open(ctx: Ctx, path: str, flags: int) -> int:
    uv = ctx.uv
    req = uv.new_req(b.ReqType.FS)
    rc = int(uv.uv_fs_open(ctx.loop, req, path.encode(), flags, 0o644, None))
    uv.uv_fs_req_cleanup(req)
    return rc


def _fs_close(ctx: Ctx, fd: int) -> int:
    uv = ctx.uv
    req = uv.new_req(b.ReqType.FS)
    rc = int(uv.uv_fs_close(ctx.loop, req, fd, None))
    uv.uv_fs_req_cleanup(req)
    return rc


@scenario("fs-open-close", "fs", "normal", "synchronous uv_fs_open + uv_fs_close",
          setup=_scratch_file)
def _fs_open_close(ctx: Ctx) -> str:
    fd = _fs_open(ctx, str(ctx.state["file"]), O_RDONLY)
    if fd >= 0:
        _fs_close(ctx, fd)
    return f"open={'fd' if fd >= 0 else ctx.uv.err_name(fd)}"


@scenario("fs-open-emfile", "fs", "error", "uv_fs_open with no free fd (EMFILE)",
          setup=_scratch_file)
def _fs_open_emfile(ctx: Ctx) -> str:
    with ctx.squeeze(0):
        fd = _fs_open(ctx, str(ctx.state["file"]), O_RDONLY)
    if fd >= 0:
        _fs_close(ctx, fd)
    return f"open={'fd' if fd >= 0 else ctx.uv.err_name(fd)}"


@scenario("fs-open-enoent", "fs", "error", "uv_fs_open of a path that does not exist")
def _fs_open_enoent(ctx: Ctx) -> str:
    fd = _fs_open(ctx, os.path.join(ctx.workdir, "missing"), O_RDONLY)
    if fd >= 0:
        _fs_close(ctx, fd)
    return f"open={'fd' if fd >= 0 else ctx.uv.err_name(fd)}"


@scenario("fs-copyfile", "fs", "normal",
          "uv_fs_copyfile (opens source and destination internally)", setup=_scratch_file,
          min_version="1.14.0")
def _fs_copyfile(ctx: Ctx) -> str:
    uv = ctx.uv
    req = uv.new_req(b.ReqType.FS)
    dst = os.path.join(ctx.workdir, "copy.txt")
    rc = uv.uv_fs_copyfile(ctx.loop, req, str(ctx.state["file"]).encode(), dst.encode(), 0, None)
    uv.uv_fs_req_cleanup(req)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dst)
    return f"copyfile={uv.err_name(rc)}"


@scenario("fs-copyfile-enoent-dst", "fs", "error",
          "uv_fs_copyfile into a directory that does not exist: the source was already open",
          "the internally opened source fd is closed on the error path",
          setup=_scratch_file, min_version="1.14.0")
def _fs_copyfile_enoent(ctx: Ctx) -> str:
    uv = ctx.uv
    req = uv.new_req(b.ReqType.FS)
    dst = os.path.join(ctx.workdir, "no-such-dir", "copy.txt")
    rc = uv.uv_fs_copyfile(ctx.loop, req, str(ctx.state["file"]).encode(), dst.encode(), 0, None)
    uv.uv_fs_req_cleanup(req)
    return f"copyfile={uv.err_name(rc)}"


@scenario("fs-copyfile-emfile", "fs", "error",
          "uv_fs_copyfile with one free fd: the source opens, the destination hits EMFILE",
          "the internally opened source fd is closed on the error path",
          setup=_scratch_file, min_version="1.14.0")
def _fs_copyfile_emfile(ctx: Ctx) -> str:
    uv = ctx.uv
    req = uv.new_req(b.ReqType.FS)
    dst = os.path.join(ctx.workdir, "copy.txt")
    with ctx.squeeze(1):
        rc = uv.uv_fs_copyfile(ctx.loop, req, str(ctx.state["file"]).encode(), dst.encode(),
                               0, None)
    uv.uv_fs_req_cleanup(req)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dst)
    return f"copyfile={uv.err_name(rc)}"


@scenario("fs-scandir", "fs", "normal", "synchronous uv_fs_scandir (opens the directory)",
          setup=_scratch_file)
def _fs_scandir(ctx: Ctx) -> str:
    uv = ctx.uv
    req = uv.new_req(b.ReqType.FS)
    rc = uv.uv_fs_scandir(ctx.loop, req, ctx.workdir.encode(), 0, None)
    uv.uv_fs_req_cleanup(req)
    return f"scandir={'n' if rc >= 0 else uv.err_name(rc)}"


# -- fs_event / fs_poll ------------------------------------------------------


def _noop_fs_event(_h: int | None, _f: bytes | None, _e: int, _s: int) -> None:
    return None


@scenario("fs-event-start-stop", "fs_event", "normal",
          "uv_fs_event_start on a directory, stop, close (inotify watch added and removed)")
def _fs_event(ctx: Ctx) -> str:
    uv = ctx.uv
    h = uv.new_handle(b.HandleType.FS_EVENT)
    ctx.check("uv_fs_event_init", uv.uv_fs_event_init(ctx.loop, h))
    rc = uv.uv_fs_event_start(h, _cb(ctx, b.FsEventCb, _noop_fs_event), ctx.workdir.encode(), 0)
    if rc == 0:
        uv.uv_fs_event_stop(h)
    ctx.close_and_run(h)
    return f"start={uv.err_name(rc)}"


@scenario("fs-event-enoent", "fs_event", "error",
          "uv_fs_event_start on a path that does not exist")
def _fs_event_enoent(ctx: Ctx) -> str:
    uv = ctx.uv
    h = uv.new_handle(b.HandleType.FS_EVENT)
    ctx.check("uv_fs_event_init", uv.uv_fs_event_init(ctx.loop, h))
    missing = os.path.join(ctx.workdir, "missing")
    rc = uv.uv_fs_event_start(h, _cb(ctx, b.FsEventCb, _noop_fs_event), missing.encode(), 0)
    ctx.close_and_run(h)
    return f"start={uv.err_name(rc)}"


@scenario("fs-poll-start-stop", "fs_poll", "normal",
          "uv_fs_poll_start on a file, one loop turn, stop, close", setup=_scratch_file)
def _fs_poll(ctx: Ctx) -> str:
    uv = ctx.uv
    h = uv.new_handle(b.HandleType.FS_POLL)
    ctx.check("uv_fs_poll_init", uv.uv_fs_poll_init(ctx.loop, h))
    cb = _cb(ctx, b.FsPollCb, lambda _h, _s, _p, _c: None)
    rc = uv.uv_fs_poll_start(h, cb, str(ctx.state["file"]).encode(), 1000)
    ctx.run(b.UV_RUN_NOWAIT)
    if rc == 0:
        uv.uv_fs_poll_stop(h)
    ctx.close_and_run(h)
    return f"start={uv.err_name(rc)}"


# -- signal / async ----------------------------------------------------------


@scenario("signal-start-stop", "signal", "normal",
          "uv_signal_init + uv_signal_start(SIGUSR2) + stop + close")
def _signal(ctx: Ctx) -> str:
    uv = ctx.uv
    h = uv.new_handle(b.HandleType.SIGNAL)
    ctx.check("uv_signal_init", uv.uv_signal_init(ctx.loop, h))
    rc = uv.uv_signal_start(h, _cb(ctx, b.SignalCb, lambda _h, _n: None), int(signal.SIGUSR2))
    if rc == 0:
        uv.uv_signal_stop(h)
    ctx.close_and_run(h)
    return f"start={uv.err_name(rc)}"


@scenario("async-init-close", "async", "normal", "uv_async_init + uv_async_send + close")
def _async(ctx: Ctx) -> str:
    uv = ctx.uv
    h = uv.new_handle(b.HandleType.ASYNC)
    rc = uv.uv_async_init(ctx.loop, h, _cb(ctx, b.AsyncCb, lambda _h: None))
    if rc == 0:
        uv.uv_async_send(h)
        ctx.run(b.UV_RUN_NOWAIT)
        ctx.close_and_run(h)
    return f"init={uv.err_name(rc)}"


# -- spawn -----------------------------------------------------------------


def _spawn(ctx: Ctx, file: str, free: int | None = None) -> tuple[int, list[int]]:
    uv = ctx.uv
    proc = uv.new_handle(b.HandleType.PROCESS)
    out = uv.new_handle(b.HandleType.NAMED_PIPE)
    ctx.check("uv_pipe_init", uv.uv_pipe_init(ctx.loop, out, 0))
    exits: list[int] = []

    def on_exit(h: int | None, status: int, _sig: int) -> None:
        exits.append(status)
        uv.close(h or 0)

    stdio = (b.StdioContainer * 3)()
    stdio[0].flags = b.UV_IGNORE
    stdio[1].flags = b.UV_CREATE_PIPE | b.UV_WRITABLE_PIPE
    stdio[1].data = out
    stdio[2].flags = b.UV_IGNORE
    args = (ctypes.c_char_p * 2)(file.encode(), None)
    opts = b.ProcessOptions()
    opts.exit_cb = b.ExitCb(on_exit)
    opts.file = file.encode()
    opts.args = args
    opts.stdio_count = 3
    opts.stdio = stdio
    uv.keep((stdio, args, opts))
    if free is None:
        rc = int(uv.uv_spawn(ctx.loop, proc, ctypes.byref(opts)))
    else:
        with ctx.squeeze(free):
            rc = int(uv.uv_spawn(ctx.loop, proc, ctypes.byref(opts)))
    if rc != 0:
        uv.close(proc)
    uv.close(out)
    ctx.run()
    return rc, exits


@scenario("spawn-pipe", "spawn", "normal",
          "uv_spawn /bin/true with a stdout pipe; wait for exit; close process and pipe")
def _spawn_ok(ctx: Ctx) -> str:
    true = shutil.which("true") or "/bin/true"
    rc, exits = _spawn(ctx, true)
    return f"spawn={ctx.uv.err_name(rc)} exit={exits}"


@scenario("spawn-enoent", "spawn", "error",
          "uv_spawn of a program that does not exist, with a stdout pipe (ENOENT)",
          "uv_spawn fails and closes both ends of the stdio pipe it created")
def _spawn_enoent(ctx: Ctx) -> str:
    rc, exits = _spawn(ctx, os.path.join(ctx.workdir, "no-such-program"))
    return f"spawn={ctx.uv.err_name(rc)} exit={exits}"


# -- dl --------------------------------------------------------------------


@scenario("dlopen-dlclose", "dl", "normal", "uv_dlopen + uv_dlclose of libm", shared_loop=False)
def _dlopen(ctx: Ctx) -> str:
    uv = ctx.uv
    lib = uv.buffer(b.UV_LIB_BYTES)
    rc = uv.uv_dlopen(b"libm.so.6", lib)
    uv.uv_dlclose(lib)
    return f"dlopen={'ok' if rc == 0 else 'error'}"


_libc = ctypes.CDLL(None, use_errno=True)
_libc.dlopen.restype = ctypes.c_void_p
_libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.dlsym.restype = ctypes.c_void_p
_libc.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_libc.dlclose.restype = ctypes.c_int
_libc.dlclose.argtypes = [ctypes.c_void_p]


@scenario("libuv-load-unload", "dl", "normal",
          "dlopen a fresh copy of the libuv under test, init and close a loop, dlclose it",
          "unloading libuv closes the process-global fds it created (the signal lock pipe)",
          shared_loop=False)
def _load_unload(ctx: Ctx) -> str:
    # A distinct file per iteration: dlopen of a path already loaded (the
    # binding's own copy) would only bump a reference count and never unload.
    n = int(ctx.state.get("n", 0))  # type: ignore[call-overload]
    ctx.state["n"] = n + 1
    copy = os.path.join(ctx.workdir, f"libuv-copy-{n}.so")
    shutil.copyfile(ctx.libuv_path, copy)
    try:
        handle = _libc.dlopen(copy.encode(), RTLD_NOW)
        if not handle:
            raise LabUnsupported(f"dlopen({copy}) failed")
        size = ctypes.CFUNCTYPE(ctypes.c_size_t)(_libc.dlsym(handle, b"uv_loop_size"))()
        loop = ctypes.create_string_buffer(int(size))
        init = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(_libc.dlsym(handle, b"uv_loop_init"))
        close = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(
            _libc.dlsym(handle, b"uv_loop_close"))
        rc = init(loop)
        if rc == 0:
            close(loop)
        unloaded = _libc.dlclose(handle)
    finally:
        os.unlink(copy)
    return f"init={rc} dlclose={unloaded}"


# -- EMFILE on every fd-creating call ------------------------------------------------


@scenario("tcp-connect-emfile", "tcp", "error",
          "uv_tcp_connect with no free fd: the socket cannot be created (EMFILE)",
          setup=_hold_refusing_port)
def _tcp_connect_emfile(ctx: Ctx) -> str:
    uv = ctx.uv
    tcp = uv.new_handle(b.HandleType.TCP)
    req = uv.new_req(b.ReqType.CONNECT)
    seen: list[int] = []
    ctx.check("uv_tcp_init", uv.uv_tcp_init(ctx.loop, tcp))
    addr = uv.ip4("127.0.0.1", int(ctx.state["port"]))  # type: ignore[call-overload]
    with ctx.squeeze(0):
        rc = uv.uv_tcp_connect(req, tcp, addr,
                               _cb(ctx, b.ConnectCb, lambda _r, st: seen.append(st)))
    ctx.close_and_run(tcp)
    ctx.run()
    return f"connect={uv.err_name(rc)} cb={','.join(uv.err_name(s) for s in seen)}"


@scenario("udp-bind-emfile", "udp", "error",
          "uv_udp_bind with no free fd: the socket cannot be created (EMFILE)")
def _udp_bind_emfile(ctx: Ctx) -> str:
    uv = ctx.uv
    udp = uv.new_handle(b.HandleType.UDP)
    ctx.check("uv_udp_init", uv.uv_udp_init(ctx.loop, udp))
    addr = uv.ip4("127.0.0.1", 0)
    with ctx.squeeze(0):
        rc = uv.uv_udp_bind(udp, addr, 0)
    ctx.close_and_run(udp)
    return f"bind={uv.err_name(rc)}"


@scenario("pipe-connect-emfile", "pipe", "error",
          "uv_pipe_connect with no free fd (EMFILE), to a listening uv pipe server",
          setup=_pipe_server)
def _pipe_connect_emfile(ctx: Ctx) -> str:
    uv = ctx.uv
    pipe = uv.new_handle(b.HandleType.NAMED_PIPE)
    req = uv.new_req(b.ReqType.CONNECT)
    seen: list[int] = []
    ctx.check("uv_pipe_init", uv.uv_pipe_init(ctx.loop, pipe, 0))
    cb = _cb(ctx, b.ConnectCb, lambda _r, st: seen.append(st))
    with ctx.squeeze(0):
        uv.uv_pipe_connect(req, pipe, str(ctx.state["path"]).encode(), cb)
    for _ in range(100):
        if seen:
            break
        ctx.run(b.UV_RUN_NOWAIT)
    ctx.close_and_run(pipe)
    return "connect=" + ",".join(uv.err_name(s) for s in seen)


@scenario("fs-event-emfile", "fs_event", "error",
          "uv_fs_event_start on a fresh loop with no free fd: the inotify fd cannot be created",
          shared_loop=False)
def _fs_event_emfile(ctx: Ctx) -> str:
    uv = ctx.uv
    ctx.init_loop()
    h = uv.new_handle(b.HandleType.FS_EVENT)
    ctx.check("uv_fs_event_init", uv.uv_fs_event_init(ctx.loop, h))
    cb = _cb(ctx, b.FsEventCb, _noop_fs_event)
    with ctx.squeeze(0):
        rc = uv.uv_fs_event_start(h, cb, ctx.workdir.encode(), 0)
    ctx.close_and_run(h)
    close_rc = uv.uv_loop_close(ctx.loop)
    return f"start={uv.err_name(rc)} loop_close={uv.err_name(close_rc)}"


@scenario("spawn-emfile", "spawn", "error",
          "uv_spawn with a stdout pipe and one free fd: the pipe pair cannot be made",
          "uv_spawn fails with EMFILE and closes every fd it made")
def _spawn_emfile(ctx: Ctx) -> str:
    true = shutil.which("true") or "/bin/true"
    rc, exits = _spawn(ctx, true, free=1)
    return f"spawn={ctx.uv.err_name(rc)} exit={exits}"


# -- ENFILE: the EMFILE scenarios again, the fd-creating syscall failed by strace ----------
#
# The system-wide limit (fs.file-max) cannot be lowered on a shared machine, so
# ENFILE is injected instead: the same iteration runs with `Ctx.inject` set, and
# the runner starts the child under `strace -e inject=SYSCALL:error=ENFILE`.
# The syscall is the one libuv makes first in the squeezed call on Linux.

# accept4 fails every third call, i.e. once per iteration: libuv answers ENFILE
# from accept with its EMFILE trick (close the reserve fd, accept and close the
# pending connection, reopen the reserve fd), so an iteration makes three calls
# (the failing accept, the trick's accept, the EAGAIN that ends the loop). Were
# every accept to fail, as under a lasting ENFILE, the trick's accept fails too
# and uv__server_io calls the connection callback with ENFILE in a loop that
# never returns (seen on 1.44.2: the child times out).
ENFILE_TWINS: dict[str, tuple[str, int]] = {
    "loop-init-emfile": ("epoll_create1", 1),
    "tcp-accept-emfile": ("accept4", 3),
    "tcp-connect-emfile": ("socket", 1),
    "udp-bind-emfile": ("socket", 1),
    "pipe-connect-emfile": ("socket", 1),
    "fs-event-emfile": ("inotify_init1", 1),
    "spawn-emfile": ("pipe2", 1),
}


_ENFILE_EXPECT = {
    # The trick's own accept takes the pending connection and ends on EAGAIN,
    # which libuv treats as "nothing to report": the callback is never called.
    "tcp-accept-enfile": "the pending connection is dropped by the EMFILE trick without a "
                         "connection callback; no fd kept",
}


def _register_enfile_twins() -> None:
    for emfile, (syscall, step) in ENFILE_TWINS.items():
        sc = CATALOGUE[emfile]
        name = emfile.removesuffix("-emfile") + "-enfile"
        summary = sc.summary.replace("EMFILE", "ENFILE") + f" [{syscall} fails with ENFILE]"
        expect = _ENFILE_EXPECT.get(name, sc.expect.replace("EMFILE", "ENFILE"))
        CATALOGUE[name] = Scenario(
            name, sc.api, "error", summary, expect, sc.iterate, sc.setup, sc.min_version,
            sc.needs_shared_loop, (syscall, "ENFILE", step), emfile)


_register_enfile_twins()


# -- ENOMEM ----------------------------------------------------------------------


_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.realloc.restype = ctypes.c_void_p
_libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.calloc.restype = ctypes.c_void_p
_libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
_libc.free.restype = None
_libc.free.argtypes = [ctypes.c_void_p]


class FailingAllocator:
    """libc's allocator, except that the Nth allocation after `arm(n)` returns NULL."""

    def __init__(self) -> None:
        self.countdown = 0
        self.failed = 0

    def _fail(self) -> bool:
        if self.countdown <= 0:
            return False
        self.countdown -= 1
        if self.countdown == 0:
            self.failed += 1
            return True
        return False

    def install(self, uv: b.Libuv) -> None:
        fns = (
            b.MallocFn(lambda n: None if self._fail() else _libc.malloc(n)),
            b.ReallocFn(lambda p, n: None if self._fail() else _libc.realloc(p, n)),
            b.CallocFn(lambda c, n: None if self._fail() else _libc.calloc(c, n)),
            b.FreeFn(_libc.free),
        )
        uv.keep(fns)
        if uv.uv_replace_allocator(*fns) != 0:
            raise LabUnsupported("uv_replace_allocator refused the allocator")

    @staticmethod
    def uninstall(uv: b.Libuv) -> None:
        """Hand libuv libc's own functions again: libuv frees memory at exit, after the
        interpreter's callbacks are gone."""
        def addr(fn: Any) -> int:
            return int(ctypes.cast(fn, ctypes.c_void_p).value or 0)

        uv.uv_replace_allocator(
            b.MallocFn(addr(_libc.malloc)), b.ReallocFn(addr(_libc.realloc)),
            b.CallocFn(addr(_libc.calloc)), b.FreeFn(addr(_libc.free)),
        )

    def arm(self, n: int) -> None:
        self.countdown = n


def _install_allocator(ctx: Ctx) -> None:
    alloc = FailingAllocator()
    alloc.install(ctx.uv)
    ctx.cleanups.append(lambda: FailingAllocator.uninstall(ctx.uv))
    ctx.state["alloc"] = alloc
    _warm_loop(ctx)


@scenario("loop-init-enomem", "loop", "error",
          "uv_loop_init with the Nth allocation failing (N = iteration: the failure point sweeps "
          "through init)",
          "uv_loop_init returns ENOMEM (or succeeds once N is past its allocations) and closes "
          "what it opened",
          setup=_install_allocator, min_version="1.6.0", shared_loop=False)
def _loop_init_enomem(ctx: Ctx) -> str:
    alloc: FailingAllocator = ctx.state["alloc"]  # type: ignore[assignment]
    n = int(ctx.state.get("n", 0)) + 1  # type: ignore[call-overload]
    ctx.state["n"] = n
    loop = ctx.uv.new_loop()
    before = alloc.failed
    alloc.arm(n)
    rc = ctx.uv.uv_loop_init(loop)
    alloc.arm(0)
    hit = alloc.failed > before
    if rc == 0:
        ctx.uv.uv_loop_close(loop)
    return f"init={ctx.uv.err_name(rc)}" + (" (allocation failed)" if hit else "")


# -- IPC fd passing ----------------------------------------------------------------

_READ_BUF = ctypes.create_string_buffer(65536)


def _ipc_receive(ctx: Ctx, *, accept: bool, nfds: int = 2, fail_alloc: bool = False) -> str:
    uv = ctx.uv
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pipe = uv.new_handle(b.HandleType.NAMED_PIPE)
    ctx.check("uv_pipe_init", uv.uv_pipe_init(ctx.loop, pipe, 1))
    fd = mine.detach()
    rc = uv.uv_pipe_open(pipe, fd)
    if rc != 0:
        os.close(fd)
    reads: list[int] = []
    accepted: list[int] = []

    def on_alloc(_h: int | None, _size: int, buf: int | None) -> None:
        ub = UvBuf.from_address(buf or 0)
        ub.base = ctypes.cast(_READ_BUF, ctypes.c_char_p)
        ub.len = len(_READ_BUF)

    def on_read(stream: int | None, nread: int, _buf: int | None) -> None:
        reads.append(nread)
        while accept and uv.uv_pipe_pending_count(stream) > 0:
            client = uv.new_handle(b.HandleType.NAMED_PIPE)
            uv.uv_pipe_init(ctx.loop, client, 0)
            accepted.append(uv.uv_accept(stream, client))
            uv.close(client)

    # Several fds in one SCM_RIGHTS message: libuv keeps the first as the
    # stream's accepted fd and queues the others (the queue is malloc'ed).
    sent = [s for _ in range((nfds + 1) // 2) for s in socket.socketpair()][:nfds]
    socket.send_fds(theirs, [b"x"], [x.fileno() for x in sent])
    for x in sent:
        x.close()
    uv.uv_read_start(pipe, _cb(ctx, b.AllocCb, on_alloc), _cb(ctx, b.ReadCb, on_read))
    alloc: FailingAllocator | None = ctx.state.get("alloc")  # type: ignore[assignment]
    if fail_alloc and alloc is not None:
        alloc.arm(1)
    for _ in range(1000):
        if reads:
            break
        ctx.run(b.UV_RUN_NOWAIT)
    if alloc is not None:
        alloc.arm(0)
    ctx.close_and_run(pipe)
    theirs.close()
    return f"read={uv.err_name(reads[0]) if reads else None} " \
        f"accepted={[uv.err_name(a) for a in accepted]}"


@scenario("pipe-ipc-accept", "pipe", "normal",
          "two fds received over an IPC pipe in one SCM_RIGHTS message; both uv_accept'ed; close")
def _ipc_accept(ctx: Ctx) -> str:
    return _ipc_receive(ctx, accept=True)


@scenario("pipe-ipc-close-pending", "pipe", "error",
          "two fds received over an IPC pipe and never accepted; the IPC pipe is closed",
          "closing the IPC pipe closes the received fds it still holds (accepted and queued)")
def _ipc_close_pending(ctx: Ctx) -> str:
    return _ipc_receive(ctx, accept=False)


def _install_allocator_only(ctx: Ctx) -> None:
    alloc = FailingAllocator()
    alloc.install(ctx.uv)
    ctx.cleanups.append(lambda: FailingAllocator.uninstall(ctx.uv))
    ctx.state["alloc"] = alloc


@scenario("pipe-ipc-queue-enomem", "pipe", "error",
          "three fds received over an IPC pipe in one message while queueing them fails (ENOMEM)",
          "the read fails with ENOMEM and every received fd is closed or still owned by the pipe",
          setup=_install_allocator_only, min_version="1.6.0")
def _ipc_queue_enomem(ctx: Ctx) -> str:
    return _ipc_receive(ctx, accept=False, nfds=3, fail_alloc=True)


# -- EACCES ----------------------------------------------------------------------------

PR_SET_DUMPABLE = 4
NOBODY = 65534


def _unprivileged(ctx: Ctx) -> None:
    """A directory the scenario may not write to; as root, drop to nobody first.

    Root passes every permission check, so a child running as root becomes
    nobody for good (it is a throwaway process) and stays dumpable, which
    keeps its own /proc/PID/fd readable for the counts.
    """
    locked = os.path.join(ctx.workdir, "locked")
    os.mkdir(locked, 0o555)
    os.chmod(ctx.workdir, 0o755)
    ctx.state["locked"] = locked
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        if _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
            raise LabUnsupported("prctl(PR_SET_DUMPABLE) failed")


@scenario("pipe-bind-eacces", "pipe", "error",
          "uv_pipe_bind to a path in a directory the process may not write (EACCES)",
          setup=_unprivileged)
def _pipe_bind_eacces(ctx: Ctx) -> str:
    uv = ctx.uv
    pipe = uv.new_handle(b.HandleType.NAMED_PIPE)
    ctx.check("uv_pipe_init", uv.uv_pipe_init(ctx.loop, pipe, 0))
    rc = uv.uv_pipe_bind(pipe, os.path.join(str(ctx.state["locked"]), "s.sock").encode())
    ctx.close_and_run(pipe)
    return f"bind={uv.err_name(rc)}"


@scenario("tcp-bind-eacces", "tcp", "error",
          "uv_tcp_bind + uv_listen on privileged loopback port 1 without the privilege (EACCES)",
          setup=_unprivileged)
def _tcp_bind_eacces(ctx: Ctx) -> str:
    uv = ctx.uv
    tcp = uv.new_handle(b.HandleType.TCP)
    ctx.check("uv_tcp_init", uv.uv_tcp_init(ctx.loop, tcp))
    rc = uv.uv_tcp_bind(tcp, uv.ip4("127.0.0.1", 1), 0)
    lrc = 0
    if rc == 0:
        lrc = uv.uv_listen(tcp, 8, _cb(ctx, b.ConnectionCb, lambda _s, _st: None))
    ctx.close_and_run(tcp)
    return f"bind={uv.err_name(rc)} listen={uv.err_name(lrc)}"


@scenario("fs-open-eacces", "fs", "error",
          "uv_fs_open(O_CREAT) in a directory the process may not write (EACCES)",
          setup=_unprivileged)
def _fs_open_eacces(ctx: Ctx) -> str:
    fd = _fs_open(ctx, os.path.join(str(ctx.state["locked"]), "f"), O_CREAT_WRONLY)
    if fd >= 0:
        _fs_close(ctx, fd)
    return f"open={'fd' if fd >= 0 else ctx.uv.err_name(fd)}"
