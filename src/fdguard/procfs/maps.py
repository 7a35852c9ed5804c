"""Read what a process has mapped (/proc/PID/maps) and open those objects as it sees them.

Runtime detection needs the files a process runs: its executable and the
shared objects in its maps (libuv.so.1, uvloop's extension module). They are
opened through /proc/PID/root so a process in another mount namespace (a
container) is read at its own paths, and the executable through /proc/PID/exe
so a binary replaced on disk since the process started is still the one read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fdguard.errors import ProcfsFormatError
from fdguard.procfs._oserror import process_errors
from fdguard.procfs.process import DEFAULT_ROOT, read_file_at

_DELETED = " (deleted)"


@dataclass(frozen=True, slots=True)
class MappedObject:
    """One file mapped into a process (the first mapping of each path)."""

    path: str
    inode: int
    deleted: bool


def parse_maps(data: bytes, source: str = "maps") -> tuple[MappedObject, ...]:
    """The distinct files mapped, in address order; anonymous and [special] maps are skipped.

    Raises:
        ProcfsFormatError: a line without the six documented fields.
    """
    seen: set[str] = set()
    out: list[MappedObject] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw:
            continue
        parts = raw.split(None, 5)
        if len(parts) < 5:
            raise ProcfsFormatError(source, lineno, f"expected 5+ fields in {raw[:60]!r}")
        if len(parts) == 5:
            continue
        path = parts[5].decode("utf-8", "surrogateescape")
        if not path.startswith("/"):
            continue
        deleted = path.endswith(_DELETED)
        if deleted:
            path = path[: -len(_DELETED)]
        if path in seen:
            continue
        seen.add(path)
        try:
            inode = int(parts[4])
        except ValueError as err:
            raise ProcfsFormatError(source, lineno, f"bad inode in {raw[:60]!r}") from err
        out.append(MappedObject(path=path, inode=inode, deleted=deleted))
    return tuple(out)


def read_maps(pid: int, *, root: str = DEFAULT_ROOT) -> tuple[MappedObject, ...]:
    """The files `pid` has mapped.

    Raises:
        NoSuchProcess, AccessDenied, ProcfsFormatError.
    """
    with process_errors(pid, "maps"):
        dir_fd = os.open(f"{root}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            data = read_file_at(dir_fd, "maps")
        finally:
            os.close(dir_fd)
    return parse_maps(data, f"{root}/{pid}/maps")


def open_exe(pid: int, *, root: str = DEFAULT_ROOT) -> int:
    """Open the executable `pid` runs, read-only (the caller closes the fd).

    Raises:
        NoSuchProcess, AccessDenied.
    """
    with process_errors(pid, "exe"):
        return os.open(f"{root}/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC)


def exe_path(pid: int, *, root: str = DEFAULT_ROOT) -> str:
    """The path of the executable `pid` runs, as the process sees it.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    with process_errors(pid, "exe"):
        path = os.readlink(f"{root}/{pid}/exe")
    return path[: -len(_DELETED)] if path.endswith(_DELETED) else path


def open_in_root(pid: int, path: str, *, root: str = DEFAULT_ROOT) -> int:
    """Open `path` as process `pid` sees it (through /proc/PID/root), read-only.

    Raises:
        OSError: the file is gone or unreadable (callers decide what that means).
    """
    return os.open(f"{root}/{pid}/root{path}", os.O_RDONLY | os.O_CLOEXEC)


def read_in_root(pid: int, path: str, *, root: str = DEFAULT_ROOT, limit: int = 1 << 20) -> bytes:
    """Read a small file as process `pid` sees it; at most `limit` bytes.

    Raises:
        OSError: the file is gone or unreadable.
    """
    fd = open_in_root(pid, path, root=root)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def list_in_root(pid: int, directory: str, *, root: str = DEFAULT_ROOT) -> list[str]:
    """The names in `directory` as process `pid` sees it.

    Raises:
        OSError: the directory is gone or unreadable.
    """
    return os.listdir(f"{root}/{pid}/root{directory}")
