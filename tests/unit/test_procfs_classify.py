"""classify_link and kind_from_mode over link targets and modes captured on a real kernel."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from fdguard.classify import classify_link, kind_from_mode
from fdguard.model import FdKind

DATA = Path(__file__).parent.parent / "data" / "proc"
FDS: dict[str, dict[str, Any]] = json.loads((DATA / "manifest.json").read_text())["fds"]

# What each captured fd is, by the name the capture gave it.
KIND_BY_NAME = {
    "file": FdKind.FILE,
    "deleted_file": FdKind.FILE,
    "dir": FdKind.DIR,
    "chardev": FdKind.CHARDEV,
    "fifo": FdKind.FIFO,
    "pipe_r": FdKind.PIPE,
    "pipe_w": FdKind.PIPE,
    "memfd": FdKind.MEMFD,
    "eventfd": FdKind.EVENTFD,
    "epoll": FdKind.EPOLL,
    "epoll_empty": FdKind.EPOLL,
    "inotify": FdKind.INOTIFY,
    "pidfd": FdKind.PIDFD,
    "timerfd": FdKind.TIMERFD,
    "signalfd": FdKind.SIGNALFD,
    "io_uring": FdKind.IO_URING,
    "fanotify": FdKind.FANOTIFY,
}
SOCKETS = sorted(n for n in FDS if FDS[n]["link"].startswith("socket:["))


def test_every_captured_fd_is_named() -> None:
    assert set(FDS) == set(KIND_BY_NAME) | set(SOCKETS)


@pytest.mark.parametrize("name", sorted(KIND_BY_NAME))
def test_link_then_mode_gives_the_kind(name: str) -> None:
    truth = FDS[name]
    lc = classify_link(truth["link"])
    kind = kind_from_mode(truth["mode"]) if lc.is_path else lc.kind
    assert kind is KIND_BY_NAME[name]
    assert not lc.is_socket


@pytest.mark.parametrize("name", SOCKETS)
def test_socket_links_carry_their_inode(name: str) -> None:
    lc = classify_link(FDS[name]["link"])
    assert lc.is_socket
    assert lc.kind is None  # a socket table decides
    assert lc.inode == FDS[name]["inode"]
    assert kind_from_mode(FDS[name]["mode"]) is FdKind.UNIX  # S_ISSOCK says only "socket"


def test_pipe_inode_and_path_details() -> None:
    lc = classify_link(FDS["pipe_r"]["link"])
    assert lc.inode == FDS["pipe_r"]["inode"]
    assert lc.target == FDS["pipe_r"]["link"]
    path = classify_link(FDS["file"]["link"])
    assert (path.is_path, path.deleted, path.target) == (True, False, FDS["file"]["path"])


def test_deleted_file_and_memfd() -> None:
    gone = classify_link(FDS["deleted_file"]["link"])
    assert gone.deleted
    assert gone.is_path
    assert gone.target.endswith("/gone.txt")
    memfd = classify_link(FDS["memfd"]["link"])
    assert (memfd.kind, memfd.target, memfd.deleted) == (
        FdKind.MEMFD, "/memfd:fdguard-sample", True,
    )


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("anon_inode:[eventpoll]", FdKind.EPOLL),
        ("anon_inode:inotify", FdKind.INOTIFY),
        ("anon_inode:[perf_event]", FdKind.OTHER),
        ("anon_inode:bpf-map", FdKind.OTHER),
        ("pidfd:[1234]", FdKind.PIDFD),  # older kernels name pidfds like this
        ("net:[4026531840]", FdKind.OTHER),
        ("", FdKind.OTHER),
    ],
)
def test_other_link_texts(target: str, kind: FdKind) -> None:
    assert classify_link(target).kind is kind


def test_namespace_link_keeps_inode() -> None:
    assert classify_link("net:[4026531840]").inode == 4026531840
    assert classify_link("socket:[not-a-number]").inode is None
    assert classify_link("socket:[").inode is None


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [
        (stat.S_IFREG, FdKind.FILE),
        (stat.S_IFDIR, FdKind.DIR),
        (stat.S_IFCHR, FdKind.CHARDEV),
        (stat.S_IFBLK, FdKind.BLOCKDEV),
        (stat.S_IFIFO, FdKind.FIFO),
        (stat.S_IFSOCK, FdKind.UNIX),
        (stat.S_IFLNK, FdKind.OTHER),
        (0, FdKind.OTHER),
    ],
)
def test_kind_from_mode(fmt: int, kind: FdKind) -> None:
    assert kind_from_mode(fmt | 0o644) is kind
