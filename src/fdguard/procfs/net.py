"""Parse the text socket tables under /proc/PID/net: the fallback to sock_diag.

These are used when the target lives in another network namespace than
fdguard (a container), where a netlink dump from here would show the wrong
namespace's sockets, and for the families sock_diag is not asked about
(netlink, raw, packet).
"""

from __future__ import annotations

import socket
from collections.abc import Collection

from fdguard.errors import ProcfsFormatError
from fdguard.model import FdKind, SocketEntry, TcpState

# /proc/net/unix "St" column: socket states (include/uapi/linux/net.h).
_SS_CONNECTED = 3
# /proc/net/unix "Flags" column: __SO_ACCEPTCON marks a listening socket.
_SO_ACCEPTCON = 0x10000


def _hex_addr(text: bytes, family: int) -> str:
    """Decode a /proc/net address "0100007F:1F90" into "127.0.0.1:8080" or "[::1]:8080"."""
    addr, _, port = text.partition(b":")
    raw = bytes.fromhex(addr.decode("ascii"))
    # The kernel prints each 32-bit word in host byte order (little-endian here).
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    host = socket.inet_ntop(family, swapped)
    p = int(port, 16)
    return f"[{host}]:{p}" if family == socket.AF_INET6 else f"{host}:{p}"


def parse_proc_net_inet(
    data: bytes,
    kind: FdKind,
    wanted: Collection[int] | None = None,
    source: str = "net/tcp",
    family: int | None = None,
) -> dict[int, SocketEntry]:
    """Parse /proc/net/{tcp,tcp6,udp,udp6,raw,raw6} into entries keyed by inode.

    Only rows whose inode is in `wanted` are decoded, when it is given.

    Raises:
        ProcfsFormatError: a row with too few columns or non-hex fields.
    """
    if family is None:
        family = socket.AF_INET6 if kind in (FdKind.TCP6, FdKind.UDP6) else socket.AF_INET
    is_tcp = kind.is_tcp
    out: dict[int, SocketEntry] = {}
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split()
        try:
            inode = int(cols[9])
            if wanted is not None and inode not in wanted:
                continue
            code = int(cols[3], 16)
            tx, _, rx = cols[4].partition(b":")
            if is_tcp:
                state = TcpState.from_kernel(code)
            elif kind in (FdKind.UDP, FdKind.UDP6):
                state = TcpState.ESTAB if code == 1 else TcpState.UNCONN
            else:
                state = None
            remote = _hex_addr(cols[2], family)
            # A wildcard peer (port 0: listening or unconnected) prints as null.
            remote_or_none = None if remote.endswith(":0") else remote
            out[inode] = SocketEntry(
                inode=inode,
                kind=kind,
                state=state,
                local=_hex_addr(cols[1], family),
                remote=remote_or_none,
                recv_q=int(rx, 16),
                send_q=int(tx, 16),
                uid=int(cols[7]),
            )
        except (ValueError, IndexError) as err:
            raise ProcfsFormatError(source, lineno, f"bad row {line[:80]!r}") from err
    return out


def parse_proc_net_unix(
    data: bytes, wanted: Collection[int] | None = None, source: str = "net/unix"
) -> dict[int, SocketEntry]:
    """Parse /proc/net/unix. Peers are not shown there; sock_diag gives them.

    Raises:
        ProcfsFormatError: a row with too few columns.
    """
    out: dict[int, SocketEntry] = {}
    for lineno, line in enumerate(data.split(b"\n")[1:], start=2):
        if not line.strip():
            continue
        cols = line.split(None, 7)
        try:
            inode = int(cols[6])
            if wanted is not None and inode not in wanted:
                continue
            flags = int(cols[3], 16)
            st = int(cols[5], 16)
        except (ValueError, IndexError) as err:
            raise ProcfsFormatError(source, lineno, f"bad row {line[:80]!r}") from err
        if flags & _SO_ACCEPTCON:
            state = TcpState.LISTEN
        elif st == _SS_CONNECTED:
            state = TcpState.ESTAB
        else:
            state = TcpState.UNCONN
        path = cols[7].decode("utf-8", "replace") if len(cols) > 7 else None
        out[inode] = SocketEntry(inode=inode, kind=FdKind.UNIX, state=state, local=path)
    return out


def parse_proc_net_simple(
    data: bytes,
    kind: FdKind,
    inode_column: int,
    wanted: Collection[int] | None = None,
    source: str = "net/netlink",
) -> dict[int, SocketEntry]:
    """Parse tables where only the inode matters (/proc/net/netlink, /proc/net/packet).

    Raises:
        ProcfsFormatError: a row without the inode column.
    """
    out: dict[int, SocketEntry] = {}
    for lineno, line in enumerate(data.split(b"\n")[1:], start=2):
        cols = line.split()
        if not cols:
            continue
        try:
            inode = int(cols[inode_column])
        except (ValueError, IndexError) as err:
            raise ProcfsFormatError(source, lineno, f"bad row {line[:80]!r}") from err
        if wanted is None or inode in wanted:
            out[inode] = SocketEntry(inode=inode, kind=kind)
    return out
