"""Loop reconstruction and verdicts over fd tables laid out the way real runtimes lay them
out (recorded from Node 20 / libuv 1.46, uvloop 0.23 / libuv 1.52, Debian libuv 1.44)."""

from __future__ import annotations

import pytest

from fdguard.attribute import Verdict, attribute
from fdguard.model import Fd, FdInfo, FdKind, Limits, ProcessRef, Snapshot, TcpState
from fdguard.runtimes.handles import OWNER_FS, Handle, HandleView
from fdguard.runtimes.loops import find_loops

CLOEXEC = FdInfo.O_CLOEXEC
NONBLOCK = FdInfo.O_NONBLOCK


def epoll(fd: int, *targets: int) -> Fd:
    return Fd(fd, FdKind.EPOLL, "anon_inode:[eventpoll]",
              info=FdInfo(pos=0, flags=CLOEXEC, epoll_targets=tuple(targets)))


def pipe(fd: int, inode: int, flags: int) -> Fd:
    return Fd(fd, FdKind.PIPE, f"pipe:[{inode}]", inode=inode,
              info=FdInfo(pos=0, flags=flags))


def eventfd(fd: int) -> Fd:
    return Fd(fd, FdKind.EVENTFD, "anon_inode:[eventfd]",
              info=FdInfo(pos=0, flags=CLOEXEC | NONBLOCK, eventfd_count=0))


def devnull(fd: int, flags: int = CLOEXEC) -> Fd:
    return Fd(fd, FdKind.CHARDEV, "/dev/null", info=FdInfo(pos=0, flags=flags))


def tcp(fd: int, state: TcpState, flags: int = CLOEXEC | NONBLOCK) -> Fd:
    return Fd(fd, FdKind.TCP, f"socket:[{9000 + fd}]", inode=9000 + fd, state=state,
              info=FdInfo(pos=0, flags=flags))


def snap(*fds: Fd) -> Snapshot:
    stdio = (devnull(0, 0), pipe(1, 1, 1), pipe(2, 2, 1))
    return Snapshot(ProcessRef(100, 1), ("x",), Limits(1024, 1024), stdio + fds, 0.0, "test")


# Node 20 (libuv 1.46): loop 3 initialised but never run, platform loop 9, main loop 14.
NODE = snap(
    epoll(3), pipe(4, 40, CLOEXEC), pipe(5, 40, CLOEXEC | 1),
    pipe(6, 60, CLOEXEC | NONBLOCK), pipe(7, 60, CLOEXEC | NONBLOCK | 1), eventfd(8),
    epoll(9, 11, 13), pipe(11, 110, CLOEXEC | NONBLOCK), pipe(12, 110, CLOEXEC | NONBLOCK | 1),
    eventfd(13),
    epoll(14, 17, 15, 19), pipe(15, 150, CLOEXEC | NONBLOCK),
    pipe(16, 150, CLOEXEC | NONBLOCK | 1), eventfd(17), devnull(18),
    tcp(19, TcpState.LISTEN), tcp(20, TcpState.CLOSE_WAIT), tcp(21, TcpState.CLOSE, flags=2),
    Fd(22, FdKind.FILE, "/srv/data.json", info=FdInfo(pos=0, flags=CLOEXEC)),
)


def test_node_loops_and_process_wide_lock_pipe() -> None:
    m = find_loops(NODE)
    assert [lp.epoll_fd for lp in m.loops] == [3, 9, 14]
    assert [(i.fd, i.role) for i in m.process_wide] == [
        (4, "signal-lock-pipe-read"), (5, "signal-lock-pipe-write")]
    unpolled, platform, main = m.loops
    assert not unpolled.polled
    assert {i.fd: i.role for i in unpolled.internal} == {
        3: "epoll", 6: "signal-pipe-read", 7: "signal-pipe-write", 8: "async-eventfd"}
    assert not any(i.certain for i in unpolled.internal if i.fd != 3)
    assert {i.fd for i in platform.internal} == {9, 11, 12, 13}
    assert {i.fd: i.role for i in main.internal} == {
        14: "epoll", 15: "signal-pipe-read", 16: "signal-pipe-write", 17: "async-eventfd",
        18: "emfile-reserve"}
    assert all(i.certain for i in main.internal if i.role != "emfile-reserve")


def test_heuristic_verdicts_without_view() -> None:
    m = find_loops(NODE)
    fds, summary = attribute(NODE, m, None)
    v = {x.fd.fd: x for x in fds}
    assert v[19].verdict is Verdict.HANDLE  # polled by the main loop
    assert v[20].verdict is Verdict.HANDLE  # CLOSE-WAIT, no longer polled after EOF
    assert not v[20].certain
    assert v[21].verdict is Verdict.UNOWNED  # never connected, polled by nobody
    assert "O_CLOEXEC" in v[21].evidence
    assert v[22].verdict is Verdict.FS
    assert v[0].verdict is Verdict.STDIO
    assert summary.confidence == "low"
    assert summary.unexplained == 1
    assert summary.actual == len(NODE.fds)
    assert summary.basis[0].startswith("no handle view")


def test_view_makes_verdicts_certain_and_counts_expected() -> None:
    view = HandleView("node-report:SIGUSR2", (
        Handle("tcp", 19, active=True), Handle("tcp", 20, active=False),
        Handle("async", None), Handle("file", 22, owns=OWNER_FS),
    ))
    m = find_loops(NODE)
    fds, summary = attribute(NODE, m, view)
    v = {x.fd.fd: x for x in fds}
    assert v[20].verdict is Verdict.HANDLE
    assert v[20].certain
    assert "CLOSE-WAIT" in v[20].evidence
    assert v[21].verdict is Verdict.UNOWNED
    assert v[21].certain
    assert v[22].verdict is Verdict.FS
    internal = sum(1 for x in fds if x.verdict is Verdict.LOOP_INTERNAL)
    assert summary.expected == internal + 3 + 2 + 1  # internals, stdio, handles, listed file
    assert summary.unexplained == 1
    assert summary.confidence == "medium"  # the never-polled loop is found by order only


def test_inherited_is_what_the_parent_holds_too() -> None:
    s = snap(epoll(3), tcp(7, TcpState.LISTEN, flags=NONBLOCK), tcp(8, TcpState.CLOSE, flags=0))
    fds, _ = attribute(s, find_loops(s), None, parent_targets=frozenset({"socket:[9007]"}))
    v = {x.fd.fd: x.verdict for x in fds}
    assert v[7] is Verdict.INHERITED
    assert v[8] is Verdict.UNOWNED


def test_uvloop_ring_after_epoll_and_lock_pipe_after_ring() -> None:
    # uvloop 0.23 / libuv 1.52: epoll, io_uring ctl ring, lock pipe, signal pipe, eventfd.
    ring = Fd(4, FdKind.IO_URING, "anon_inode:[io_uring]", info=FdInfo(pos=0, flags=CLOEXEC))
    s = snap(epoll(3, 9, 7, 13), ring, pipe(5, 50, CLOEXEC), pipe(6, 50, CLOEXEC | 1),
             pipe(7, 70, CLOEXEC | NONBLOCK), pipe(8, 70, CLOEXEC | NONBLOCK | 1), eventfd(9),
             devnull(10), tcp(13, TcpState.LISTEN))
    m = find_loops(s)
    (loop,) = m.loops
    assert {i.fd: i.role for i in loop.internal} == {
        3: "epoll", 4: "io_uring", 7: "signal-pipe-read", 8: "signal-pipe-write",
        9: "async-eventfd", 10: "emfile-reserve"}
    assert [i.fd for i in m.process_wide] == [5, 6]


def test_no_loops_no_internal_verdicts() -> None:
    s = snap(epoll(3, 5), tcp(5, TcpState.ESTAB))
    from fdguard.runtimes.loops import LoopMap

    fds, summary = attribute(s, LoopMap((), ()), None)
    v = {x.fd.fd: x.verdict for x in fds}
    assert v[3] is Verdict.HANDLE  # no libuv: an epoll is the application's own loop
    assert v[5] is Verdict.HANDLE
    assert summary.unexplained == 0


def test_agent_payloads_become_views() -> None:
    from fdguard.runtimes.agent_client import AgentUnavailable, _view_from

    py = _view_from({
        "agent": "python", "pid": 1, "versions": {"uvloop": "0.23.0", "uv": "1.52.1"},
        "loops": [{"type": "uvloop.Loop", "epoll_fd": 4}],
        "objects": [{"fd": 9, "type": "file", "owns": "fs", "detail": "/x"},
                    {"fd": 13, "type": "TCPTransport", "owns": "handle", "closing": True}],
        "uv_handles": {"UVAsync": 2}, "published": {"db": 3},
    })
    by_fd = py.by_fd()
    assert by_fd[4].owns == "loop-internal"
    assert by_fd[9].owns == "fs"
    assert by_fd[13].closing is True
    assert sum(1 for h in py.handles if h.type == "uvloop.UVAsync") == 2
    assert any("db=3" in n for n in py.notes)
    node = _view_from({"agent": "node", "pid": 1, "agent_fds": [25], "report": {
        "libuv": [{"type": "pipe", "fd": 25, "is_active": True}], "header": {}}})
    assert node.source == "agent:node"
    assert node.by_fd()[25].detail.startswith("fdguard agent")  # type: ignore[union-attr]
    with pytest.raises(AgentUnavailable):
        _view_from({"agent": "other"})
