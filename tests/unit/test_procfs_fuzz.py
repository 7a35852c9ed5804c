"""Fuzz every procfs parser: on any bytes it returns a value or raises ProcfsFormatError.

Three kinds of input per parser: arbitrary bytes, the real samples with bytes
spliced in (close to valid, so deep branches run), and lines rebuilt from the
samples' own tokens. The sock_diag parsers also get well-framed netlink
messages with arbitrary payloads. The one other exception allowed is the
documented OSError a sock_diag dump raises when it carries a netlink error.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fdguard.classify import classify_link, kind_from_mode
from fdguard.errors import ProcfsFormatError
from fdguard.model import FdKind
from fdguard.procfs.fdinfo import parse_fdinfo
from fdguard.procfs.maps import parse_maps
from fdguard.procfs.net import parse_proc_net_inet, parse_proc_net_simple, parse_proc_net_unix
from fdguard.procfs.process import parse_limits, parse_stat
from fdguard.procfs.sockdiag import parse_inet_dump, parse_unix_dump

DATA = Path(__file__).parent.parent / "data" / "proc"

FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Parser = Callable[[bytes], Any]

TEXT_PARSERS: dict[str, tuple[Parser, list[str]]] = {
    "stat": (parse_stat, ["stat", "stat_plain"]),
    "limits": (parse_limits, ["limits"]),
    "fdinfo": (
        parse_fdinfo,
        ["fdinfo/epoll", "fdinfo/inotify", "fdinfo/eventfd", "fdinfo/pidfd", "fdinfo/timerfd",
         "fdinfo/signalfd", "fdinfo/io_uring", "fdinfo/file", "fdinfo/fanotify"],
    ),
    "net_tcp": (lambda d: parse_proc_net_inet(d, FdKind.TCP), ["net/tcp"]),
    "net_tcp6": (lambda d: parse_proc_net_inet(d, FdKind.TCP6), ["net/tcp6"]),
    "net_udp": (lambda d: parse_proc_net_inet(d, FdKind.UDP), ["net/udp"]),
    "net_udp6": (lambda d: parse_proc_net_inet(d, FdKind.UDP6), ["net/udp6"]),
    "net_raw": (lambda d: parse_proc_net_inet(d, FdKind.RAW, family=socket.AF_INET), ["net/raw"]),
    "net_raw_v6_family": (
        lambda d: parse_proc_net_inet(d, FdKind.RAW, family=socket.AF_INET6), ["net/tcp6"],
    ),
    "net_tcp_wanted": (
        lambda d: parse_proc_net_inet(d, FdKind.TCP, wanted={123260, 0}), ["net/tcp"],
    ),
    "net_unix": (parse_proc_net_unix, ["net/unix"]),
    "net_netlink": (lambda d: parse_proc_net_simple(d, FdKind.NETLINK, -1), ["net/netlink"]),
    "net_packet": (lambda d: parse_proc_net_simple(d, FdKind.PACKET, 8), ["net/packet"]),
}

DIAG_PARSERS: dict[str, tuple[Parser, list[str]]] = {
    "diag_tcp": (lambda d: parse_inet_dump(d, socket.IPPROTO_TCP), ["inet_tcp", "inet_tcp6"]),
    "diag_udp": (lambda d: parse_inet_dump(d, socket.IPPROTO_UDP), ["inet_udp"]),
    "diag_tcp_wanted": (
        lambda d: parse_inet_dump(d, socket.IPPROTO_TCP, wanted={123260}), ["inet_tcp"],
    ),
    "diag_unix": (parse_unix_dump, ["unix"]),
    "diag_unix_wanted": (lambda d: parse_unix_dump(d, wanted={123284}), ["unix"]),
}


def _sample(rel: str) -> bytes:
    return (DATA / rel).read_bytes()


def check(parser: Parser, data: bytes, *, netlink: bool = False) -> None:
    """The property: a value, or ProcfsFormatError naming a source; nothing else."""
    failure: ProcfsFormatError | None = None
    try:
        parser(data)
    except ProcfsFormatError as err:
        failure = err
    except OSError as err:
        # Only a sock_diag dump may carry an error of the kernel's own.
        if not netlink or not str(err.strerror).startswith("sock_diag"):
            raise
    if failure is not None:
        assert failure.source
        assert failure.line is None or failure.line >= 1


@st.composite
def spliced(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """A real sample with a few byte ranges replaced: nearly valid input."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 12)))
        data[start:end] = draw(st.binary(max_size=12))
    return bytes(data)


@st.composite
def reshuffled_lines(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """Lines rebuilt from the samples' own tokens, in arbitrary order and number."""
    tokens = sorted({t for s in samples for t in s.replace(b":", b": ").split()})
    seps = st.sampled_from([b" ", b"\t", b":", b": ", b"  "])
    lines = draw(
        st.lists(
            st.lists(st.tuples(st.sampled_from(tokens), seps), max_size=12),
            max_size=6,
        )
    )
    return b"\n".join(b"".join(tok + sep for tok, sep in line) for line in lines)


_HDR = struct.Struct("=IHHII")


@st.composite
def netlink_messages(draw: st.DrawFn) -> bytes:
    """Correctly framed netlink messages (DONE, ERROR, SOCK_DIAG, others) with any payload."""
    out = b""
    for _ in range(draw(st.integers(0, 5))):
        msg_type = draw(st.sampled_from([2, 3, 20, 20, 20, 7]))
        payload = draw(st.binary(max_size=200))
        length = _HDR.size + len(payload)
        if draw(st.booleans()):
            length = draw(st.integers(0, 0xFFFFFFFF))  # lie about the length
        out += _HDR.pack(length, msg_type, 0, 1, 0) + payload
        out += b"\0" * (-len(out) % 4)
    return out


# Parsers with no committed sample: arbitrary bytes only. maps feeds the
# runtime detection `inspect --json` reports.
OTHER_PARSERS: dict[str, tuple[Parser, list[str]]] = {"maps": (parse_maps, [])}

ALL = {**TEXT_PARSERS, **DIAG_PARSERS, **OTHER_PARSERS}


@pytest.mark.parametrize("name", sorted(ALL))
@FUZZ
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes(name: str, data: bytes) -> None:
    check(ALL[name][0], data, netlink=name in DIAG_PARSERS)


@pytest.mark.parametrize("name", sorted(TEXT_PARSERS))
@FUZZ
@given(seed=st.data())
def test_spliced_text_samples(name: str, seed: st.DataObject) -> None:
    parser, files = TEXT_PARSERS[name]
    samples = [_sample(f) for f in files]
    check(parser, seed.draw(spliced(samples)))


@pytest.mark.parametrize("name", sorted(TEXT_PARSERS))
@FUZZ
@given(seed=st.data())
def test_lines_from_sample_tokens(name: str, seed: st.DataObject) -> None:
    parser, files = TEXT_PARSERS[name]
    samples = [_sample(f) for f in files]
    check(parser, seed.draw(reshuffled_lines(samples)))


@pytest.mark.parametrize("name", sorted(DIAG_PARSERS))
@FUZZ
@given(seed=st.data())
def test_spliced_dumps(name: str, seed: st.DataObject) -> None:
    parser, files = DIAG_PARSERS[name]
    samples = [_sample(f"sockdiag/{f}.bin") for f in files]
    check(parser, seed.draw(spliced(samples)), netlink=True)


@pytest.mark.parametrize("name", sorted(DIAG_PARSERS))
@FUZZ
@given(data=netlink_messages())
def test_framed_netlink_messages(name: str, data: bytes) -> None:
    check(DIAG_PARSERS[name][0], data, netlink=True)


@FUZZ
@given(target=st.text(max_size=80))
def test_classify_link_never_raises(target: str) -> None:
    lc = classify_link(target)
    assert lc.kind is None or isinstance(lc.kind, FdKind)
    assert lc.inode is None or isinstance(lc.inode, int)


@FUZZ
@given(prefix=st.sampled_from(["socket:[", "pipe:[", "anon_inode:", "/", "net:["]),
       rest=st.text(max_size=40))
def test_classify_link_prefixes_never_raise(prefix: str, rest: str) -> None:
    lc = classify_link(prefix + rest)
    assert lc.is_socket is (prefix == "socket:[")


@FUZZ
@given(mode=st.integers(0, 0o177777))
def test_kind_from_mode_total(mode: int) -> None:
    assert isinstance(kind_from_mode(mode), FdKind)


def test_every_sample_still_parses() -> None:
    """The fuzz seeds themselves are valid input (guards against a broken sample)."""
    for parser, files in TEXT_PARSERS.values():
        for f in files:
            assert parser(_sample(f))
    for parser, files in DIAG_PARSERS.values():
        for f in files:
            assert parser(_sample(f"sockdiag/{f}.bin"))
