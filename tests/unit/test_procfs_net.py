"""Socket-table parsers (/proc/net text and sock_diag dumps) over samples from a real kernel.

The samples were captured in a fresh network namespace holding only the capture
script's own sockets (tests/data/README.md), so every row is known: the
manifest holds what the sockets themselves said (getsockname/getpeername).
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from fdguard.errors import ProcfsFormatError
from fdguard.model import FdKind, SocketEntry, TcpState
from fdguard.procfs.net import parse_proc_net_inet, parse_proc_net_simple, parse_proc_net_unix
from fdguard.procfs.sockdiag import parse_inet_dump, parse_unix_dump

DATA = Path(__file__).parent.parent / "data" / "proc"
M: dict[str, Any] = json.loads((DATA / "manifest.json").read_text())
FDS: dict[str, dict[str, Any]] = M["fds"]


def ino(name: str) -> int:
    return int(FDS[name]["inode"])


def net(name: str) -> bytes:
    return (DATA / "net" / name).read_bytes()


def dump(name: str) -> bytes:
    return (DATA / "sockdiag" / f"{name}.bin").read_bytes()


# -- /proc/net/tcp, tcp6 -------------------------------------------------------


def test_proc_net_tcp_exact_rows() -> None:
    rows = parse_proc_net_inet(net("tcp"), FdKind.TCP)
    assert rows[ino("tcp_listen")] == SocketEntry(
        inode=123260, kind=FdKind.TCP, state=TcpState.LISTEN, local="127.0.0.1:55383",
        remote=None, recv_q=0, send_q=0, uid=0,
    )
    assert rows[ino("tcp_client")] == SocketEntry(
        inode=123262, kind=FdKind.TCP, state=TcpState.ESTAB, local="127.0.0.1:32822",
        remote="127.0.0.1:55383", recv_q=0, send_q=0, uid=0,
    )
    # The peer hung up: the FIN sits in the receive queue, the socket in CLOSE-WAIT.
    assert rows[ino("tcp_close_wait")] == SocketEntry(
        inode=123266, kind=FdKind.TCP, state=TcpState.CLOSE_WAIT, local="127.0.0.1:32834",
        remote="127.0.0.1:55383", recv_q=1, send_q=0, uid=0,
    )
    # The closed peer is an orphan (no fd, inode 0) in FIN-WAIT-1.
    assert rows[0].state is TcpState.FIN_WAIT_1
    # A socket that never connected is in no table at all.
    assert ino("tcp_never") not in rows
    assert len(rows) == 5


@pytest.mark.parametrize(
    "name", ["tcp_listen", "tcp_client", "tcp_server", "tcp_close_wait"]
)
def test_proc_net_tcp_matches_what_the_socket_said(name: str) -> None:
    entry = parse_proc_net_inet(net("tcp"), FdKind.TCP)[ino(name)]
    assert entry.local == FDS[name]["local"]
    assert entry.remote == FDS[name].get("remote")


def test_proc_net_tcp6_brackets_v6_endpoints() -> None:
    rows = parse_proc_net_inet(net("tcp6"), FdKind.TCP6)
    listen = rows[ino("tcp6_listen")]
    assert (listen.kind, listen.state, listen.local, listen.remote) == (
        FdKind.TCP6, TcpState.LISTEN, "[::1]:39635", None,
    )
    client = rows[ino("tcp6_client")]
    assert (client.state, client.local, client.remote) == (
        TcpState.ESTAB, FDS["tcp6_client"]["local"], FDS["tcp6_client"]["remote"],
    )


def test_proc_net_wanted_decodes_only_those() -> None:
    rows = parse_proc_net_inet(net("tcp"), FdKind.TCP, wanted={ino("tcp_server"), 999})
    assert list(rows) == [ino("tcp_server")]
    assert rows[ino("tcp_server")].remote == FDS["tcp_server"]["remote"]


def test_proc_net_udp_states() -> None:
    rows = parse_proc_net_inet(net("udp"), FdKind.UDP)
    assert rows[ino("udp_bound")] == SocketEntry(
        inode=123276, kind=FdKind.UDP, state=TcpState.UNCONN, local="127.0.0.1:46426",
        remote=None, recv_q=0, send_q=0, uid=0,
    )
    connected = rows[ino("udp_connected")]
    assert (connected.state, connected.local, connected.remote) == (
        TcpState.ESTAB, FDS["udp_connected"]["local"], FDS["udp_connected"]["remote"],
    )
    rows6 = parse_proc_net_inet(net("udp6"), FdKind.UDP6)
    assert rows6[ino("udp6_bound")].local == "[::1]:48213" == FDS["udp6_bound"]["local"]


def test_proc_net_raw() -> None:
    rows = parse_proc_net_inet(net("raw"), FdKind.RAW, family=socket.AF_INET)
    # A raw socket's "port" is its protocol: 1 is ICMP.
    assert rows == {
        ino("raw"): SocketEntry(
            inode=123292, kind=FdKind.RAW, state=None, local="0.0.0.0:1", remote=None,
            recv_q=0, send_q=0, uid=0,
        )
    }


# -- /proc/net/unix, netlink, packet -----------------------------------------------


def test_proc_net_unix() -> None:
    rows = parse_proc_net_unix(net("unix"))
    assert rows[ino("unix_listen")] == SocketEntry(
        inode=123282, kind=FdKind.UNIX, state=TcpState.LISTEN, local=FDS["unix_listen"]["path"]
    )
    assert rows[ino("unix_abstract")] == SocketEntry(
        inode=123283, kind=FdKind.UNIX, state=TcpState.UNCONN, local="@fdguard-sample"
    )
    for name in ("unix_pair_a", "unix_pair_b"):
        assert rows[ino(name)] == SocketEntry(
            inode=ino(name), kind=FdKind.UNIX, state=TcpState.ESTAB, local=None
        )
    assert len(rows) == 4
    assert list(parse_proc_net_unix(net("unix"), wanted={ino("unix_pair_b")})) == [123285]


def test_proc_net_netlink_and_packet() -> None:
    netlink = parse_proc_net_simple(net("netlink"), FdKind.NETLINK, -1)
    assert netlink[ino("netlink")] == SocketEntry(inode=123290, kind=FdKind.NETLINK)
    # The kernel's own netlink sockets of the namespace are listed too.
    assert len(netlink) == 9
    packet = parse_proc_net_simple(net("packet"), FdKind.PACKET, 8)
    assert packet == {ino("packet"): SocketEntry(inode=123291, kind=FdKind.PACKET)}
    only = parse_proc_net_simple(net("netlink"), FdKind.NETLINK, -1, wanted={ino("netlink")})
    assert list(only) == [ino("netlink")]


@pytest.mark.parametrize(
    ("table", "row"),
    [
        ("tcp", b"   9: 0100007F:D857 00000000:0000 0A 00000000:00000000"),  # short row
        ("tcp", b"   9: 0100007G:D857 00000000:0000 0A 0:0 00:0 0 0 0 1"),  # not hex
        ("tcp", b"   9: 0100:D857 00000000:0000 0A 0:0 00:0 0 0 0 1"),  # bad address length
        ("tcp", b"   9: 0100007F:D857 00000000:0000 0A 0:0 00:0 0 0 0 inode"),
    ],
)
def test_malformed_proc_net_inet_names_file_and_line(table: str, row: bytes) -> None:
    lines = net(table).split(b"\n")
    lines.insert(3, row)
    with pytest.raises(ProcfsFormatError) as err:
        parse_proc_net_inet(b"\n".join(lines), FdKind.TCP, source="/fake/1/net/tcp")
    assert (err.value.source, err.value.line) == ("/fake/1/net/tcp", 4)
    assert "/fake/1/net/tcp:4" in str(err.value)


def test_malformed_proc_net_unix_and_simple() -> None:
    data = net("unix") + b"0000000000000000: 00000002 00000000 zz\n"
    with pytest.raises(ProcfsFormatError) as err:
        parse_proc_net_unix(data, source="/fake/1/net/unix")
    assert (err.value.source, err.value.line) == ("/fake/1/net/unix", 6)
    data = net("packet") + b"ffff 3 3 0003 0 1 4 0 notanumber\n"
    with pytest.raises(ProcfsFormatError) as err:
        parse_proc_net_simple(data, FdKind.PACKET, 8, source="/fake/1/net/packet")
    assert (err.value.source, err.value.line) == ("/fake/1/net/packet", 3)


# -- sock_diag dumps ---------------------------------------------------------------


def test_inet_dump_tcp_agrees_with_proc_net() -> None:
    diag = parse_inet_dump(dump("inet_tcp"), socket.IPPROTO_TCP)
    text = parse_proc_net_inet(net("tcp"), FdKind.TCP)
    assert set(diag) == set(text)
    for inode, row in text.items():
        if inode == 0:
            continue  # the orphan moved on from FIN-WAIT-1 between the two captures
        d = diag[inode]
        assert (d.kind, d.state, d.local, d.remote, d.uid) == (
            row.kind, row.state, row.local, row.remote, row.uid,
        )


def test_inet_dump_tcp_exact() -> None:
    diag = parse_inet_dump(dump("inet_tcp"), socket.IPPROTO_TCP)
    cw = diag[ino("tcp_close_wait")]
    assert cw == SocketEntry(
        inode=123266, kind=FdKind.TCP, state=TcpState.CLOSE_WAIT, local="127.0.0.1:32834",
        remote="127.0.0.1:55383", recv_q=1, send_q=0, uid=0,
    )
    # For a listener sock_diag reports the accept queue and its backlog (listen(8)).
    listen = diag[ino("tcp_listen")]
    assert (listen.state, listen.recv_q, listen.send_q) == (TcpState.LISTEN, 0, 8)


def test_inet_dump_tcp6_and_udp() -> None:
    six = parse_inet_dump(dump("inet_tcp6"), socket.IPPROTO_TCP)
    assert six[ino("tcp6_listen")].local == FDS["tcp6_listen"]["local"]
    assert six[ino("tcp6_listen")].kind is FdKind.TCP6
    client = six[ino("tcp6_client")]
    assert (client.state, client.remote) == (TcpState.ESTAB, FDS["tcp6_client"]["remote"])
    udp = parse_inet_dump(dump("inet_udp"), socket.IPPROTO_UDP)
    assert udp[ino("udp_bound")].state is TcpState.UNCONN
    assert udp[ino("udp_bound")].local == FDS["udp_bound"]["local"]
    assert udp[ino("udp_connected")].state is TcpState.ESTAB
    assert udp[ino("udp_connected")].remote == FDS["udp_connected"]["remote"]
    assert set(udp) == {ino("udp_bound"), ino("udp_connected")}


def test_inet_dump_wanted_filters() -> None:
    got = parse_inet_dump(dump("inet_tcp"), socket.IPPROTO_TCP, wanted={ino("tcp_client")})
    assert list(got) == [ino("tcp_client")]


def test_unix_dump_paths_states_and_peers() -> None:
    rows = parse_unix_dump(dump("unix"))
    assert set(rows) == {ino(n) for n in FDS if n.startswith("unix_")}
    assert rows[ino("unix_listen")].local == FDS["unix_listen"]["path"]
    assert rows[ino("unix_listen")].state is TcpState.LISTEN
    assert rows[ino("unix_abstract")].local == "@fdguard-sample"
    assert rows[ino("unix_abstract")].state is TcpState.UNCONN
    a, b = rows[ino("unix_pair_a")], rows[ino("unix_pair_b")]
    # The peer is what only sock_diag tells: each end of the pair names the other.
    assert (a.peer_inode, b.peer_inode) == (ino("unix_pair_b"), ino("unix_pair_a"))
    assert (a.state, a.local, a.recv_q, a.send_q) == (TcpState.ESTAB, None, 0, 0)


_HDR = struct.Struct("=IHHII")


def test_truncated_dump_raises_format_error() -> None:
    data = dump("inet_tcp")
    with pytest.raises(ProcfsFormatError) as err:
        parse_inet_dump(data[:100], socket.IPPROTO_TCP, source="diag tcp")
    assert err.value.source == "diag tcp"
    assert "truncated" in str(err.value)
    with pytest.raises(ProcfsFormatError):
        parse_unix_dump(dump("unix")[:50], source="diag unix")


def test_short_diag_message_raises_format_error() -> None:
    msg = _HDR.pack(_HDR.size + 8, 20, 0, 1, 0) + b"\0" * 8
    with pytest.raises(ProcfsFormatError, match="short inet_diag_msg"):
        parse_inet_dump(msg, socket.IPPROTO_TCP)
    with pytest.raises(ProcfsFormatError, match="short unix_diag_msg"):
        parse_unix_dump(_HDR.pack(_HDR.size + 4, 20, 0, 1, 0) + b"\0" * 4)


def test_netlink_error_message_is_an_oserror() -> None:
    # A missing diag module answers the dump with NLMSG_ERROR -ENOENT: the
    # reader falls back to /proc/net on OSError, so that is what it must raise.
    err_msg = _HDR.pack(_HDR.size + 4, 2, 0, 1, 0) + struct.pack("=i", -2)
    with pytest.raises(OSError, match="sock_diag") as err:
        parse_inet_dump(err_msg, socket.IPPROTO_TCP)
    assert err.value.errno == 2
    with pytest.raises(ProcfsFormatError):
        parse_inet_dump(_HDR.pack(_HDR.size, 2, 0, 1, 0), socket.IPPROTO_TCP)


def test_empty_dump_is_empty() -> None:
    done = _HDR.pack(_HDR.size + 4, 3, 0, 1, 0) + b"\0" * 4
    assert parse_inet_dump(done, socket.IPPROTO_TCP) == {}
    assert parse_unix_dump(done) == {}
    assert parse_inet_dump(b"", socket.IPPROTO_TCP) == {}
