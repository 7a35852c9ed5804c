"""strace output parsing: recorded real output (tests/data/strace/) and edge shapes."""

from __future__ import annotations

from pathlib import Path

from fdguard.trace.frames import FrameOrigin, parse_frame
from fdguard.trace.parse import (
    ExitEvent,
    SyscallEvent,
    fd_arg,
    fd_list,
    parse_lines,
    scm_rights_fds,
    split_args,
)
from fdguard.trace.runner import parse_strace_version, strace_command

DATA = Path(__file__).parent.parent / "data" / "strace"


def _lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def test_unfinished_and_resumed_are_stitched_with_the_exit_timestamp() -> None:
    lines = [
        '11186 1.000001 openat(AT_FDCWD</t>, "/etc/hostname", O_RDONLY|O_CLOEXEC <unfinished ...>',
        "11185 1.000002 close(5</x>) = 0",
        "11186 1.000003 <... openat resumed>) = 21</etc/hostname>",
        " > /usr/lib/x86_64-linux-gnu/libc.so.6(__open64+0xd0) [0xf8090]",
        " > /usr/bin/node(uv__fs_work+0xc7c) [0x14b03cc]",
    ]
    evs = list(parse_lines(lines))
    assert [e.name for e in evs if isinstance(e, SyscallEvent)] == ["close", "openat"]
    ev = evs[1]
    assert isinstance(ev, SyscallEvent)
    assert ev.ts == 1.000003
    assert ev.retval == 21
    assert ev.annotation == "/etc/hostname"
    assert split_args(ev.args)[2] == "O_RDONLY|O_CLOEXEC"
    assert [f.symbol for f in ev.frames] == ["__open64", "uv__fs_work"]


def test_recorded_node_threadpool_opens_all_parse_with_stacks() -> None:
    evs = [e for e in parse_lines(_lines("node_fs_threadpool.txt")) if isinstance(e, SyscallEvent)]
    opens = [e for e in evs if e.name == "openat" and e.annotation == "/etc/hostname"]
    # fs.js opens /etc/hostname 40 times on the threadpool; several were interleaved.
    assert len(opens) == 40
    assert all(any(f.symbol == "uv__fs_work" for f in e.frames) for e in opens)
    resumed = sum(1 for line in _lines("node_fs_threadpool.txt") if "resumed>" in line)
    assert resumed > 0


def test_errno_and_exit_lines() -> None:
    lines = [
        "7 2.5 connect(14<socket:[9]>, {sa_family=AF_INET, sin_port=htons(1), "
        'sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused)',
        "7 2.6 +++ exited with 3 +++",
        "8 2.7 +++ killed by SIGKILL +++",
        "garbage that strace never prints",
    ]
    evs = list(parse_lines(lines))
    assert isinstance(evs[0], SyscallEvent)
    assert evs[0].errno == "ECONNREFUSED"
    assert evs[0].retval == -1
    assert evs[1] == ExitEvent(7, 2.6, 3, None, 2)
    assert isinstance(evs[2], ExitEvent)
    assert evs[2].signal == "SIGKILL"
    assert len(evs) == 3


def test_args_split_respects_nesting_strings_and_annotations() -> None:
    text = (
        "9<anon_inode:[eventpoll]>, EPOLL_CTL_ADD, 3<socket:[1]>, "
        "{events=EPOLLIN|EPOLLOUT, data={u32=3, u64=3}}"
    )
    assert split_args(text) == [
        "9<anon_inode:[eventpoll]>",
        "EPOLL_CTL_ADD",
        "3<socket:[1]>",
        "{events=EPOLLIN|EPOLLOUT, data={u32=3, u64=3}}",
    ]
    assert split_args('AT_FDCWD</a, b>, "x, \\"y", O_RDONLY') == [
        "AT_FDCWD</a, b>",
        '"x, \\"y"',
        "O_RDONLY",
    ]
    assert fd_arg("5<pipe:[12]>") == (5, "pipe:[12]")
    assert fd_arg("AT_FDCWD</tmp>") is None
    assert fd_list("[5<pipe:[1]>, 6<pipe:[1]>]") == [(5, "pipe:[1]"), (6, "pipe:[1]")]


def test_scm_rights_fds_from_recorded_recvmsg() -> None:
    evs = [e for e in parse_lines(_lines("python_zoo.txt")) if isinstance(e, SyscallEvent)]
    recv = [e for e in evs if e.name == "recvmsg"]
    assert len(recv) == 1
    fds = scm_rights_fds(recv[0].args)
    assert len(fds) == 1
    assert fds[0][1] is not None
    assert fds[0][1].startswith("pipe:[")


def test_frame_shapes() -> None:
    f = parse_frame(
        " > /usr/bin/node(void node::TCPWrap::Connect<sockaddr_in>(v8::FunctionCallbackInfo"
        "<v8::Value> const&, std::function<int (char const*, sockaddr_in*)>)+0x2a4) [0x9e61f4]"
    )
    assert f.module == "/usr/bin/node"
    assert f.symbol is not None
    assert f.symbol.startswith("void node::TCPWrap::Connect")
    assert f.offset == 0x2A4
    assert f.address == 0x9E61F4
    nosym = parse_frame(" > /usr/bin/node() [0x14acc44]")
    assert nosym.symbol is None
    assert nosym.module == "/usr/bin/node"
    assert nosym.address == 0x14ACC44
    err = parse_frame(" > unexpected_backtracing_error [0x7f00]")
    assert err.module is None
    assert err.origin is FrameOrigin.UNKNOWN
    assert parse_frame(" > backtracing_error").origin is FrameOrigin.UNKNOWN


def test_strace_version_features() -> None:
    debian = (
        "strace -- version 6.1\nCopyright (c) 1991-2022 The strace developers\n"
        "Optional features enabled: stack-trace=libunwind stack-demangle m32-mpers\n"
    )
    info = parse_strace_version(debian, "/usr/bin/strace")
    assert info.stacks
    assert info.seccomp
    bare = parse_strace_version("strace -- version 5.1\nOptional features enabled: (none)\n")
    assert not bare.stacks
    assert not bare.seccomp
    # Without unwinder support, -k is not passed (strace would refuse to start).
    cmd = strace_command(bare, "/tmp/o", pid=42)
    assert "-k" not in cmd
    assert cmd[-2:] == ["-p", "42"]
    launch = strace_command(info, "/tmp/o", argv=["node", "x.js"])
    assert "--seccomp-bpf" in launch
    assert "-k" in launch
    assert launch[-3:] == ["--", "node", "x.js"]
