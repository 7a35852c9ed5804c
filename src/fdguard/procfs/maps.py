"""Read what a process runs and sees: its maps, executable, cwd, environment, own files.

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


def _read_pid_file(pid: int, name: str, root: str) -> bytes:
    """The whole of /proc/PID/`name`, with OSError turned into NoSuchProcess/AccessDenied."""
    with process_errors(pid, name):
        dir_fd = os.open(f"{root}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return read_file_at(dir_fd, name)
        finally:
            os.close(dir_fd)


def read_maps(pid: int, *, root: str = DEFAULT_ROOT) -> tuple[MappedObject, ...]:
    """The files `pid` has mapped.

    Raises:
        NoSuchProcess, AccessDenied, ProcfsFormatError.
    """
    return parse_maps(_read_pid_file(pid, "maps", root), f"{root}/{pid}/maps")


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


def remove_in_root(pid: int, path: str, *, root: str = DEFAULT_ROOT) -> None:
    """Remove a file fdguard made the process write (a diagnostic report), as it sees it.

    Raises:
        OSError: the file is gone or cannot be removed.
    """
    os.unlink(f"{root}/{pid}/root{path}")


def stat_in_root(pid: int, path: str, *, root: str = DEFAULT_ROOT) -> os.stat_result:
    """stat() `path` as process `pid` sees it (raises OSError)."""
    return os.stat(f"{root}/{pid}/root{path}")


def reachable_path(pid: int, path: str, *, root: str = DEFAULT_ROOT) -> str:
    """`path` as `pid` sees it, spelled so fdguard reaches the same file (e.g. to connect).

    With the same root that is `path` itself; inside another mount namespace
    it is reached through /proc/PID/root.
    """
    return path if same_root(pid, root=root) else f"{root}/{pid}/root{path}"


def same_root(pid: int, *, root: str = DEFAULT_ROOT) -> bool:
    """True when `pid` sees the same filesystem root as fdguard (no container between us)."""
    try:
        a = os.stat(f"{root}/{pid}/root")
        b = os.stat("/")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def cwd_path(pid: int, *, root: str = DEFAULT_ROOT) -> str:
    """The working directory of `pid`, as it sees it.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    with process_errors(pid, "cwd"):
        return os.readlink(f"{root}/{pid}/cwd")


def parse_environ(data: bytes) -> dict[str, str]:
    """NUL-separated NAME=value pairs (/proc/PID/environ) as a dict; malformed entries skipped."""
    out: dict[str, str] = {}
    for item in data.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            out[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return out


def read_environ(pid: int, *, root: str = DEFAULT_ROOT) -> dict[str, str]:
    """The environment `pid` started with.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    return parse_environ(_read_pid_file(pid, "environ", root))


def parse_uids(data: bytes) -> tuple[int, int]:
    """(real, effective) uid from /proc/PID/status.

    Raises:
        ProcfsFormatError: no Uid: line.
    """
    for line in data.split(b"\n"):
        if line.startswith(b"Uid:"):
            parts = line.split()
            try:
                return int(parts[1]), int(parts[2])
            except (IndexError, ValueError) as err:
                raise ProcfsFormatError("status", None, f"bad Uid line {line!r}") from err
    raise ProcfsFormatError("status", None, "no Uid: line")


def read_uids(pid: int, *, root: str = DEFAULT_ROOT) -> tuple[int, int]:
    """(real, effective) uid of `pid`.

    Raises:
        NoSuchProcess, AccessDenied, ProcfsFormatError.
    """
    return parse_uids(_read_pid_file(pid, "status", root))


def parse_nspid(data: bytes) -> int | None:
    """The PID a process has in its own (innermost) PID namespace, from /proc/PID/status."""
    for line in data.split(b"\n"):
        if line.startswith(b"NSpid:"):
            parts = line.split()[1:]
            try:
                return int(parts[-1]) if parts else None
            except ValueError:
                return None
    return None


def read_nspid(pid: int, *, root: str = DEFAULT_ROOT) -> int:
    """The PID `pid` knows itself by (differs inside a container's PID namespace).

    Raises:
        NoSuchProcess, AccessDenied.
    """
    inner = parse_nspid(_read_pid_file(pid, "status", root))
    return inner if inner is not None else pid
