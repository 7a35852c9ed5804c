"""Pure parts of runtime detection: instruction decoding, version formats, maps, node options."""

from __future__ import annotations

import struct

import pytest

from fdguard.errors import ProcfsFormatError
from fdguard.procfs.maps import parse_environ, parse_maps, parse_uids
from fdguard.runtimes.elf import (
    decode_string_address,
    decode_uv_version,
    format_hex_version,
)
from fdguard.runtimes.node_report import parse_report_settings

X86 = 62
ARM = 183


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (b"\xb8\x00\x2e\x01\x00\xc3", 0x12E00),  # Node 20: mov $0x12e00,%eax; ret
        (b"\xf3\x0f\x1e\xfa\xb8\x02\x2c\x01\x00\xc3", 0x12C02),  # endbr64 first
        (b"\x55\x48\x89\xe5\xb8\x01\x34\x01\x00\x5d\xc3", 0x13401),  # frame pointer
        (b"\x31\xc0\xc3", None),  # xor eax,eax: not a constant this reader knows
    ],
)
def test_decode_uv_version_x86(code: bytes, expected: int | None) -> None:
    assert decode_uv_version(X86, code) == expected


def test_decode_uv_version_aarch64_movz_movk() -> None:
    movz = 0x52800000 | (0x2E00 << 5)  # movz w0,#0x2e00
    movk = 0x72A00000 | (0x1 << 5)  # movk w0,#0x1,lsl #16
    ret = 0xD65F03C0
    assert decode_uv_version(ARM, struct.pack("<III", movz, movk, ret)) == 0x12E00
    assert decode_uv_version(ARM, struct.pack("<II", ret, ret)) is None


def test_decode_string_address_pic_and_absolute() -> None:
    # lea 0x16901(%rip),%rax at 0xef70: target = 0xef70 + 7 + 0x16901
    assert decode_string_address(X86, b"\x48\x8d\x05\x01\x69\x01\x00\xc3", 0xEF70) == 0x25878
    assert decode_string_address(X86, b"\xb8\x2f\x58\xce\x02\xc3", 0x18ABA80) == 0x2CE582F
    assert decode_string_address(ARM, b"\x00" * 8, 0) is None


def test_format_hex_version() -> None:
    assert format_hex_version(0x12E00) == "1.46.0"
    assert format_hex_version(78849) == "1.52.1"


MAPS = b"""\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 131 /usr/bin/node
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 131 /usr/bin/node
7f00000000-7f00001000 rw-p 00000000 00:00 0
7f10000000-7f10001000 r-xp 00000000 08:01 777 /usr/lib/x86_64-linux-gnu/libuv.so.1.0.0
7f20000000-7f20001000 r-xp 00000000 08:01 778 /tmp/x/loop.cpython-311.so (deleted)
7ffd0000-7ffd1000 rw-p 00000000 00:00 0                          [stack]
"""


def test_parse_maps_distinct_files_in_order() -> None:
    objs = parse_maps(MAPS)
    assert [o.path for o in objs] == [
        "/usr/bin/node",
        "/usr/lib/x86_64-linux-gnu/libuv.so.1.0.0",
        "/tmp/x/loop.cpython-311.so",
    ]
    assert objs[1].inode == 777
    assert objs[2].deleted
    assert not objs[0].deleted


def test_parse_maps_rejects_garbage() -> None:
    with pytest.raises(ProcfsFormatError):
        parse_maps(b"not maps\n")


def test_parse_environ_and_uids() -> None:
    assert parse_environ(b"A=1\0NODE_OPTIONS=--x=y z\0junk\0") == {
        "A": "1", "NODE_OPTIONS": "--x=y z"}
    assert parse_uids(b"Name:\tnode\nUid:\t1000\t1001\t1001\t1001\n") == (1000, 1001)
    with pytest.raises(ProcfsFormatError):
        parse_uids(b"Name: x\n")


@pytest.mark.parametrize(
    ("argv", "node_options", "on", "sig", "directory", "filename"),
    [
        (["node", "--report-on-signal", "app.js"], "", True, "SIGUSR2", None, None),
        (["node", "app.js", "--report-on-signal"], "", False, "SIGUSR2", None, None),
        (["node", "--report-signal", "SIGUSR1", "--report-on-signal", "a.js"], "", True,
         "SIGUSR1", None, None),
        (["node", "--report-dir=/var/r", "a.js"], "--report-on-signal", True, "SIGUSR2",
         "/var/r", None),
        (["node", "a.js"], "--report-on-signal --report-directory /x --report-filename=r.json",
         True, "SIGUSR2", "/x", "r.json"),
        (["node", "-r", "./x.js", "--report-on-signal", "a.js"], "", True, "SIGUSR2", None,
         None),
    ],
)
def test_parse_report_settings(argv: list[str], node_options: str, on: bool, sig: str,
                               directory: str | None, filename: str | None) -> None:
    s = parse_report_settings(argv, node_options)
    assert (s.on_signal, s.signal, s.directory, s.filename) == (on, sig, directory, filename)


def test_parse_published_counts() -> None:
    from fdguard.runtimes.published import parse_published

    p = parse_published(b'{"expected_fds": 3, "resources": {"db": 2, "x": "no"}}', "/p")
    assert p is not None
    assert (p.expected_fds, p.resources) == (3, {"db": 2})
    assert parse_published(b'{"expected_fds": -1}', "/p") is None
    assert parse_published(b"[1]", "/p") is None
    assert parse_published(b"not json", "/p") is None


def test_parse_report_main_and_worker_handles() -> None:
    from fdguard.runtimes.node_report import parse_report

    doc = {
        "header": {"nodejsVersion": "v20.20.2", "componentVersions": {"uv": "1.46.0"}},
        "libuv": [
            {"type": "async", "is_active": True, "is_referenced": False, "address": "0x1"},
            {"type": "tcp", "is_active": True, "is_referenced": True, "fd": 19,
             "localEndpoint": {"host": "localhost", "ip4": "127.0.0.1", "port": 80},
             "remoteEndpoint": None},
            {"type": "tcp", "is_active": False, "fd": 21,
             "localEndpoint": {"ip6": "::1", "port": 80},
             "remoteEndpoint": {"ip6": "::1", "port": 5000}},
            {"type": "loop", "is_active": True, "address": "0x2"},
        ],
        "workers": [{"libuv": [{"type": "pipe", "is_active": True, "fd": 30}]}],
    }
    view = parse_report(doc, "node-report:SIGUSR2")
    by_fd = view.by_fd()
    assert sorted(by_fd) == [19, 21, 30]
    assert by_fd[19].describe() == "tcp active (127.0.0.1:80)"
    assert by_fd[21].detail == "[::1]:80 -> [::1]:5000"
    assert by_fd[30].detail == "[worker 0]"
    assert len(view.handles) == 4  # the loop entry is no handle
    assert view.versions == {"uv": "1.46.0", "node": "v20.20.2"}


def test_parse_nspid_innermost() -> None:
    from fdguard.procfs.maps import parse_nspid

    assert parse_nspid(b"Name:\tnode\nNSpid:\t4242\t17\n") == 17
    assert parse_nspid(b"Name:\tnode\nNSpid:\t4242\n") == 4242
    assert parse_nspid(b"Name:\tnode\n") is None
