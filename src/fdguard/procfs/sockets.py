"""Resolve socket inodes of one process to kernel socket-table entries.

Order of preference: sock_diag netlink when the target shares fdguard's network
namespace (fast, binary, has unix peers), the target's own /proc/PID/net text
tables otherwise or when a diag module is missing, and pidfd_getfd for sockets
in no table at all (see `sockprobe`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from fdguard.model import FdKind, SocketEntry
from fdguard.procfs import sockdiag
from fdguard.procfs.net import parse_proc_net_inet, parse_proc_net_simple, parse_proc_net_unix
from fdguard.procfs.process import ProcessDir

_Table = Callable[[set[int]], dict[int, SocketEntry]]


def _own_netns() -> int | None:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return None


def _procfs_tables(proc: ProcessDir) -> list[_Table]:
    def inet(name: str, kind: FdKind, family: int) -> _Table:
        def read(wanted: set[int]) -> dict[int, SocketEntry]:
            try:
                data = proc_read(f"net/{name}")
            except OSError:
                return {}
            return parse_proc_net_inet(data, kind, wanted, f"/proc/{proc.pid}/net/{name}", family)

        return read

    def proc_read(name: str) -> bytes:
        from fdguard.procfs.process import read_file_at

        return read_file_at(proc.dir_fd, name)

    def unix(wanted: set[int]) -> dict[int, SocketEntry]:
        try:
            data = proc_read("net/unix")
        except OSError:
            return {}
        return parse_proc_net_unix(data, wanted, f"/proc/{proc.pid}/net/unix")

    a4, a6 = socket.AF_INET, socket.AF_INET6
    return [
        inet("tcp", FdKind.TCP, a4),
        inet("tcp6", FdKind.TCP6, a6),
        unix,
        inet("udp", FdKind.UDP, a4),
        inet("udp6", FdKind.UDP6, a6),
    ]


def _diag_tables(proc: ProcessDir) -> list[_Table]:
    fallback = _procfs_tables(proc)

    def diag(family: int, proto: int, fb: _Table) -> _Table:
        def read(wanted: set[int]) -> dict[int, SocketEntry]:
            try:
                return sockdiag.dump_inet(family, proto, wanted)
            except OSError:
                return fb(wanted)

        return read

    def unix(wanted: set[int]) -> dict[int, SocketEntry]:
        try:
            return sockdiag.dump_unix(wanted)
        except OSError:
            return fallback[2](wanted)

    tcp, udp = socket.IPPROTO_TCP, socket.IPPROTO_UDP
    return [
        diag(socket.AF_INET, tcp, fallback[0]),
        diag(socket.AF_INET6, tcp, fallback[1]),
        unix,
        diag(socket.AF_INET, udp, fallback[3]),
        diag(socket.AF_INET6, udp, fallback[4]),
    ]


def _rare_tables(proc: ProcessDir) -> list[_Table]:
    from fdguard.procfs.process import read_file_at

    def simple(name: str, kind: FdKind, col: int) -> _Table:
        def read(wanted: set[int]) -> dict[int, SocketEntry]:
            try:
                data = read_file_at(proc.dir_fd, f"net/{name}")
            except OSError:
                return {}
            return parse_proc_net_simple(data, kind, col, wanted, f"/proc/{proc.pid}/net/{name}")

        return read

    def raw(name: str, family: int) -> _Table:
        def read(wanted: set[int]) -> dict[int, SocketEntry]:
            try:
                data = read_file_at(proc.dir_fd, f"net/{name}")
            except OSError:
                return {}
            return parse_proc_net_inet(
                data, FdKind.RAW, wanted, f"/proc/{proc.pid}/net/{name}", family
            )

        return read

    return [
        simple("netlink", FdKind.NETLINK, -1),
        simple("packet", FdKind.PACKET, 8),
        raw("raw", socket.AF_INET),
        raw("raw6", socket.AF_INET6),
    ]


def resolve_sockets(proc: ProcessDir, inodes: set[int]) -> tuple[dict[int, SocketEntry], str]:
    """Look up `inodes` in the socket tables visible for `proc`.

    Returns the entries found and the name of the main source used
    ("sock_diag" or "procfs"). Inodes in no table are simply absent.
    """
    found: dict[int, SocketEntry] = {}
    if not inodes:
        return found, "none"
    target_ns = proc.net_namespace()
    same_ns = target_ns is not None and target_ns == _own_netns()
    source = "sock_diag" if same_ns else "procfs"
    tables = _diag_tables(proc) if same_ns else _procfs_tables(proc)
    wanted = set(inodes)
    for table in [*tables, *_rare_tables(proc)]:
        if not wanted:
            break
        hits = table(wanted)
        found.update(hits)
        wanted.difference_update(hits)
    return found, source
