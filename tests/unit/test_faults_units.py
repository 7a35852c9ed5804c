"""Fault building blocks without processes: strace/libfiu command lines, proxy fault
validation, and the /proc parsers the squeeze uses (CPU time, children)."""

from __future__ import annotations

import errno

import pytest

from fdguard.errors import ProcfsFormatError, UsageError
from fdguard.faults import (
    LIBFIU_UNWRAPPED,
    FiuFault,
    ProxyFaults,
    SyscallFault,
    fiu_argv,
    strace_argv,
    strace_attach_argv,
)
from fdguard.procfs.cputime import parse_cpu_times, parse_run_state
from fdguard.procfs.proctree import parse_children

# A real /proc/PID/stat line of node (captured), with a comm holding ") (".
STAT = (
    b"4242 (node) (x)) S 1 4242 4242 0 -1 4194560 1735 0 0 0 123 45 0 0 20 0 7 0 "
    b"98765 1200000000 10000 18446744073709551615 1 1 0 0 0 0 0 16781312 134234626 0 0 0 "
    b"17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
)


def test_parse_cpu_times_counts_fields_after_the_last_paren() -> None:
    t = parse_cpu_times(STAT)
    assert (t.utime, t.stime) == (123, 45)
    assert t.total_ticks == 168
    assert t.seconds(100) == pytest.approx(1.68)


@pytest.mark.parametrize("bad", [b"", b"12 (x S 1", b"12 (x) S 1 2 3"])
def test_parse_cpu_times_rejects_truncated_lines(bad: bytes) -> None:
    with pytest.raises(ProcfsFormatError):
        parse_cpu_times(bad)


def test_parse_run_state() -> None:
    assert parse_run_state(STAT) == "S"
    with pytest.raises(ProcfsFormatError):
        parse_run_state(b"12 (x)")


def test_parse_children() -> None:
    assert parse_children(b"101 102 \n") == [101, 102]
    assert parse_children(b"") == []
    with pytest.raises(ProcfsFormatError):
        parse_children(b"101 x")


def test_syscall_fault_builds_strace_inject_expressions() -> None:
    f = SyscallFault("connect", error="ECONNREFUSED", when="2+3")
    assert f.strace_expr() == "inject=connect:error=ECONNREFUSED:when=2+3"
    d = SyscallFault("accept4", delay_ms=50)
    assert d.strace_expr() == "inject=accept4:delay_enter=50000:when=1+"
    assert SyscallFault.parse("openat:error=EMFILE:when=5") == SyscallFault(
        "openat", error="EMFILE", when="5"
    )
    assert SyscallFault.parse("read:delay=10").delay_ms == 10


@pytest.mark.parametrize(
    "spec",
    ["connect", "connect:error=ENOTANERRNO", "connect:error=EMFILE:when=0",
     "connect:error=EMFILE:when=+1", "connect:error=EMFILE:when=1+0", "connect:bogus=1",
     "Connect!:error=EMFILE", "read:delay=ten"],
)
def test_syscall_fault_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(UsageError):
        SyscallFault.parse(spec)


def test_strace_argv_traces_only_faulted_calls_and_follows_forks() -> None:
    argv = strace_argv(["node", "s.js"], [SyscallFault("connect", error="ECONNREFUSED"),
                                          SyscallFault("accept4", error="EMFILE", when="3")],
                       log_path="/tmp/x")
    assert argv[0].endswith("strace")
    assert "-f" in argv
    assert "--seccomp-bpf" in argv
    assert argv[argv.index("-o") + 1] == "/tmp/x"
    assert "trace=accept4,connect" in argv
    assert "inject=accept4:error=EMFILE:when=3" in argv
    assert argv[-3:] == ["--", "node", "s.js"]
    with pytest.raises(UsageError):
        strace_argv(["x"], [])


def test_strace_attach_argv_attaches_to_every_thread_without_seccomp() -> None:
    argv = strace_attach_argv(4242, [SyscallFault("socket", error="EMFILE", when="1+2")])
    assert argv[-2:] == ["-p", "4242"]
    assert "-f" in argv
    assert "--seccomp-bpf" not in argv  # it needs the tracer to start the program
    assert "inject=socket:error=EMFILE:when=1+2" in argv
    with pytest.raises(UsageError):
        strace_attach_argv(1, [])


def test_fiu_fault_sets_errno_through_failinfo() -> None:
    f = FiuFault("connect", "ECONNREFUSED")
    assert f.fiu_command() == f"enable name=posix/io/net/connect,failinfo={errno.ECONNREFUSED}"
    r = FiuFault("open", "EMFILE", probability=0.25)
    assert r.fiu_command().startswith("enable_random name=posix/io/oc/open,probability=0.25")
    argv = fiu_argv(["python3", "x.py"], [f])
    assert argv[1:5] == ["-x", "-f", "", "-c"]
    assert argv[-2:] == ["python3", "x.py"]


@pytest.mark.parametrize("call", sorted(LIBFIU_UNWRAPPED))
def test_fiu_refuses_what_libfiu_does_not_wrap_and_points_to_strace(call: str) -> None:
    with pytest.raises(UsageError, match="strace"):
        FiuFault(call, "EMFILE")


def test_libuv_calls_libfiu_misses_are_listed() -> None:
    assert {"accept4", "pipe2", "epoll_create1", "eventfd"} <= LIBFIU_UNWRAPPED


def test_proxy_faults_validate_and_label() -> None:
    assert ProxyFaults().is_clean
    assert ProxyFaults().label == "proxy:none"
    assert ProxyFaults(reset_after=4, latency_ms=2.5).label == "proxy:latency_ms=2.5,reset_after=4"
    assert ProxyFaults(half_open=True).label == "proxy:half_open"
    for bad in ({"latency_ms": -1}, {"bandwidth_bps": 0}, {"partial_bytes": -2}):
        with pytest.raises(UsageError):
            ProxyFaults(**bad)  # type: ignore[arg-type]


def test_proxy_refuses_non_loopback_addresses() -> None:
    from fdguard.faults import FaultProxy

    with pytest.raises(UsageError, match="loopback"):
        FaultProxy(("10.0.0.1", 80))
    with pytest.raises(UsageError, match="loopback"):
        FaultProxy(("127.0.0.1", 80), listen=("0.0.0.0", 0))
