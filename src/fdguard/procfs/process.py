"""Read one process's /proc directory race-safely: stat, cmdline, limits, fd links.

Design: `ProcessDir` opens /proc/PID once as a directory fd and reads everything
relative to it. A /proc/PID directory fd stays bound to the process it was
opened for: once that process exits, reads through it fail with ENOENT/ESRCH
even if the PID is reused, so a snapshot can never mix two processes. The start
time (field 22 of stat) is checked on open and again at the end, so a caller
holding a `ProcessRef` learns of reuse as `NoSuchProcess`.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from fdguard.errors import NoSuchProcess, ProcfsFormatError
from fdguard.model import Limits, ProcessRef
from fdguard.procfs._oserror import process_errors, translate

try:
    # Optional C loop over readlinkat with the GIL released (see _speedups.c).
    from fdguard import _speedups
except ImportError:  # not compiled here: the pure-Python loop below does the same
    _speedups = None  # type: ignore[assignment]

DEFAULT_ROOT = "/proc"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


TAG_OTHER, TAG_SOCKET, TAG_PIPE, TAG_PATH = 0, 1, 2, 3


def tag_link(target: str) -> tuple[int, int | None]:
    """(tag, inode) of an fd link text, as `ProcessDir.read_fd_entries` gives them."""
    for prefix, tag in (("socket:[", TAG_SOCKET), ("pipe:[", TAG_PIPE)):
        if target.startswith(prefix) and target.endswith("]"):
            digits = target[len(prefix) : -1]
            if digits.isdigit() and digits.isascii():
                return tag, int(digits)
            return TAG_OTHER, None
    if target.startswith("/") and not target.startswith("/memfd:"):
        return TAG_PATH, None
    return TAG_OTHER, None


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/PID/stat that fdguard uses."""

    pid: int
    comm: str
    state: str
    ppid: int
    start_time: int


def stat_fields(data: bytes, source: str = "stat", maxsplit: int = -1) -> list[bytes]:
    """The fields of a /proc/PID/stat line from field 3 (state) on: fields[N - 3] is field N.

    The command name (field 2) may hold spaces and parentheses, so fields are
    counted from the last ')'. `maxsplit` stops splitting early for callers
    that need only the first fields.

    Raises:
        ProcfsFormatError: there is no '(comm)' field.
    """
    close_paren = data.rfind(b")")
    if close_paren < 0:
        raise ProcfsFormatError(source, 1, "no '(comm)' field")
    return data[close_paren + 2 :].split(None, maxsplit)


def parse_stat(data: bytes, source: str = "stat") -> ProcStat:
    """Parse /proc/PID/stat. The command name may hold spaces and parentheses.

    Raises:
        ProcfsFormatError: the line does not have the documented shape.
    """
    open_paren = data.find(b"(")
    close_paren = data.rfind(b")")
    if open_paren < 0 or close_paren < open_paren:
        raise ProcfsFormatError(source, 1, "no '(comm)' field")
    try:
        pid = int(data[:open_paren])
        fields = stat_fields(data, source)
        # fields[0] is field 3 (state); start time is field 22.
        return ProcStat(
            pid=pid,
            comm=data[open_paren + 1 : close_paren].decode("utf-8", "replace"),
            state=fields[0].decode("ascii"),
            ppid=int(fields[1]),
            start_time=int(fields[19]),
        )
    except (ValueError, IndexError, UnicodeDecodeError) as err:
        raise ProcfsFormatError(source, 1, "fields missing or not numbers") from err


def parse_limits(data: bytes, source: str = "limits") -> Limits:
    """Parse RLIMIT_NOFILE ("Max open files") out of /proc/PID/limits.

    Raises:
        ProcfsFormatError: the line is missing or its values are not numbers.
    """
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if line.startswith(b"Max open files"):
            parts = line[len(b"Max open files") :].split()
            if len(parts) < 2:
                raise ProcfsFormatError(source, lineno, "expected soft and hard values")
            try:
                soft, hard = (None if p == b"unlimited" else int(p) for p in parts[:2])
            except ValueError as err:
                raise ProcfsFormatError(source, lineno, f"not a number: {line!r}") from err
            return Limits(soft=soft, hard=hard)
    raise ProcfsFormatError(source, None, "no 'Max open files' line")


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def read_file_at(dir_fd: int, name: str) -> bytes:
    """Read a whole small /proc file relative to `dir_fd` (raises OSError)."""
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


def count_fds(pid: int, *, root: str = DEFAULT_ROOT) -> int:
    """Count the open fds of `pid` cheaply.

    Linux >= 6.2 reports the number of open fds as the size of /proc/PID/fd,
    O(1) whatever the count; older kernels report 0 there, so the fallback
    lists the directory.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    path = f"{root}/{pid}/fd"
    with process_errors(pid, "fd"):
        size = os.stat(path).st_size
        if size > 0 and _is_procfs(root):
            return size
        return len(os.listdir(path))


# The root directory of every procfs mount is inode 1 (PROC_ROOT_INO in
# fs/proc/internal.h). A root that is not procfs (a fake tree in tests) has a
# directory size that says nothing about fds, so counting must list it.
_PROC_ROOT_INO = 1


@functools.lru_cache(maxsize=16)
def _is_procfs(root: str) -> bool:
    try:
        return os.stat(root).st_ino == _PROC_ROOT_INO
    except OSError:
        return False


class ProcessDir:
    """An open /proc/PID directory: every read is relative to it (see module comment).

    Use as a context manager; it closes its directory fds on exit.
    """

    def __init__(self, pid: int, *, root: str = DEFAULT_ROOT, expect: ProcessRef | None = None):
        self.pid = pid
        self.root = root
        self._fd_dir: int | None = None
        self._fdinfo_dir: int | None = None
        try:
            self.dir_fd = os.open(f"{root}/{pid}", _DIR_FLAGS)
        except FileNotFoundError as err:
            raise NoSuchProcess(pid) from err
        except OSError as err:
            raise translate(err, pid, "/proc entry") from err
        try:
            self.stat = self.read_stat()
            if expect is not None and expect.start_time != self.stat.start_time:
                raise NoSuchProcess(pid, "PID was reused by another process")
        except BaseException:
            self.close()
            raise
        self.ref = ProcessRef(pid, self.stat.start_time)

    def __enter__(self) -> ProcessDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for attr in ("_fd_dir", "_fdinfo_dir"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def _read(self, name: str) -> bytes:
        with process_errors(self.pid, name):
            return read_file_at(self.dir_fd, name)

    def read_stat(self) -> ProcStat:
        return parse_stat(self._read("stat"), f"{self.root}/{self.pid}/stat")

    def read_cmdline(self) -> tuple[str, ...]:
        data = self._read("cmdline")
        if not data:
            return (f"[{self.stat.comm}]",)
        return tuple(p.decode("utf-8", "replace") for p in data.rstrip(b"\0").split(b"\0"))

    def read_limits(self) -> Limits:
        return parse_limits(self._read("limits"), f"{self.root}/{self.pid}/limits")

    def read_maps(self) -> bytes:
        return self._read("maps")

    def read_environ(self) -> bytes:
        return self._read("environ")

    def net_namespace(self) -> int | None:
        """The inode of the process's network namespace, or None if it cannot be read."""
        try:
            return os.stat("ns/net", dir_fd=self.dir_fd).st_ino
        except OSError:
            return None

    def check_alive(self) -> None:
        """Raise NoSuchProcess unless the process read so far still exists, unreused."""
        current = self.read_stat()
        if current.start_time != self.stat.start_time or current.state in ("Z", "X"):
            raise NoSuchProcess(self.pid, "exited while being read")

    # -- fds ---------------------------------------------------------------

    @property
    def fd_dir(self) -> int:
        if self._fd_dir is None:
            with process_errors(self.pid, "fd"):
                self._fd_dir = os.open("fd", _DIR_FLAGS, dir_fd=self.dir_fd)
        return self._fd_dir

    @property
    def fdinfo_dir(self) -> int:
        if self._fdinfo_dir is None:
            with process_errors(self.pid, "fdinfo"):
                self._fdinfo_dir = os.open("fdinfo", _DIR_FLAGS, dir_fd=self.dir_fd)
        return self._fdinfo_dir

    def read_fd_links(self) -> list[tuple[int, str]]:
        """Every open fd with its link target, in fd order.

        An fd closed between listing and readlink is skipped: that is the normal
        race of reading a live process, not an error.
        """
        fd_dir = self.fd_dir
        with process_errors(self.pid, "fd"):
            names = os.listdir(fd_dir)
        out: list[tuple[int, str]] = []
        append = out.append
        readlink = os.readlink
        for name in names:
            try:
                append((int(name), readlink(name, dir_fd=fd_dir)))
            except FileNotFoundError:
                continue
            except OSError as err:
                raise translate(err, self.pid, f"fd/{name}") from err
        out.sort()
        return out

    def iter_fd_links(self) -> Iterator[tuple[int, str]]:
        """Yield every open fd with its link target, as /proc lists them (ascending).

        The streaming form of `read_fd_links`, for callers that classify as
        they read; the same race rules apply.
        """
        fd_dir = self.fd_dir
        if _speedups is not None:
            try:
                links = _speedups.read_fd_links(fd_dir)
            except OSError as err:
                where = f"fd/{err.filename}" if err.filename else "fd"
                raise translate(err, self.pid, where) from err
            yield from links
            return
        with process_errors(self.pid, "fd"):
            names = os.listdir(fd_dir)
        readlink = os.readlink
        for name in names:
            try:
                target = readlink(name, dir_fd=fd_dir)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise translate(err, self.pid, f"fd/{name}") from err
            yield int(name), target

    def read_fd_entries(self) -> list[tuple[int, str, int, int | None, int | None]]:
        """Every fd as (fd, target, tag, inode, mode), in ascending fd order.

        `tag` pre-sorts the link text so a caller need not: TAG_SOCKET
        ("socket:[N]"), TAG_PIPE ("pipe:[N]"), TAG_PATH (a path, not a memfd),
        TAG_OTHER. `inode` is N for sockets and pipes and st_ino for paths;
        `mode` is st_mode for paths (their type is not in the text), else None.
        Same race rules as `iter_fd_links`: an fd that closes is left out.
        """
        if _speedups is not None:
            fd_dir = self.fd_dir
            try:
                return _speedups.read_fd_links(fd_dir, True)
            except OSError as err:
                where = f"fd/{err.filename}" if err.filename else "fd"
                raise translate(err, self.pid, where) from err
        out: list[tuple[int, str, int, int | None, int | None]] = []
        # Without the C loop, fds showing the same live path share one dentry,
        # hence one type and inode: stat each such path once.
        seen: dict[str, tuple[int, int]] = {}
        for fd, target in self.iter_fd_links():
            tag, inode = tag_link(target)
            mode = None
            if tag == TAG_PATH:
                known = None if target.endswith(" (deleted)") else seen.get(target)
                if known is None:
                    st = self.stat_fd(fd)
                    if st is None:
                        continue
                    known = (st.st_ino, st.st_mode)
                    seen[target] = known
                inode, mode = known
            out.append((fd, target, tag, inode, mode))
        return out

    def stat_fd(self, fd: int) -> os.stat_result | None:
        """stat() the object behind `fd` (follows the magic link); None if it closed."""
        try:
            return os.stat(str(fd), dir_fd=self.fd_dir)
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno == errno.ENXIO:
                return None
            raise translate(err, self.pid, f"fd/{fd}") from err

    def read_fdinfo(self, fd: int) -> bytes | None:
        """The raw fdinfo of `fd`, or None if the fd closed meanwhile."""
        try:
            return read_file_at(self.fdinfo_dir, str(fd))
        except FileNotFoundError:
            return None
        except OSError as err:
            raise translate(err, self.pid, f"fdinfo/{fd}") from err
