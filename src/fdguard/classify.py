"""Turn an fd's link target (and, for paths, its stat mode) into an FdKind.

Pure functions: the readlink text is the whole input, except for paths, where
the file type comes from stat() of the object behind the fd, never from the
path (a path may have been replaced since it was opened).
"""

from __future__ import annotations

import stat

from fdguard.model import FdKind

# Anonymous-inode fds by their whole link text, so a hot loop can look one up
# without slicing.
ANON_KINDS: dict[str, FdKind] = {
    "anon_inode:[eventpoll]": FdKind.EPOLL,
    "anon_inode:[eventfd]": FdKind.EVENTFD,
    "anon_inode:inotify": FdKind.INOTIFY,
    "anon_inode:[fanotify]": FdKind.FANOTIFY,
    "anon_inode:[signalfd]": FdKind.SIGNALFD,
    "anon_inode:[timerfd]": FdKind.TIMERFD,
    "anon_inode:[io_uring]": FdKind.IO_URING,
    "anon_inode:[pidfd]": FdKind.PIDFD,
}

# Kinds whose fdinfo carries what classification or attribution needs (epoll
# interest lists, inotify watches, eventfd counters, pidfd targets); they are
# rare, so reading their fdinfo always costs little.
FDINFO_KINDS = frozenset(
    {
        FdKind.EPOLL,
        FdKind.EVENTFD,
        FdKind.INOTIFY,
        FdKind.FANOTIFY,
        FdKind.SIGNALFD,
        FdKind.TIMERFD,
        FdKind.IO_URING,
        FdKind.PIDFD,
    }
)

DELETED_SUFFIX = " (deleted)"


class LinkClass:
    """What a link target alone says. `kind` is None when a stat or a socket lookup must decide."""

    __slots__ = ("deleted", "inode", "is_path", "is_socket", "kind", "target")

    def __init__(
        self,
        kind: FdKind | None,
        target: str,
        inode: int | None = None,
        *,
        is_socket: bool = False,
        is_path: bool = False,
        deleted: bool = False,
    ) -> None:
        self.kind = kind
        self.target = target
        self.inode = inode
        self.is_socket = is_socket
        self.is_path = is_path
        self.deleted = deleted


def _bracket_inode(text: str) -> int | None:
    start = text.find("[")
    end = text.find("]", start + 1)
    if start < 0 or end < 0:
        return None
    try:
        return int(text[start + 1 : end])
    except ValueError:
        return None


def classify_link(target: str) -> LinkClass:
    """Classify an fd by the text readlink(/proc/PID/fd/N) returned."""
    if target.startswith("socket:["):
        return LinkClass(None, target, _bracket_inode(target), is_socket=True)
    if target.startswith("pipe:["):
        return LinkClass(FdKind.PIPE, target, _bracket_inode(target))
    if target.startswith("anon_inode:"):
        return LinkClass(ANON_KINDS.get(target, FdKind.OTHER), target)
    if target.startswith("pidfd:"):
        return LinkClass(FdKind.PIDFD, target)
    if target.startswith("/memfd:"):
        name = target.removesuffix(DELETED_SUFFIX)
        return LinkClass(FdKind.MEMFD, name, deleted=True)
    if target.startswith("/"):
        deleted = target.endswith(DELETED_SUFFIX)
        return LinkClass(
            None, target.removesuffix(DELETED_SUFFIX), is_path=True, deleted=deleted
        )
    # Namespaces ("net:[...]"), bpf objects and anything newer than this table.
    return LinkClass(FdKind.OTHER, target, _bracket_inode(target))


def kind_from_mode(mode: int) -> FdKind:
    """The kind of a path-backed fd from its st_mode."""
    if stat.S_ISREG(mode):
        return FdKind.FILE
    if stat.S_ISDIR(mode):
        return FdKind.DIR
    if stat.S_ISCHR(mode):
        return FdKind.CHARDEV
    if stat.S_ISBLK(mode):
        return FdKind.BLOCKDEV
    if stat.S_ISFIFO(mode):
        return FdKind.FIFO
    if stat.S_ISSOCK(mode):
        return FdKind.UNIX
    return FdKind.OTHER
