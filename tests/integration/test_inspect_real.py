"""fdguard.snapshot() on real processes, checked against ground truth, ss and lsof."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import fdguard
from fdguard.errors import NoSuchProcess
from fdguard.model import FdKind, ProcessRef, Snapshot
from fdguard.procfs.process import ProcessDir
from tests.conftest import Child, python_proc

ROOT = Path(__file__).resolve().parents[2]
Zoo = tuple[Child, dict[int, dict[str, object]], dict[str, object]]


@pytest.fixture
def zoo(spawn: Callable[..., Child]) -> Zoo:
    child = spawn(python_proc("fdzoo.py"))
    doc = json.loads(child.ready)
    truth = {int(k): v for k, v in doc["truth"].items()}
    return child, truth, doc["extras"]


def _by_fd(snap: Snapshot) -> dict[int, fdguard.Fd]:
    return {f.fd: f for f in snap.fds}


def test_every_kind_matches_ground_truth(
    zoo: Zoo,
) -> None:
    child, truth, extras = zoo
    snap = fdguard.snapshot(child.pid)
    fds = _by_fd(snap)
    for fd, want in truth.items():
        got = fds[fd]
        assert got.kind.value == want["kind"], (fd, got, want)
        assert (got.state.value if got.state else None) == want["state"], (fd, got, want)
        if want["local"] is not None:
            assert got.local == want["local"], (fd, got, want)
        if want["remote"] is not None:
            assert got.remote == want["remote"], (fd, got, want)
    # kinds of fd the zoo holds, all present
    kinds = {f.kind for f in snap.fds}
    expected = {FdKind(v["kind"]) for v in truth.values()}
    assert expected <= kinds
    assert len(expected) >= (19 if extras["io_uring"] else 18) + (2 if os.geteuid() == 0 else 0)
    # epoll interest list from fdinfo
    epoll = fds[int(str(extras["epoll_fd"]))]
    assert epoll.info is not None
    assert sorted(epoll.info.epoll_targets or ()) == extras["epoll_targets"]
    inotify = fds[int(str(extras["inotify_fd"]))]
    assert inotify.info is not None
    assert inotify.info.inotify_watches == 2
    deleted = [f for f in snap.fds if f.kind is FdKind.FILE and f.deleted]
    assert len(deleted) == 1
    assert deleted[0].target is not None
    assert deleted[0].target.endswith("/deleted")
    # the never-connected and the failed-connect sockets are tcp CLOSE, with a note
    close = [f for f in snap.fds if f.kind is FdKind.TCP and f.state is not None
             and f.state.value == "CLOSE"]
    assert len(close) == 2
    assert all(f.note and "no kernel socket table" in f.note for f in close)
    assert snap.by_tcp_state["CLOSE-WAIT"] == 1
    assert snap.limits.soft is not None
    assert snap.limits.soft > 0
    assert snap.count == fdguard.count(child.pid)
    assert snap.command[-1].endswith("fdzoo.py")
    assert snap.socket_source == "sock_diag"


def _ss_rows(pid: int, flags: str) -> dict[int, tuple[str, str, str]]:
    """fd -> (state, local, peer) for the sockets of `pid`, as `ss` prints them."""
    out = subprocess.run(["ss", "-H", "-n", "-p", flags], capture_output=True, text=True,
                         check=True).stdout
    rows: dict[int, tuple[str, str, str]] = {}
    for line in out.splitlines():
        for fd in re.findall(rf"pid={pid},fd=(\d+)", line):
            cols = line.split()
            # -a on a single family: State Recv-Q Send-Q Local Peer Process
            if flags.endswith("x"):
                # unix: Netid State Recv-Q Send-Q Local Port Peer Port Process
                rows[int(fd)] = (cols[1], cols[4], cols[6])
            else:
                rows[int(fd)] = (cols[0], cols[3], cols[4])
    return rows


def test_sockets_agree_with_ss(
    zoo: Zoo,
) -> None:
    child, _, _ = zoo
    fds = _by_fd(fdguard.snapshot(child.pid))
    tcp = _ss_rows(child.pid, "-at")
    udp = _ss_rows(child.pid, "-au")
    unix = _ss_rows(child.pid, "-ax")
    assert tcp
    assert udp
    assert unix
    for fd, (state, local, peer) in {**tcp, **udp}.items():
        got = fds[fd]
        assert got.state is not None
        assert got.state.value == state, (fd, got, state)
        assert got.local == local.replace("%lo", ""), (fd, got, local)
        if peer.endswith(":*"):
            assert got.remote is None
        else:
            assert got.remote == peer, (fd, got, peer)
    for fd, (state, local, _) in unix.items():
        got = fds[fd]
        assert got.kind is FdKind.UNIX
        assert got.state is not None
        assert got.state.value == state
        if local != "*":
            assert got.local == local
    # what ss cannot see at all: the sockets that are in no kernel table
    ours_close = {f.fd for f in fds.values() if f.note and "no kernel socket table" in f.note}
    assert ours_close
    assert not ours_close & set(tcp)


_LSOF_TYPES = {
    "REG": {"file", "memfd"},
    "DIR": {"dir"},
    "CHR": {"chardev"},
    "FIFO": {"pipe", "fifo"},
    "IPv4": {"tcp", "udp", "raw"},
    "raw": {"raw"},
    "pack": {"packet"},
    "IPv6": {"tcp6", "udp6"},
    "unix": {"unix"},
    "netlink": {"netlink"},
    "sock": {"tcp", "tcp6", "udp", "udp6", "raw", "packet", "other"},
    "a_inode": {"epoll", "eventfd", "inotify", "signalfd", "timerfd", "io_uring", "pidfd",
                "fanotify", "other"},
}


def test_kinds_agree_with_lsof(
    zoo: Zoo,
) -> None:
    child, _, _ = zoo
    fds = _by_fd(fdguard.snapshot(child.pid))
    out = subprocess.run(["lsof", "-n", "-P", "-p", str(child.pid), "-F", "ft"],
                         capture_output=True, text=True, check=False).stdout
    seen = 0
    fd: int | None = None
    for line in out.splitlines():
        if line.startswith("f"):
            fd = int(line[1:]) if line[1:].isdigit() else None
        elif line.startswith("t") and fd is not None:
            lsof_type = line[1:]
            assert lsof_type in _LSOF_TYPES, (fd, lsof_type)
            assert fds[fd].kind.value in _LSOF_TYPES[lsof_type], (fd, fds[fd], lsof_type)
            seen += 1
    assert seen == len(fds)


def test_real_node_server(spawn: Callable[..., Child], node: str) -> None:
    child = spawn([node, str(ROOT / "examples" / "node_server.js")])
    port = int(child.ready)
    snap = fdguard.snapshot(child.pid)
    listeners = [f for f in snap.fds if f.state is not None and f.state.value == "LISTEN"]
    assert [f.local for f in listeners] == [f"127.0.0.1:{port}"]
    assert snap.by_tcp_state.get("CLOSE-WAIT") == 1
    assert snap.by_kind["epoll"] >= 1
    assert snap.by_kind["eventfd"] >= 1
    assert any(f.kind is FdKind.FILE and f.target and f.target.endswith("node_server.js")
               for f in snap.fds)
    # libuv's epoll instance watches the listener and the accepted sockets
    watched = set()
    for f in snap.fds:
        if f.kind is FdKind.EPOLL and f.info is not None and f.info.epoll_targets:
            watched |= set(f.info.epoll_targets)
    assert listeners[0].fd in watched


def test_fds_closing_mid_read_are_skipped(spawn: Callable[..., Child]) -> None:
    churn = spawn(python_proc("churn.py", "20"))
    assert churn.ready == "churning"
    for _ in range(200):
        snap = fdguard.snapshot(churn.pid)
        assert 3 <= snap.count < 200
        assert all(f.kind is not FdKind.OTHER or f.note for f in snap.fds)


def test_process_that_exits_mid_read_is_no_such_process(spawn: Callable[..., Child]) -> None:
    child = spawn(python_proc("fdzoo.py"))
    with ProcessDir(child.pid) as proc:
        proc.read_fd_links()
        child.proc.kill()
        child.proc.wait()
        # the /proc/PID directory fd stays bound to the dead process
        with pytest.raises(NoSuchProcess):
            proc.read_fd_links()
        with pytest.raises(NoSuchProcess):
            proc.check_alive()
    with pytest.raises(NoSuchProcess):
        fdguard.snapshot(child.pid)


def test_reused_pid_is_never_mistaken(spawn: Callable[..., Child]) -> None:
    child = spawn(python_proc("fdzoo.py"))
    snap = fdguard.snapshot(child.pid)
    stale = ProcessRef(child.pid, snap.process.start_time - 1)
    with pytest.raises(NoSuchProcess, match="reused"):
        fdguard.snapshot(child.pid, expect=stale)
    assert fdguard.snapshot(child.pid, expect=snap.process).count == snap.count


def test_zombie_is_no_such_process(spawn: Callable[..., Child]) -> None:
    child = spawn(python_proc("fdzoo.py"))
    os.kill(child.pid, signal.SIGKILL)
    # not reaped yet: a zombie has no fd table any more
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    with pytest.raises(NoSuchProcess):
        fdguard.snapshot(child.pid)


def test_fdguard_never_leaks_an_fd(
    zoo: Zoo,
) -> None:
    child, _, _ = zoo
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(1000):
        fdguard.snapshot(child.pid)
    assert len(os.listdir("/proc/self/fd")) == before
    # fdinfo mode and the tableless-socket probe (pidfd_getfd) too
    for _ in range(100):
        fdguard.snapshot(child.pid, fdinfo=True)
    assert len(os.listdir("/proc/self/fd")) == before


def test_fdinfo_flags(zoo: Zoo) -> None:
    child, _, _ = zoo
    snap = fdguard.snapshot(child.pid, fdinfo=True)
    assert all(f.info is not None for f in snap.fds)
    info = {f.fd: f.info for f in snap.fds if f.info is not None}
    by_kind = {f.kind: f.fd for f in snap.fds}
    # os.pipe() is close-on-exec (PEP 446); inotify_init1(0) is not
    assert info[by_kind[FdKind.PIPE]].cloexec
    assert not info[by_kind[FdKind.INOTIFY]].cloexec
    # the fifo was opened O_NONBLOCK, the plain file was not
    assert info[by_kind[FdKind.FIFO]].nonblocking
    assert not info[by_kind[FdKind.DIR]].nonblocking
