"""parse_fdinfo over fdinfo files captured on a real kernel, one per fd kind (tests/data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fdguard.errors import ProcfsFormatError
from fdguard.model import FdInfo
from fdguard.procfs.fdinfo import parse_fdinfo

DATA = Path(__file__).parent.parent / "data" / "proc"
MANIFEST: dict[str, Any] = json.loads((DATA / "manifest.json").read_text())
NAMES = sorted(MANIFEST["fds"])


def info(name: str) -> FdInfo:
    return parse_fdinfo((DATA / "fdinfo" / name).read_bytes(), f"fdinfo/{name}")


@pytest.mark.parametrize("name", NAMES)
def test_every_sample_parses_with_its_inode_and_cloexec(name: str) -> None:
    got = info(name)
    truth = MANIFEST["fds"][name]
    assert got.ino == truth["inode"]
    assert got.mnt_id is not None
    # Python opens every fd with O_CLOEXEC (PEP 446), and so did the capture.
    assert got.cloexec


def test_regular_file_position_flags_and_lock_line() -> None:
    got = info("file")
    assert got == FdInfo(pos=42, flags=0o2102002, mnt_id=27, ino=2148148)
    assert got.pos == MANIFEST["fds"]["file"]["pos"]
    assert got.access_mode == "rw"
    assert not got.nonblocking
    # The sample has a "lock:" line (flock) that must simply be ignored.
    assert b"lock:" in (DATA / "fdinfo" / "file").read_bytes()


def test_pipe_ends_access_modes_and_nonblocking() -> None:
    r, w = info("pipe_r"), info("pipe_w")
    assert (r.access_mode, w.access_mode) == ("r", "w")
    assert r.nonblocking
    assert w.nonblocking
    assert r.ino == w.ino


def test_epoll_interest_list_in_kernel_order() -> None:
    got = info("epoll")
    assert got.epoll_targets == (11, 8)
    assert sorted(got.epoll_targets) == sorted(MANIFEST["fds"]["epoll"]["targets"])
    # An epoll instance with nothing registered prints no tfd: lines.
    assert info("epoll_empty").epoll_targets is None


def test_inotify_watch_count() -> None:
    assert info("inotify").inotify_watches == MANIFEST["fds"]["inotify"]["watches"] == 2


def test_eventfd_counter_and_id() -> None:
    got = info("eventfd")
    assert got.eventfd_count == MANIFEST["fds"]["eventfd"]["count"] == 5
    assert got.eventfd_id == 1
    assert got.nonblocking


def test_pidfd_target_pid() -> None:
    assert info("pidfd").pidfd_pid == MANIFEST["fds"]["pidfd"]["pid"] == 12929


def test_timerfd_clock() -> None:
    assert info("timerfd").timerfd_clockid == MANIFEST["fds"]["timerfd"]["clockid"] == 1


def test_signalfd_mask() -> None:
    got = info("signalfd")
    assert got.signalfd_mask == MANIFEST["fds"]["signalfd"]["sigmask"] == 0x200


def test_io_uring_extra_lines_are_ignored() -> None:
    got = info("io_uring")
    ring = MANIFEST["fds"]["io_uring"]["inode"]
    assert got == FdInfo(pos=0, flags=0o2000002, mnt_id=17, ino=ring)


def test_kinds_without_extras_have_none() -> None:
    for name in ("file", "dir", "fifo", "tcp_listen", "unix_pair_a", "memfd"):
        got = info(name)
        assert got.epoll_targets is None
        assert got.inotify_watches is None
        assert got.eventfd_count is None
        assert got.pidfd_pid is None


def test_indented_continuation_lines_are_skipped() -> None:
    data = b"pos:\t0\nflags:\t02\nPollList:\n  op=1, task_works=0\n"
    assert parse_fdinfo(data) == FdInfo(pos=0, flags=2)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"pos:\t0\nflags:\tnot-octal\n", 2),
        (b"pos:\t0\nflags:\t09\n", 2),  # 9 is not an octal digit
        (b"pos:\tminus\nflags:\t02\n", 1),
        (b"pos:\t0\nflags:\t02\ngarbage without colon\n", 3),
        (b"pos:\t0\nflags:\t02\ntfd:\n", 3),
        (b"pos:\t0\nflags:\t02\neventfd-count: zz\n", 3),
        (b"pos:\t0\nflags:\t02\nPid:\t-\n", 3),
        (b"pos:\t0\nflags:\t02\nsigmask:\txyz\n", 3),
    ],
)
def test_malformed_fdinfo_names_file_and_line(data: bytes, line: int) -> None:
    with pytest.raises(ProcfsFormatError) as err:
        parse_fdinfo(data, "/fake/1/fdinfo/3")
    assert (err.value.source, err.value.line) == ("/fake/1/fdinfo/3", line)
    assert f"/fake/1/fdinfo/3:{line}" in str(err.value)


@pytest.mark.parametrize("data", [b"", b"pos:\t0\n", b"flags:\t02\n", b"mnt_id:\t3\n"])
def test_fdinfo_without_pos_or_flags(data: bytes) -> None:
    with pytest.raises(ProcfsFormatError) as err:
        parse_fdinfo(data, "fi")
    assert err.value.source == "fi"
    assert err.value.line is None
