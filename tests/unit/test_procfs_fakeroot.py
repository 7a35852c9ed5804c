"""fdguard.snapshot and fdguard.count over the committed fake /proc tree (tests/data/fakeproc)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import fdguard
from fdguard import FdKind, Limits, NoSuchProcess, ProcessRef, ProcfsFormatError, TcpState

FAKE = Path(__file__).parent.parent / "data" / "fakeproc"
ROOT = str(FAKE)
NODE = 7777777  # see tests/data/fakeproc/README.md
BAD_LIMITS = 7777778
ZOMBIE = 7777779

KINDS = {
    0: FdKind.CHARDEV,
    1: FdKind.PIPE,
    2: FdKind.PIPE,
    3: FdKind.EPOLL,
    4: FdKind.EVENTFD,
    5: FdKind.TCP,
    6: FdKind.TCP,
    7: FdKind.TCP,
    8: FdKind.TCP6,
    9: FdKind.UNIX,
    10: FdKind.FILE,
    11: FdKind.INOTIFY,
    12: FdKind.MEMFD,
    13: FdKind.TIMERFD,
    14: FdKind.SIGNALFD,
    15: FdKind.PIDFD,
    16: FdKind.UDP,
    17: FdKind.OTHER,  # in no table, and probing disabled
    18: FdKind.OTHER,
    19: FdKind.IO_URING,
}


@pytest.fixture(scope="module")
def snap() -> fdguard.Snapshot:
    return fdguard.snapshot(NODE, root=ROOT, probe_sockets=False)


def test_process_identity_command_and_limits(snap: fdguard.Snapshot) -> None:
    assert snap.process == ProcessRef(NODE, 424242)
    assert snap.command == ("node", "server.js", "--port", "8080")
    assert snap.limits == Limits(soft=1024, hard=4096)
    assert snap.count == 20
    assert snap.share_of_soft_limit == 20 / 1024


def test_every_fd_classified(snap: fdguard.Snapshot) -> None:
    assert {f.fd: f.kind for f in snap.fds} == KINDS
    assert snap.by_kind["tcp"] == 3
    assert snap.by_kind["pipe"] == 2
    assert sum(snap.by_kind.values()) == 20


def test_sockets_resolved_from_the_process_net_tables(snap: fdguard.Snapshot) -> None:
    # No ns/net in the fake tree: the tables under <root>/PID/net are used.
    assert snap.socket_source == "procfs"
    by_fd = {f.fd: f for f in snap.fds}
    got = {
        fd: (by_fd[fd].state, by_fd[fd].local, by_fd[fd].remote) for fd in (5, 6, 7, 8, 9, 16)
    }
    assert got == {
        5: (TcpState.LISTEN, "127.0.0.1:8080", None),
        6: (TcpState.ESTAB, "127.0.0.1:8080", "127.0.0.1:50000"),
        7: (TcpState.CLOSE_WAIT, "127.0.0.1:50001", "127.0.0.1:80"),
        8: (TcpState.LISTEN, "[::1]:8080", None),
        9: (TcpState.LISTEN, "/run/fake-node.sock", None),
        16: (TcpState.UNCONN, "127.0.0.1:5353", None),
    }
    assert by_fd[7].recv_q == 1
    assert snap.by_tcp_state == {"LISTEN": 2, "ESTAB": 1, "CLOSE-WAIT": 1}
    # The other process's row in net/tcp (inode 9999) is not anybody's fd here.
    assert 9999 not in {f.inode for f in snap.fds}


def test_tableless_socket_without_probe_says_so(snap: fdguard.Snapshot) -> None:
    lost = next(f for f in snap.fds if f.fd == 17)
    assert lost.inode == 6008
    assert lost.state is None
    assert lost.note is not None
    assert "no kernel table" in lost.note


def test_tableless_socket_is_not_probed_under_a_fake_root() -> None:
    # Probing would ask whatever live process has this PID, so a fake root
    # never probes: the socket keeps a note and the snapshot says why.
    snap = fdguard.snapshot(NODE, root=ROOT)
    lost = next(f for f in snap.fds if f.fd == 17)
    assert lost.kind is FdKind.OTHER
    assert lost.note is not None
    assert "no kernel table" in lost.note
    assert any("not probing" in w for w in snap.warnings)


def test_rare_kinds_carry_their_fdinfo(snap: fdguard.Snapshot) -> None:
    by_fd = {f.fd: f for f in snap.fds}
    ep = by_fd[3].info
    assert ep is not None
    assert ep.epoll_targets == (4, 5, 6, 9)
    ino = by_fd[11].info
    assert ino is not None
    assert ino.inotify_watches == 1
    ev = by_fd[4].info
    assert ev is not None
    assert (ev.eventfd_count, ev.nonblocking, ev.cloexec) == (0, True, True)
    pidfd = by_fd[15].info
    assert pidfd is not None
    assert pidfd.pidfd_pid == 1
    # Common kinds skip fdinfo unless asked (it doubles the syscalls per fd).
    assert by_fd[5].info is None
    assert by_fd[10].info is None


def test_paths_are_stat_through_the_link(snap: fdguard.Snapshot) -> None:
    by_fd = {f.fd: f for f in snap.fds}
    assert by_fd[0].inode == os.stat("/dev/null").st_ino
    assert (by_fd[10].target, by_fd[10].inode, by_fd[10].deleted) == (
        "/etc/passwd", os.stat("/etc/passwd").st_ino, False,
    )
    assert (by_fd[12].target, by_fd[12].deleted) == ("/memfd:v8-cache", True)
    assert by_fd[18].inode == 4026531840


def test_fdinfo_for_every_fd() -> None:
    snap = fdguard.snapshot(NODE, root=ROOT, fdinfo=True, probe_sockets=False)
    assert all(f.info is not None for f in snap.fds)
    by_fd = {f.fd: f for f in snap.fds}
    sock = by_fd[5].info
    assert sock is not None
    assert (sock.nonblocking, sock.cloexec, sock.access_mode) == (True, True, "rw")
    pipe = by_fd[1].info
    assert pipe is not None
    assert pipe.access_mode == "w"
    # Socket details survive the fdinfo pass.
    assert by_fd[5].state is TcpState.LISTEN


def test_json_follows_the_contract(snap: fdguard.Snapshot) -> None:
    doc = snap.to_json()
    for key in ("pid", "start_time", "command", "limits", "count", "by_kind", "runtime", "fds"):
        assert key in doc
    assert doc["limits"] == {"soft": 1024, "hard": 4096}
    assert doc["runtime"]["name"] is None
    for f in doc["fds"]:
        assert {"fd", "kind", "target", "state", "local", "remote"} <= set(f)
        assert f["kind"] in {k.value for k in FdKind}
        assert f["state"] is None or f["state"] in {s.value for s in TcpState}


def test_count_lists_a_tree_that_is_not_procfs() -> None:
    # A plain directory's st_size says nothing about fds: count must list it.
    assert fdguard.count(NODE, root=ROOT) == 20
    assert fdguard.count(BAD_LIMITS, root=ROOT) == 1


def test_count_missing_process() -> None:
    with pytest.raises(NoSuchProcess):
        fdguard.count(7777770, root=ROOT)


def test_missing_process() -> None:
    with pytest.raises(NoSuchProcess) as err:
        fdguard.snapshot(7777770, root=ROOT)
    assert err.value.pid == 7777770


def test_zombie_is_no_such_process() -> None:
    with pytest.raises(NoSuchProcess, match="exited"):
        fdguard.snapshot(ZOMBIE, root=ROOT, probe_sockets=False)


def test_reused_pid_is_no_such_process() -> None:
    with pytest.raises(NoSuchProcess, match="reused"):
        fdguard.snapshot(NODE, root=ROOT, expect=ProcessRef(NODE, 1))
    same = fdguard.snapshot(NODE, root=ROOT, expect=ProcessRef(NODE, 424242),
                            probe_sockets=False)
    assert same.count == 20


def test_malformed_limits_names_file_and_line() -> None:
    with pytest.raises(ProcfsFormatError) as err:
        fdguard.snapshot(BAD_LIMITS, root=ROOT)
    assert err.value.source == f"{ROOT}/{BAD_LIMITS}/limits"
    assert err.value.line == 9


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A private copy of the fake tree that a test may change."""
    dst = tmp_path / "proc"
    shutil.copytree(FAKE, dst, symlinks=True)
    return dst


def test_fd_whose_object_vanished_is_skipped(tree: Path) -> None:
    # A path fd that cannot be stat()ed is what an fd closed between readlink
    # and stat looks like: skipped, not an error.
    os.symlink("/nonexistent/fdguard/gone", tree / str(NODE) / "fd" / "20")
    snap = fdguard.snapshot(NODE, root=str(tree), probe_sockets=False)
    assert snap.count == 20
    assert 20 not in {f.fd for f in snap.fds}


def test_malformed_net_row_names_file_and_line(tree: Path) -> None:
    tcp = tree / str(NODE) / "net" / "tcp"
    tcp.write_bytes(tcp.read_bytes() + b"   4: 0100007F:ZZZZ 00000000:0000 0A\n")
    with pytest.raises(ProcfsFormatError) as err:
        fdguard.snapshot(NODE, root=str(tree), probe_sockets=False)
    assert err.value.source.endswith(f"/{NODE}/net/tcp")
    assert err.value.line == 6


def test_missing_net_tables_leave_sockets_unresolved(tree: Path) -> None:
    shutil.rmtree(tree / str(NODE) / "net")
    snap = fdguard.snapshot(NODE, root=str(tree), probe_sockets=False)
    socks = [f for f in snap.fds if f.target is not None and f.target.startswith("socket:")]
    assert len(socks) == 7
    assert all(f.kind is FdKind.OTHER for f in socks)
    assert all(f.note is not None for f in socks)


def test_count_on_real_procfs_is_the_directory_size() -> None:
    # Linux >= 6.2 (this machine runs 6.18): the size of /proc/PID/fd is the count.
    pid = os.getpid()
    assert fdguard.count(pid) == os.stat(f"/proc/{pid}/fd").st_size > 0
    assert os.stat(ROOT).st_ino != 1  # a plain tree is never mistaken for procfs
