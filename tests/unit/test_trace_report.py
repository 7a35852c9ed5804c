"""Verdicts, grouping and the end-of-window snapshot cross-check of trace reports."""

from __future__ import annotations

from pathlib import Path

from fdguard.model import Fd, FdKind, Limits, ProcessRef, Snapshot, TcpState
from fdguard.trace.frames import FrameOrigin
from fdguard.trace.lifecycle import track
from fdguard.trace.parse import parse_lines
from fdguard.trace.report import Owner, Ownership, VerdictCode, build_report, verdict_for

DATA = Path(__file__).parent.parent / "data" / "strace"


def _snap(pid: int, fds: list[Fd]) -> Snapshot:
    return Snapshot(
        process=ProcessRef(pid, 1),
        command=("node", "srv.js"),
        limits=Limits(1024, 4096),
        fds=tuple(fds),
        taken_at=0.0,
        socket_source="test",
    )


def _node_life():  # type: ignore[no-untyped-def]
    lines = (DATA / "node_accept_leak.txt").read_text().splitlines()
    root = int(lines[0].split()[0])
    return root, track(parse_lines(lines), root)


def test_verdict_table() -> None:
    lib, app = FrameOrigin.LIBUV, FrameOrigin.APPLICATION
    assert verdict_for(lib, "uv__server_io", Ownership.NONE, stacks=True).code is (
        VerdictCode.LIBUV_LEAK
    )
    assert verdict_for(lib, "uv__server_io", Ownership.HANDLE, stacks=True).code is (
        VerdictCode.HANDLE_NOT_CLOSED
    )
    assert verdict_for(lib, "uv__server_io", Ownership.UNKNOWN, stacks=True).code is (
        VerdictCode.LIBUV_CREATED
    )
    # uv_fs_open hands the fd to its caller: never "libuv leaked it".
    assert verdict_for(lib, "uv_fs_open", Ownership.NONE, stacks=True).code is (
        VerdictCode.APPLICATION
    )
    assert verdict_for(app, None, Ownership.NONE, stacks=True).code is VerdictCode.APPLICATION
    # A heuristic guess never becomes "libuv leaked it"; it is quoted as a guess.
    guess = verdict_for(
        lib, "uv__tcp_connect", Owner(Ownership.NONE, False, "no poll"), stacks=True
    )
    assert guess.code is VerdictCode.LIBUV_CREATED
    assert "explain guesses unowned (no poll), not conclusive" in guess.text
    assert verdict_for(FrameOrigin.UNKNOWN, None, Ownership.UNKNOWN, stacks=False).code is (
        VerdictCode.UNKNOWN
    )


def test_recorded_node_leak_groups_by_stack_and_checks_the_snapshot() -> None:
    root, life = _node_life()
    leaked = [b for b in life.open if b.syscall == "accept4"]
    assert len(leaked) == 3
    # The end snapshot holds two of them; the third was closed unseen (dropped),
    # and fd 40 appeared without a traced birth.
    end = [
        Fd(fd=b.fd, kind=FdKind.TCP, target=b.target, inode=b.inode, state=TcpState.CLOSE_WAIT)
        for b in leaked[:2]
    ]
    end.append(Fd(fd=40, kind=FdKind.PIPE, target="pipe:[5]", inode=5))
    start = _snap(root, [])
    rep = build_report(
        life,
        command=("node",),
        mode="attach",
        window_s=1.0,
        ended_at=leaked[-1].created_at + 2.0,
        stacks=True,
        start=start,
        end=_snap(root, end),
        ownership={leaked[0].fd: Owner(Ownership.HANDLE), leaked[1].fd: Owner(Ownership.HANDLE)},
        ownership_source="test",
    )
    assert rep.dropped == 1
    assert [o.fd for o in rep.open_at_end] == [leaked[0].fd, leaked[1].fd, 40]
    top = rep.groups[0]
    assert top.count == 2
    assert top.verdict.code is VerdictCode.HANDLE_NOT_CLOSED
    assert top.head.libuv_function == "uv__server_io"
    doc = rep.to_json()
    assert set(doc) >= {"target", "window_s", "open_at_end", "groups"}
    first = doc["open_at_end"][0]
    assert set(first) >= {
        "fd",
        "kind",
        "syscall",
        "created_at",
        "frames",
        "libuv_function",
        "after",
        "verdict",
    }
    assert first["verdict"] == "handle-not-closed"
    assert first["state"] == "CLOSE-WAIT"
    unseen = doc["open_at_end"][2]
    assert unseen["syscall"] is None
    assert unseen["frames"] == []
    assert unseen["verdict"] == "unknown"


def test_without_a_snapshot_the_trace_is_taken_as_is() -> None:
    _root, life = _node_life()
    rep = build_report(life, command=(), mode="launch", window_s=1.0, ended_at=0.0, stacks=True)
    assert not rep.checked
    assert len(rep.open_at_end) == len(life.open)
    assert all(o.verdict.code is VerdictCode.LIBUV_CREATED for o in rep.groups[0].fds)
