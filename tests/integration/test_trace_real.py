"""`fdguard trace` against real targets: Node.js, uvloop and a C program on the system
libuv, each leaking fds on a path the test triggers, plus a healthy server under churn.
Real strace (-k), real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fdguard import count
from fdguard.procfs.tasks import pid_alive
from fdguard.trace import (
    FrameOrigin,
    TraceReport,
    VerdictCode,
    finish_command,
    start_command,
    trace_pid,
)
from fdguard.trace.report import Group
from fdguard.trace.syscalls import Follow
from tests.conftest import PROCS, Child, python_proc, wait_line

LIBUV_OWNED = {VerdictCode.LIBUV_CREATED, VerdictCode.HANDLE_NOT_CLOSED}


def ask(port: int, cmd: str) -> str:
    """One command per connection; returns the server's first line, then hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(cmd.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_of(rep: TraceReport, syscall: str) -> Group:
    found = [g for g in rep.groups if g.head.birth and g.head.birth.syscall == syscall]
    assert len(found) == 1, [(g.key[:3], g.count) for g in rep.groups]
    return found[0]


def settle(pid: int, expected: int) -> Callable[[], bool]:
    """End the window once the target holds exactly `expected` fds (closes are done)."""
    return lambda: count(pid) == expected


def test_node_leaks_attach_names_libuv_accept_and_fs_open(
    spawn: Callable[..., Child], node: str
) -> None:
    child = spawn([node, str(PROCS / "trace_node_leak.js")])
    port = json.loads(child.ready)["port"]
    base = count(child.pid)
    replies: list[str] = []

    def load() -> None:
        replies.extend(ask(port, "LEAK") for _ in range(4))
        replies.extend(ask(port, "HI") for _ in range(3))
        replies.extend(ask(port, "FSLEAK") for _ in range(2))

    # Follow everything here (closes, epoll_ctl, SCM_RIGHTS); the other tests use
    # the cheap default (births only, the end snapshot decides what is open).
    rep = trace_pid(
        child.pid,
        30.0,
        follow=Follow.everything(),
        on_attached=load,
        stop_when=settle(child.pid, base + 6),
    )
    assert replies[:4] == ["kept"] * 4
    assert rep.closed >= 3  # the healthy connections' closes were seen
    assert rep.stacks
    assert rep.checked
    assert len(rep.open_at_end) == 6, [o.to_json() for o in rep.open_at_end]

    accepted = group_of(rep, "accept4")
    assert accepted.count == 4
    assert accepted.head.creator is FrameOrigin.LIBUV
    assert accepted.head.libuv_function == "uv__server_io"
    assert accepted.verdict.code in LIBUV_OWNED
    assert {o.kind.value for o in accepted.fds if o.kind} == {"tcp"}
    assert {o.now.state.value for o in accepted.fds if o.now and o.now.state} == {"CLOSE-WAIT"}
    assert all(o.birth and o.birth.epoll_added for o in accepted.fds)
    # strace -k shows libuv's own functions inside the node binary.
    symbols = [f.symbol or "" for f in accepted.head.frames]
    assert "uv__accept" in symbols
    assert any(s.startswith("node::") for s in symbols)

    opened = group_of(rep, "openat")
    assert opened.count == 2
    assert opened.head.libuv_function == "uv__fs_work"
    assert opened.verdict.code is VerdictCode.APPLICATION
    assert {o.kind.value for o in opened.fds if o.kind} == {"file"}

    doc = rep.to_json()
    assert doc["target"]["pid"] == child.pid
    entry = doc["open_at_end"][0]
    for key in ("fd", "kind", "syscall", "created_at", "frames", "libuv_function", "after"):
        assert key in entry
    assert entry["created_at"] > 0


def test_node_launch_mode_with_seccomp_reports_and_stops_the_command(node: str) -> None:
    launched = start_command([node, str(PROCS / "trace_node_leak.js")], stdout=subprocess.PIPE)
    pid = launched.pid
    try:
        assert launched.run.proc is not None
        assert "--seccomp-bpf" in launched.run.command
        ready = wait_line(launched.run.proc)  # the command's stdout is strace's
        port = json.loads(ready)["port"]
        assert json.loads(ready)["pid"] == pid
        assert [ask(port, "LEAK") for _ in range(3)] == ["kept"] * 3
        assert ask(port, "HI") == "ok"
    except BaseException:
        launched.run.close()
        raise
    base_leaks = 3
    rep = finish_command(launched, window_s=20.0, stop_when=lambda: _holds_leaks(pid, port))
    assert rep.mode == "launch"
    assert not pid_alive(pid), "the launched command must not outlive the trace"
    accepted = group_of(rep, "accept4")
    assert accepted.count == base_leaks
    assert accepted.head.libuv_function == "uv__server_io"
    # Launch mode saw the whole life: the listening socket and the loop's own fds too.
    listen = [o for o in rep.open_at_end if o.birth and o.birth.syscall == "socket"]
    assert listen
    assert any(o.now and o.now.state and o.now.state.value == "LISTEN" for o in listen)


def _holds_leaks(pid: int, port: int) -> bool:
    """True once the healthy connection's server side is closed (only leaks remain)."""
    from fdguard import snapshot

    snap = snapshot(pid)
    estab = [
        f for f in snap.fds if f.local and f.local.endswith(f":{port}") and f.state is not None
    ]
    return all(f.state is not None and f.state.value in ("CLOSE-WAIT", "LISTEN") for f in estab)


def test_uvloop_leak_is_created_inside_uvloops_libuv(spawn: Callable[..., Child]) -> None:
    child = spawn(python_proc("trace_uvloop_leak.py"))
    port = json.loads(child.ready)["port"]
    base = count(child.pid)

    def load() -> None:
        assert [ask(port, "LEAK") for _ in range(3)] == ["kept"] * 3
        assert [ask(port, "HI") for _ in range(2)] == ["ok"] * 2

    rep = trace_pid(child.pid, 30.0, on_attached=load, stop_when=settle(child.pid, base + 3))
    accepted = group_of(rep, "accept4")
    assert accepted.count == 3
    assert len(rep.open_at_end) == 3
    assert accepted.head.creator is FrameOrigin.LIBUV
    assert accepted.head.libuv_function == "uv__server_io"
    assert accepted.verdict.code in LIBUV_OWNED
    modules = {f.module or "" for f in accepted.head.frames if f.origin is FrameOrigin.LIBUV}
    assert any("uvloop" in m for m in modules), modules
    assert any(f.origin is FrameOrigin.RUNTIME for f in accepted.head.frames)


@pytest.fixture(scope="module")
def uv_leak_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uvleak") / "trace_uv_leak"
    subprocess.run(
        [
            "gcc",
            "-O0",
            "-g",
            "-fno-omit-frame-pointer",
            "-o",
            str(out),
            str(PROCS / "trace_uv_leak.c"),
            "-luv",
        ],
        check=True,
        capture_output=True,
    )
    return out


def test_c_program_on_system_libuv(spawn: Callable[..., Child], uv_leak_binary: Path) -> None:
    child = spawn([str(uv_leak_binary)])
    assert child.ready == "ready"
    refused = refused_port()
    stdin = child.proc.stdin
    assert stdin is not None
    replies: list[str] = []

    def command(text: str) -> None:
        assert stdin is not None
        stdin.write(text.encode() + b"\n")
        stdin.flush()
        replies.append(wait_line(child.proc))

    def load() -> None:
        command(f"connect {refused}")
        command("open")
        command("fsopen")

    rep = trace_pid(child.pid, 30.0, on_attached=load, stop_when=lambda: True)
    assert replies[0] == "connect ECONNREFUSED"
    assert len(rep.open_at_end) == 3, [o.to_json() for o in rep.open_at_end]

    tcp = group_of(rep, "socket").head
    assert tcp.creator is FrameOrigin.LIBUV
    assert tcp.kind is not None
    assert tcp.kind.value == "tcp"
    assert tcp.now is not None
    assert tcp.now.state is not None
    assert tcp.now.state.value == "CLOSE"
    assert tcp.birth is not None
    assert [(a.syscall, a.error) for a in tcp.birth.after] == [("connect", "ECONNREFUSED")]
    assert tcp.verdict.code in LIBUV_OWNED
    app_frames = [f.symbol for f in tcp.frames if f.origin is FrameOrigin.APPLICATION]
    assert "leaky_connect" in app_frames

    opens = {o.libuv_function: o for o in group_of_all(rep, "openat")}
    own = opens[None]
    assert own.creator is FrameOrigin.APPLICATION
    assert own.verdict.code is VerdictCode.APPLICATION
    app = [f.symbol for f in own.frames if f.origin is FrameOrigin.APPLICATION]
    assert app[0] == "leaky_open"
    via_uv = opens["uv_fs_open"]
    assert via_uv.creator is FrameOrigin.LIBUV
    assert via_uv.verdict.code is VerdictCode.APPLICATION


def group_of_all(rep: TraceReport, syscall: str) -> list:  # type: ignore[type-arg]
    return [o for o in rep.open_at_end if o.birth and o.birth.syscall == syscall]


def test_healthy_http_server_under_churn_reports_nothing(
    spawn: Callable[..., Child], node: str
) -> None:
    child = spawn([node, str(PROCS / "trace_node_http.js")])
    port = json.loads(child.ready)["port"]
    base = count(child.pid)
    served: list[int] = []

    def churn() -> None:
        for _ in range(150):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                served.append(int(data.startswith(b"HTTP/1.1 200")))

    rep = trace_pid(child.pid, 60.0, on_attached=churn, stop_when=settle(child.pid, base))
    assert sum(served) == 150
    assert rep.created >= 150
    assert rep.open_at_end == ()
    assert rep.groups == ()
    assert rep.dropped >= 1  # the last births were checked against the end snapshot


def test_node_report_handle_view_makes_the_verdict_conclusive(
    spawn: Callable[..., Child], node: str, tmp_path: Path
) -> None:
    # With --report-on-signal, explain reads Node's own handle list: the accepted
    # sockets are owned by live handles, so trace can say whose fault it is.
    child = spawn(
        [node, "--report-on-signal", str(PROCS / "trace_node_leak.js")], cwd=str(tmp_path)
    )
    port = json.loads(child.ready)["port"]
    base = count(child.pid)

    def load() -> None:
        assert [ask(port, "LEAK") for _ in range(2)] == ["kept", "kept"]
        assert ask(port, "FSLEAK").startswith("opened ")

    rep = trace_pid(child.pid, 30.0, on_attached=load, stop_when=settle(child.pid, base + 3))
    assert rep.ownership_source == "fdguard.attribute.explain"
    accepted = group_of(rep, "accept4")
    assert accepted.count == 2
    assert accepted.verdict.code is VerdictCode.HANDLE_NOT_CLOSED
    assert "the application never closed its handle" in accepted.verdict.text
    assert group_of(rep, "openat").verdict.code is VerdictCode.APPLICATION
    assert not list(tmp_path.glob("report.*.json")), "the Node report file must be removed"


def test_without_stacks_births_are_still_reported_and_verdicts_say_so(
    spawn: Callable[..., Child], uv_leak_binary: Path
) -> None:
    child = spawn([str(uv_leak_binary)])
    stdin = child.proc.stdin
    assert stdin is not None
    replies: list[str] = []

    def load() -> None:
        assert stdin is not None
        stdin.write(b"open\n")
        stdin.flush()
        replies.append(wait_line(child.proc))

    rep = trace_pid(child.pid, 30.0, stacks=False, on_attached=load, stop_when=lambda: True)
    assert replies[0].startswith("open ")
    assert not rep.stacks
    (opened,) = rep.open_at_end
    assert opened.birth is not None
    assert opened.birth.syscall == "openat"
    assert opened.frames == ()
    assert opened.verdict.code is VerdictCode.UNKNOWN
    assert "no creation stack" in opened.verdict.text
