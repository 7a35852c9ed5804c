"""`snapshot(pid)`: every fd of a process, classified, with its limits — and `count(pid)`.

This is the facade most of fdguard uses. Reading is race-safe (see
`procfs.process`): fds that close mid-read are skipped; a process that exits,
or whose PID is reused, raises `NoSuchProcess` rather than returning data
from the wrong process.

Cost: the floor is one readlink per fd. On top of it a snapshot adds a stat()
for path-backed fds (their type cannot be read from the link), one netlink dump
per socket table that still has unresolved inodes, and fdinfo reads only for
the rare kinds whose fdinfo classification needs (epoll, eventfd, inotify...).
Flags and positions for every fd are opt-in (`fdinfo=True`): they double the
syscalls per fd.
"""

from __future__ import annotations

import dataclasses
import time

from fdguard.classify import FDINFO_KINDS, classify_link, kind_from_mode
from fdguard.errors import ProcfsFormatError
from fdguard.model import Fd, FdInfo, FdKind, ProcessRef, Snapshot, SocketEntry
from fdguard.procfs.fdinfo import parse_fdinfo
from fdguard.procfs.process import DEFAULT_ROOT, ProcessDir, count_fds
from fdguard.procfs.sockets import resolve_sockets
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
    """
    with ProcessDir(pid, root=root, expect=expect) as proc:
        taken_at = time.time()
        command = proc.read_cmdline()
        limits = proc.read_limits()
        links = proc.read_fd_links()

        partial: list[Fd | None] = []
        sockets: dict[int, list[int]] = {}
        for fd, target in links:
            lc = classify_link(target)
            kind = lc.kind
            if lc.is_path:
                st = proc.stat_fd(fd)
                if st is None:
                    partial.append(None)
                    continue
                kind = kind_from_mode(st.st_mode)
                inode: int | None = st.st_ino
            else:
                inode = lc.inode
            if lc.is_socket:
                if lc.inode is not None:
                    sockets.setdefault(lc.inode, []).append(len(partial))
                kind = FdKind.OTHER
            assert kind is not None
            info = None
            if fdinfo or kind in FDINFO_KINDS:
                info = _read_info(proc, fd, kind)
            partial.append(
                Fd(fd=fd, kind=kind, target=lc.target, inode=inode, deleted=lc.deleted, info=info)
            )

        warnings: list[str] = []
        entries, source = resolve_sockets(proc, set(sockets))
        unresolved = [i for i in sockets if i not in entries]
        probed = _probe(proc, partial, sockets, unresolved, warnings) if probe_sockets else {}
        for ino, slots in sockets.items():
            entry = entries.get(ino)
            for slot in slots:
                cur = partial[slot]
                assert cur is not None
                if entry is not None:
                    partial[slot] = _with_socket(cur, entry)
                elif slot in probed:
                    partial[slot] = probed[slot]
                else:
                    partial[slot] = dataclasses.replace(
                        cur, note="socket in no kernel table; family unknown (no pidfd_getfd)"
                    )
        proc.check_alive()
        fds = tuple(f for f in partial if f is not None)
        return Snapshot(
            process=proc.ref,
            command=command,
            limits=limits,
            fds=fds,
            taken_at=taken_at,
            socket_source=source,
            warnings=tuple(warnings),
        )


def _with_socket(cur: Fd, entry: SocketEntry) -> Fd:
    return dataclasses.replace(
        cur,
        kind=entry.kind,
        state=entry.state,
        local=entry.local,
        remote=entry.remote,
        peer_inode=entry.peer_inode,
        recv_q=entry.recv_q,
        send_q=entry.send_q,
    )


def _probe(
    proc: ProcessDir,
    partial: list[Fd | None],
    sockets: dict[int, list[int]],
    unresolved: list[int],
    warnings: list[str],
) -> dict[int, Fd]:
    """Classify sockets in no table by asking them (pidfd_getfd + getsockopt)."""
    if not unresolved:
        return {}
    out: dict[int, Fd] = {}
    try:
        prober = SocketProber(proc.pid)
    except OSError as err:
        warnings.append(f"cannot open a pidfd to classify tableless sockets: {err.strerror}")
        return out
    try:
        # The pidfd is bound to one process: re-check it is the one we read.
        proc.check_alive()
        for ino in unresolved:
            for slot in sockets[ino]:
                cur = partial[slot]
                assert cur is not None
                try:
                    p = prober.probe(cur.fd)
                except OSError as err:
                    note = (
                        "socket in no kernel table; pidfd_getfd refused "
                        f"({err.strerror}): needs CAP_SYS_PTRACE to tell its family"
                    )
                    out[slot] = dataclasses.replace(cur, note=note)
                    continue
                out[slot] = dataclasses.replace(
                    cur,
                    kind=p.kind,
                    state=p.state,
                    local=p.local,
                    note="in no kernel socket table (never connected, or connect failed)",
                )
    finally:
        prober.close()
    return out


__all__ = ["ProcfsFormatError", "count", "snapshot"]
