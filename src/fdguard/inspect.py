"""`snapshot(pid)`: every fd of a process, classified, with its limits — and `count(pid)`.

This is the facade most of fdguard uses. Reading is race-safe (see
`procfs.process`): fds that close mid-read are skipped; a process that exits,
or whose PID is reused, raises `NoSuchProcess` rather than returning data
from the wrong process.

Cost: the floor is one readlink per fd. On top of it a snapshot adds a stat()
for path-backed fds (their type cannot be read from the link; the C reader in
`_speedups` does both without the GIL), one netlink dump per socket table that
still has unresolved inodes (the big ones fetched in a thread meanwhile), and
fdinfo reads only for the rare kinds whose fdinfo classification needs
(epoll, eventfd, inotify...).
Flags and positions for every fd are opt-in (`fdinfo=True`): they double the
syscalls per fd.
"""

from __future__ import annotations

import dataclasses
import functools
import time

from fdguard.classify import (
    ANON_KINDS,
    DELETED_SUFFIX,
    FDINFO_KINDS,
    classify_link,
    kind_from_mode,
)
from fdguard.errors import ProcfsFormatError
from fdguard.model import Fd, FdInfo, FdKind, ProcessRef, Snapshot
from fdguard.procfs.fdinfo import parse_fdinfo
from fdguard.procfs.process import (
    DEFAULT_ROOT,
    TAG_PATH,
    TAG_PIPE,
    TAG_SOCKET,
    ProcessDir,
    count_fds,
)
from fdguard.procfs.sockets import SocketResolver
from fdguard.procfs.sockprobe import SocketProber


def count(pid: int, *, root: str = DEFAULT_ROOT) -> int:
    """The number of open fds of `pid`, O(1) on Linux >= 6.2.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    return count_fds(pid, root=root)


def _read_info(proc: ProcessDir, fd: int, kind: FdKind) -> FdInfo | None:
    raw = proc.read_fdinfo(fd)
    if raw is None:
        return None
    info = parse_fdinfo(raw, f"{proc.root}/{proc.pid}/fdinfo/{fd}")
    # A kind with nothing registered prints no extra lines: make "none" explicit.
    if kind is FdKind.EPOLL and info.epoll_targets is None:
        info = dataclasses.replace(info, epoll_targets=())
    elif kind is FdKind.INOTIFY and info.inotify_watches is None:
        info = dataclasses.replace(info, inotify_watches=0)
    return info


# Above this many fds, the socket tables are dumped in a thread while fd links are
# read (see SocketResolver.prefetch); below it everything is fast anyway and a
# speculative dump of a busy host's tables would cost more than it saves.
PREFETCH_MIN_FDS = 1000

def snapshot(
    pid: int,
    *,
    root: str = DEFAULT_ROOT,
    fdinfo: bool = False,
    expect: ProcessRef | None = None,
    probe_sockets: bool = True,
) -> Snapshot:
    """Read and classify every fd of `pid`.

    Args:
        pid: the process.
        root: the procfs mount (tests point it elsewhere).
        fdinfo: read flags and position of every fd, not only of the kinds that need it.
        expect: the process identity the caller knows; a reused PID raises NoSuchProcess.
        probe_sockets: classify sockets found in no socket table with pidfd_getfd.

    Raises:
        NoSuchProcess: the process does not exist, exited mid-read, or its PID was reused.
        AccessDenied: not allowed to read its fds.
        ProcfsFormatError: a /proc file had an unexpected format.

    Example:
        >>> snap = snapshot(os.getpid())
        >>> snap.count, snap.by_kind  # doctest: +SKIP
        (7, {'pipe': 3, 'file': 2, 'chardev': 2})
    """
    with ProcessDir(pid, root=root, expect=expect) as proc, SocketResolver(proc) as sockets:
        taken_at = time.time()
        command = proc.read_cmdline()
        limits = proc.read_limits()
        if count_fds(pid, root=root) >= PREFETCH_MIN_FDS:
            sockets.prefetch()

        # One pass over the links, hot path first, building each Fd once with
        # tuple.__new__ (C speed; NamedTuple's own __new__ is Python code).
        # Sockets get a placeholder that is replaced once tables are read.
        fds: list[Fd] = []
        append = fds.append
        mk = tuple.__new__
        socket_rows: dict[int, list[int]] = {}
        path_kind = functools.cache(kind_from_mode)
        pipe, other = FdKind.PIPE, FdKind.OTHER
        for fd, target, tag, ino, mode in proc.read_fd_entries():
            if tag == TAG_SOCKET:
                assert ino is not None
                rows_of = socket_rows.get(ino)
                if rows_of is None:
                    socket_rows[ino] = [len(fds)]
                else:
                    rows_of.append(len(fds))
                info = _read_info(proc, fd, other) if fdinfo else None
                append(mk(Fd, (fd, other, target, ino, None, None, None, False, info,
                               None, None, None, None)))
            elif tag == TAG_PIPE:
                info = _read_info(proc, fd, pipe) if fdinfo else None
                append(mk(Fd, (fd, pipe, target, ino, None, None, None, False, info,
                               None, None, None, None)))
            elif tag == TAG_PATH:
                assert mode is not None
                deleted = target.endswith(DELETED_SUFFIX)
                path = target[: -len(DELETED_SUFFIX)] if deleted else target
                kind = path_kind(mode)
                info = _read_info(proc, fd, kind) if fdinfo else None
                append(mk(Fd, (fd, kind, path, ino, None, None, None, deleted, info,
                               None, None, None, None)))
            else:
                anon = ANON_KINDS.get(target)
                if anon is None:
                    lc = classify_link(target)
                    assert lc.kind is not None
                    kind = lc.kind
                    fd_obj = Fd(fd, kind, lc.target, lc.inode, deleted=lc.deleted)
                else:
                    kind = anon
                    fd_obj = Fd(fd, kind, target)
                if fdinfo or kind in FDINFO_KINDS:
                    info = _read_info(proc, fd, kind)
                    # Anonymous inodes show no inode in their link; fdinfo has it.
                    inode = fd_obj.inode if fd_obj.inode is not None or info is None else info.ino
                    fd_obj = fd_obj._replace(info=info, inode=inode)
                append(fd_obj)

        entries, source = sockets.resolve(set(socket_rows))
        warnings: list[str] = []
        unresolved = [i for i in socket_rows if i not in entries]
        if unresolved:
            # Probing asks the live process behind the PID, so only when reading
            # the real procfs: a fake tree's PID may belong to anybody here.
            if probe_sockets and root == DEFAULT_ROOT:
                _probe(proc, fds, socket_rows, unresolved, warnings)
            else:
                if probe_sockets:
                    warnings.append(
                        f"not probing tableless sockets: procfs root {root} is not {DEFAULT_ROOT}"
                    )
                for ino in unresolved:
                    for i in socket_rows[ino]:
                        fds[i] = fds[i]._replace(
                            note="socket in no kernel table; family unknown (probe disabled)"
                        )
        for ino, ino_rows in socket_rows.items():
            e = entries.get(ino)
            if e is None:
                continue
            for i in ino_rows:
                f = fds[i]
                fds[i] = mk(Fd, (f[0], e.kind, f[2], f[3], e.state, e.local, e.remote, False,
                                 f[8], e.peer_inode, e.recv_q, e.send_q, None))
        proc.check_alive()
        return Snapshot(
            process=proc.ref,
            command=command,
            limits=limits,
            fds=tuple(fds),
            taken_at=taken_at,
            socket_source=source,
            warnings=tuple(warnings),
        )


def _probe(
    proc: ProcessDir,
    fds: list[Fd],
    socket_rows: dict[int, list[int]],
    unresolved: list[int],
    warnings: list[str],
) -> None:
    """Classify sockets in no table, in place, by asking them (pidfd_getfd + getsockopt)."""
    try:
        prober = SocketProber(proc.pid)
    except OSError as err:
        warnings.append(f"cannot open a pidfd to classify tableless sockets: {err.strerror}")
        for ino in unresolved:
            for i in socket_rows[ino]:
                fds[i] = fds[i]._replace(
                    note="socket in no kernel table; family unknown (no pidfd)"
                )
        return
    try:
        # The pidfd is bound to one process: re-check it is the one we read.
        proc.check_alive()
        for ino in unresolved:
            for i in socket_rows[ino]:
                f = fds[i]
                try:
                    p = prober.probe(f.fd)
                except OSError as err:
                    fds[i] = f._replace(
                        note="socket in no kernel table; pidfd_getfd refused "
                        f"({err.strerror}): needs CAP_SYS_PTRACE to tell its family"
                    )
                    continue
                fds[i] = f._replace(
                    kind=p.kind,
                    state=p.state,
                    local=p.local,
                    note="in no kernel socket table (never connected, or connect failed)",
                )
    finally:
        prober.close()


__all__ = ["ProcfsFormatError", "count", "snapshot"]
