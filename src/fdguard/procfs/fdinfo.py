"""Parse /proc/PID/fdinfo/FD: flags, position, and the per-kind extras.

The extras are what makes fdinfo worth reading for anonymous inodes: the
interest list of an epoll instance (`tfd:` lines), the watches of an inotify
instance, the counter of an eventfd, the PID behind a pidfd.
"""

from __future__ import annotations

from fdguard.errors import ProcfsFormatError
from fdguard.model import FdInfo


def parse_fdinfo(data: bytes, source: str = "fdinfo") -> FdInfo:
    """Parse the bytes of one fdinfo file.

    Raises:
        ProcfsFormatError: a line that fdinfo never prints, naming `source` and the line.
    """
    pos: int | None = None
    flags: int | None = None
    mnt_id: int | None = None
    ino: int | None = None
    tfds: list[int] | None = None
    inotify: int | None = None
    ev_count: int | None = None
    ev_id: int | None = None
    pidfd_pid: int | None = None
    clockid: int | None = None
    sigmask: int | None = None
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw:
            continue
        key, sep, rest = raw.partition(b":")
        if not sep and raw[:1] in (b" ", b"\t"):
            # Indented continuation lines (io_uring's poll list) carry no key.
            continue
        if not sep:
            raise ProcfsFormatError(source, lineno, f"no ':' in {raw[:60]!r}")
        value = rest.strip()
        try:
            if key == b"pos":
                pos = int(value)
            elif key == b"flags":
                flags = int(value, 8)
            elif key == b"mnt_id":
                mnt_id = int(value)
            elif key == b"ino":
                ino = int(value)
            elif key == b"tfd":
                # "tfd:        5 events:       19 data: ..."; the target fd comes first.
                if tfds is None:
                    tfds = []
                tfds.append(int(value.split(None, 1)[0]))
            elif key == b"inotify wd":
                inotify = (inotify or 0) + 1
            elif key == b"eventfd-count":
                ev_count = int(value, 16)
            elif key == b"eventfd-id":
                ev_id = int(value)
            elif key == b"Pid":
                pidfd_pid = int(value)
            elif key == b"clockid":
                clockid = int(value)
            elif key == b"sigmask":
                sigmask = int(value, 16)
        except (ValueError, IndexError) as err:
            raise ProcfsFormatError(source, lineno, f"bad value in {raw[:60]!r}") from err
    if pos is None or flags is None:
        raise ProcfsFormatError(source, None, "missing pos: or flags: line")
    return FdInfo(
        pos=pos,
        flags=flags,
        mnt_id=mnt_id,
        ino=ino,
        epoll_targets=tuple(tfds) if tfds is not None else None,
        inotify_watches=inotify,
        eventfd_count=ev_count,
        eventfd_id=ev_id,
        pidfd_pid=pidfd_pid,
        timerfd_clockid=clockid,
        signalfd_mask=sigmask,
    )
