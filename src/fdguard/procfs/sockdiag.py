"""Dump the kernel's socket tables over sock_diag netlink, and parse the dumps.

sock_diag (NETLINK_SOCK_DIAG) is what `ss` uses: one binary dump per family and
protocol, far cheaper than formatting and parsing /proc/net text. It shows the
network namespace of the *caller*, so `inspect` only uses it for targets in
fdguard's own namespace and falls back to /proc/PID/net otherwise.

Parsing is split from I/O: `parse_inet_dump` and `parse_unix_dump` are pure
functions over the concatenated netlink replies. Rows are decoded only for
the inodes the caller asks for; skipping the rest is what keeps a dump of a
busy host cheap.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Collection

from fdguard.errors import ProcfsFormatError

try:
    # Optional C walker over the dump (see _speedups.c); same results.
    from fdguard import _speedups
except ImportError:  # not compiled here: the Python parser below does the same
    _speedups = None  # type: ignore[assignment]
from fdguard.model import FdKind, SocketEntry, TcpState

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

UDIAG_SHOW_NAME = 0x1
UDIAG_SHOW_PEER = 0x4
UDIAG_SHOW_RQLEN = 0x10
UNIX_DIAG_NAME = 0
UNIX_DIAG_PEER = 2
UNIX_DIAG_RQLEN = 4

_NLMSGHDR = struct.Struct("=IHHII")
# struct inet_diag_req_v2 (linux/inet_diag.h)
_INET_REQ = struct.Struct("=BBBBI48s")
# struct inet_diag_msg: family state timer retrans, id{sport dport src dst if cookie[2]},
# expires rqueue wqueue uid inode
_INET_MSG = struct.Struct("=BBBB2s2s16s16sIIIIIIII")
# struct unix_diag_req
_UNIX_REQ = struct.Struct("=BBHIIIII")
# struct unix_diag_msg
_UNIX_MSG = struct.Struct("=BBBBIII")
_NLATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_RQLEN = struct.Struct("=II")

# The fields of inet_diag_msg that a snapshot keeps (family, state, ports,
# addresses, queues, uid), skipping the rest with pad bytes.
_INET_MSG_FIELDS = struct.Struct("=BB2x2s2s16s16s12x4xIII4x")
_STATE_BY_CODE = tuple(TcpState.from_kernel(code) for code in range(256))
# UDP has no states of its own: connected (TCP_ESTABLISHED) or not, as `ss` shows it.
_UDP_STATE_BY_CODE = tuple(
    TcpState.ESTAB if code == 1 else TcpState.UNCONN for code in range(256)
)

_ALL_STATES = 0xFFFFFFFF
_INODE_OFFSET = _NLMSGHDR.size + _INET_MSG.size - 4


def _request(payload: bytes, seq: int) -> bytes:
    hdr = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(payload), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    return hdr + payload


def inet_request(family: int, protocol: int, seq: int = 1) -> bytes:
    """The netlink request that dumps every socket of `family`/`protocol`."""
    return _request(_INET_REQ.pack(family, protocol, 0, 0, _ALL_STATES, b"\0" * 48), seq)


def unix_request(seq: int = 1) -> bytes:
    """The netlink request that dumps every unix socket with its name, peer and queues."""
    show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN
    return _request(_UNIX_REQ.pack(socket.AF_UNIX, 0, 0, _ALL_STATES, 0, show, 0, 0), seq)


def dump(request: bytes) -> bytes:
    """Send one dump request and return every reply message, concatenated.

    Raises:
        OSError: netlink is not available (the caller falls back to /proc/net).
    """
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                       NETLINK_SOCK_DIAG) as sock:
        sock.sendall(request)
        parts: list[bytes] = []
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            parts.append(chunk)
            # The last message of a dump is NLMSG_DONE (or an error).
            last_type = _last_message_type(chunk)
            if last_type in (NLMSG_DONE, NLMSG_ERROR):
                break
        return b"".join(parts)


def _last_message_type(chunk: bytes) -> int:
    offset = 0
    msg_type = 0
    while offset + _NLMSGHDR.size <= len(chunk):
        length, msg_type, _, _, _ = _NLMSGHDR.unpack_from(chunk, offset)
        if length < _NLMSGHDR.size:
            break
        offset += (length + 3) & ~3
    return msg_type


def _messages(data: bytes, source: str) -> list[tuple[int, int]]:
    """(offset of payload, payload length) of each SOCK_DIAG_BY_FAMILY message."""
    out = []
    offset = 0
    end = len(data)
    unpack = _NLHDR_LEN_TYPE.unpack_from
    while offset < end:
        if offset + _NLMSGHDR.size > end:
            raise ProcfsFormatError(source, None, f"truncated netlink header at byte {offset}")
        length, msg_type = unpack(data, offset)
        if length < _NLMSGHDR.size or offset + length > end:
            raise ProcfsFormatError(source, None, f"truncated netlink message at byte {offset}")
        if msg_type == NLMSG_DONE:
            break
        if msg_type == NLMSG_ERROR:
            _raise_netlink_error(data, offset, source)
        elif msg_type == SOCK_DIAG_BY_FAMILY:
            out.append((offset + _NLMSGHDR.size, length - _NLMSGHDR.size))
        offset += (length + 3) & ~3
    return out


def _raise_netlink_error(data: bytes, offset: int, source: str) -> None:
    if offset + _NLMSGHDR.size + 4 > len(data):
        raise ProcfsFormatError(source, None, "truncated netlink error message")
    (code,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
    if code:
        raise OSError(-code, f"sock_diag: {os.strerror(abs(code))}")


_NLHDR_LEN_TYPE = struct.Struct("=IH")


class _AddressCache(dict[tuple[int, bytes], str]):
    """inet_ntop results by (family, raw address): a host's sockets share few addresses."""

    def __missing__(self, key: tuple[int, bytes]) -> str:
        family, raw = key
        if family == socket.AF_INET:
            text = socket.inet_ntop(socket.AF_INET, raw[:4])
        else:
            text = "[" + socket.inet_ntop(socket.AF_INET6, raw) + "]"
        self[key] = text
        return text


def parse_inet_dump(
    data: bytes, protocol: int, wanted: Collection[int] | None = None, source: str = "sock_diag"
) -> dict[int, SocketEntry]:
    """Parse an inet_diag dump into entries keyed by inode (only `wanted` ones if given).

    Only the inode of each row is read first; rows not wanted are skipped
    without decoding (a host-wide dump is mostly other processes' sockets).

    Raises:
        ProcfsFormatError: a truncated or short message.
        OSError: the dump carried a netlink error.
    """
    if _speedups is not None:
        return _parse_inet_dump_c(data, protocol, wanted, source)
    out: dict[int, SocketEntry] = {}
    unpack = _INET_MSG_FIELDS.unpack_from
    hdr = _NLHDR_LEN_TYPE.unpack_from
    mk = tuple.__new__
    states = _STATE_BY_CODE
    estab, unconn = TcpState.ESTAB, TcpState.UNCONN
    if protocol == socket.IPPROTO_TCP:
        kind4, kind6 = FdKind.TCP, FdKind.TCP6
    else:
        kind4, kind6 = FdKind.UDP, FdKind.UDP6
    inode_at = _U32.unpack_from
    addrs = _AddressCache()
    is_tcp = protocol == socket.IPPROTO_TCP
    hsize = _NLMSGHDR.size
    msize = _INET_MSG.size
    inode_off = hsize + msize - 4
    offset = 0
    end = len(data)
    while offset < end:
        if offset + hsize > end:
            raise ProcfsFormatError(source, None, f"truncated netlink header at byte {offset}")
        length, msg_type = hdr(data, offset)
        if length < hsize or offset + length > end:
            raise ProcfsFormatError(source, None, f"truncated netlink message at byte {offset}")
        if msg_type == SOCK_DIAG_BY_FAMILY:
            if length < hsize + msize:
                raise ProcfsFormatError(source, None, f"short inet_diag_msg ({length} bytes)")
            (inode,) = inode_at(data, offset + inode_off)
            if wanted is None or inode in wanted:
                family, state, sport, dport, src, dst, rq, wq, uid = unpack(data, offset + hsize)
                if family == socket.AF_INET6:
                    kind = kind6
                    st = states[state] if is_tcp else (estab if state == 1 else unconn)
                else:
                    kind = kind4
                    st = states[state] if is_tcp else (estab if state == 1 else unconn)
                local = f"{addrs[family, src]}:{(sport[0] << 8) | sport[1]}"
                remote = (
                    None
                    if dport == b"\0\0"
                    else f"{addrs[family, dst]}:{(dport[0] << 8) | dport[1]}"
                )
                out[inode] = mk(SocketEntry, (inode, kind, st, local, remote, None, rq, wq, uid))
        elif msg_type == NLMSG_DONE:
            break
        elif msg_type == NLMSG_ERROR:
            _raise_netlink_error(data, offset, source)
        offset += (length + 3) & ~3
    return out


def _parse_inet_dump_c(
    data: bytes, protocol: int, wanted: Collection[int] | None, source: str
) -> dict[int, SocketEntry]:
    """parse_inet_dump through the C walker (same results, a fraction of the cost)."""
    assert _speedups is not None
    if protocol == socket.IPPROTO_TCP:
        kind4, kind6, states = FdKind.TCP, FdKind.TCP6, _STATE_BY_CODE
    else:
        kind4, kind6, states = FdKind.UDP, FdKind.UDP6, _UDP_STATE_BY_CODE
    try:
        return _speedups.parse_inet_dump(data, wanted, SocketEntry, kind4, kind6, states)
    except ValueError as err:
        raise ProcfsFormatError(source, None, str(err)) from err
    except OSError as err:  # the dump carried the kernel's error reply
        code = err.errno or 0
        raise OSError(code, f"sock_diag: {os.strerror(code)}") from err


def parse_unix_dump(
    data: bytes, wanted: Collection[int] | None = None, source: str = "sock_diag unix"
) -> dict[int, SocketEntry]:
    """Parse a unix_diag dump: path (abstract names start with '@'), state, peer inode.

    Raises:
        ProcfsFormatError: a truncated message or attribute.
    """
    out: dict[int, SocketEntry] = {}
    for offset, length in _messages(data, source):
        if length < _UNIX_MSG.size:
            raise ProcfsFormatError(source, None, f"short unix_diag_msg ({length} bytes)")
        _fam, _type, state, _pad, inode, _c0, _c1 = _UNIX_MSG.unpack_from(data, offset)
        if wanted is not None and inode not in wanted:
            continue
        path: str | None = None
        peer: int | None = None
        rq = wq = None
        pos = offset + _UNIX_MSG.size
        end = offset + length
        while pos + _NLATTR.size <= end:
            alen, atype = _NLATTR.unpack_from(data, pos)
            if alen < _NLATTR.size or pos + alen > end:
                raise ProcfsFormatError(source, None, "truncated netlink attribute")
            value = data[pos + _NLATTR.size : pos + alen]
            atype &= 0x3FFF
            if atype == UNIX_DIAG_NAME:
                path = "@" + value[1:].decode("utf-8", "replace") if value[:1] == b"\0" else (
                    value.rstrip(b"\0").decode("utf-8", "replace")
                )
            elif atype == UNIX_DIAG_PEER and len(value) >= 4:
                peer = _U32.unpack_from(value)[0] or None
            elif atype == UNIX_DIAG_RQLEN and len(value) >= 8:
                rq, wq = _RQLEN.unpack_from(value)
            pos += (alen + 3) & ~3
        if state == 10:
            st = TcpState.LISTEN
        elif state == 1:
            st = TcpState.ESTAB
        else:
            st = TcpState.UNCONN
        out[inode] = SocketEntry(
            inode=inode, kind=FdKind.UNIX, state=st, local=path, peer_inode=peer,
            recv_q=rq, send_q=wq,
        )
    return out


def dump_inet(family: int, protocol: int, wanted: Collection[int] | None = None) -> dict[
    int, SocketEntry
]:
    """Dump and parse one inet table of fdguard's own network namespace."""
    return parse_inet_dump(dump(inet_request(family, protocol)), protocol, wanted)


def dump_unix(wanted: Collection[int] | None = None) -> dict[int, SocketEntry]:
    """Dump and parse the unix socket table of fdguard's own network namespace."""
    return parse_unix_dump(dump(unix_request()), wanted)
