"""Resolve socket inodes of one process to kernel socket-table entries.

Order of preference: sock_diag netlink when the target shares fdguard's network
namespace (fast, binary, has unix peers), the target's own /proc/PID/net text
tables otherwise or when a diag module is missing, and pidfd_getfd for sockets
in no table at all (see `sockprobe`).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

from fdguard.model import FdKind, SocketEntry
from fdguard.procfs import sockdiag
from fdguard.procfs.net import parse_proc_net_inet, parse_proc_net_simple, parse_proc_net_unix
from fdguard.procfs.process import ProcessDir, read_file_at

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


class SocketResolver:
    """Resolves socket inodes of one process; can fetch the big tables ahead of time.

    `prefetch()` starts the sock_diag dumps of the common tables (TCP v4/v6,
    unix) in a thread, so the kernel builds them on the other core while the
    caller is still reading fd links; `resolve()` then only parses. Always
    `close()` (or use as a context manager): it joins the thread.
    """

    _PREFETCHED = ("tcp", "tcp6", "unix")

    def __init__(self, proc: ProcessDir) -> None:
        self.proc = proc
        target_ns = proc.net_namespace()
        self.same_ns = target_ns is not None and target_ns == _own_netns()
        self._raw: dict[str, bytes | OSError] = {}
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SocketResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def prefetch(self) -> None:
        if not self.same_ns or self._thread is not None:
            return
        requests = {
            "tcp": sockdiag.inet_request(socket.AF_INET, socket.IPPROTO_TCP),
            "tcp6": sockdiag.inet_request(socket.AF_INET6, socket.IPPROTO_TCP),
            "unix": sockdiag.unix_request(),
        }

        def run() -> None:
            for name, req in requests.items():
                try:
                    self._raw[name] = sockdiag.dump(req)
                except OSError as err:
                    self._raw[name] = err

        self._thread = threading.Thread(target=run, name="fdguard-sockdiag", daemon=True)
        self._thread.start()

    def _tables(self) -> list[_Table]:
        if not self.same_ns:
            return [*_procfs_tables(self.proc), *_rare_tables(self.proc)]
        self.close()
        diag = _diag_tables(self.proc)
        fallback = _procfs_tables(self.proc)
        prefetched: list[_Table] = []
        for i, name in enumerate(self._PREFETCHED):
            raw = self._raw.get(name)
            if raw is None:
                prefetched.append(diag[i])
            elif isinstance(raw, OSError):
                prefetched.append(fallback[i])
            else:
                prefetched.append(_parsed(name, raw))
        return [*prefetched, *diag[3:], *_rare_tables(self.proc)]

    def resolve(self, inodes: set[int]) -> tuple[dict[int, SocketEntry], str]:
        """Look up `inodes` in the socket tables visible for the process.

        Returns the entries found and the main source used ("sock_diag",
        "procfs", or "none" when there was nothing to look up). Inodes in no
        table are simply absent.
        """
        found: dict[int, SocketEntry] = {}
        if not inodes:
            self.close()
            return found, "none"
        source = "sock_diag" if self.same_ns else "procfs"
        wanted = set(inodes)
        for table in self._tables():
            if not wanted:
                break
            hits = table(wanted)
            found.update(hits)
            wanted.difference_update(hits)
        return found, source


def _parsed(name: str, raw: bytes) -> _Table:
    def read(wanted: set[int]) -> dict[int, SocketEntry]:
        if name == "unix":
            return sockdiag.parse_unix_dump(raw, wanted)
        return sockdiag.parse_inet_dump(raw, socket.IPPROTO_TCP, wanted)

    return read
