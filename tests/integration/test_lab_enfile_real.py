"""ENFILE variants against Debian's libuv 1.44.2, the error injected by the real strace.

What they showed on 1.44.2 (also on built 1.33.1, 1.48.0, 1.51.0):
- loop-init: at EMFILE (one free fd) epoll_create1 succeeds, the next fd fails
  and 1.44.2 leaks the epoll fd on every call; at ENFILE on epoll_create1 itself
  nothing was opened yet, so nothing leaks. Same error path family, different
  verdicts: the EMFILE leak is in the cleanup after epoll_create1.
- tcp-connect and spawn: ENFILE from socket / pipe2 reaches the return value and
  nothing leaks, as at EMFILE.
- tcp-accept: a single ENFILE from accept4 goes to libuv's EMFILE trick, whose
  own accept takes and closes the connection: the callback never hears of it
  (as at EMFILE), and no fd is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

from fdguard.cli.main import cli
from fdguard.lab.runner import Verdict, _run_child, judge, run_scenario, strace_inject_prefix
from fdguard.lab.versions import resolve

N = 4


def test_loop_init_enfile_does_not_leak_where_emfile_leaks_the_epoll_fd() -> None:
    system = resolve("system")
    enfile = run_scenario("loop-init-enfile", system, iterations=N)
    emfile = run_scenario("loop-init-emfile", system, iterations=N)
    assert enfile.version == "1.44.2"
    assert enfile.outcomes == ("init=ENFILE",), enfile
    assert enfile.verdict is Verdict.NO_LEAK, enfile
    assert "inject=epoll_create1:error=ENFILE" in enfile.detail
    assert emfile.outcomes == ("init=EMFILE",), emfile
    assert (emfile.verdict, emfile.growth_by_kind) == (Verdict.LEAK, (("epoll", N - 1),)), emfile


def test_tcp_connect_enfile_reaches_the_return_value_without_a_leak() -> None:
    system = resolve("system")
    enfile = run_scenario("tcp-connect-enfile", system, iterations=N)
    emfile = run_scenario("tcp-connect-emfile", system, iterations=N)
    assert enfile.outcomes == ("connect=ENFILE cb=",), enfile
    assert emfile.outcomes == ("connect=EMFILE cb=",), emfile
    assert enfile.verdict is emfile.verdict is Verdict.NO_LEAK
    assert enfile.deltas == (0,) * N


def test_spawn_enfile_on_pipe2_fails_the_spawn_and_closes_its_stdio_pair() -> None:
    system = resolve("system")
    enfile = run_scenario("spawn-enfile", system, iterations=N)
    emfile = run_scenario("spawn-emfile", system, iterations=N)
    assert enfile.outcomes == ("spawn=ENFILE exit=[]",), enfile
    assert emfile.outcomes == ("spawn=EMFILE exit=[]",), emfile
    assert enfile.verdict is emfile.verdict is Verdict.NO_LEAK
    assert "inject=pipe2:error=ENFILE" in enfile.detail


def test_tcp_accept_enfile_is_swallowed_by_the_emfile_trick() -> None:
    system = resolve("system")
    enfile = run_scenario("tcp-accept-enfile", system, iterations=N)
    emfile = run_scenario("tcp-accept-emfile", system, iterations=N)
    # No callback at all, in both: the trick's accept ends on EAGAIN, not reported.
    assert enfile.outcomes == emfile.outcomes == ("cb=",), (enfile, emfile)
    assert enfile.verdict is emfile.verdict is Verdict.NO_LEAK
    assert "inject=accept4:error=ENFILE:when=" in enfile.detail
    assert enfile.detail.endswith("+3")


def test_repro_of_an_enfile_variant_prints_build_and_strace_wrapper(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["lab", "repro", "loop-init-enfile", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "build: cd " in res.output
    assert "cc " in res.output
    assert ("run:   strace -f -qq -o /dev/null -e trace=epoll_create1 "
            "-e inject=epoll_create1:error=ENFILE:when=K+1 ./repro ") in res.output
    ours = (tmp_path / "repro.c").read_text()
    assert "loop-init-enfile" in ours
    # The EMFILE twin's program: under strace the injected call fails before the limit matters.
    assert "uv_loop_init" in ours
    assert "RLIMIT_NOFILE" in ours


def test_lasting_enfile_on_accept_spins_in_libuv_and_the_child_is_killed_and_reaped() -> None:
    # Every accept4 failing (a system that stays at fs.file-max): the EMFILE
    # trick's own accept fails too and uv__server_io calls the connection
    # callback with ENFILE in a loop that never returns.
    system = resolve("system")
    r = run_scenario("tcp-accept-enfile", system, iterations=2, timeout=3.0,
                     inject=("accept4", "ENFILE", 1))
    assert r.verdict is Verdict.TIMEOUT, r
    assert "inject=accept4:error=ENFILE:when=1+1" in r.detail


def test_the_runner_option_injects_into_any_squeezing_scenario() -> None:
    system = resolve("system")
    r = run_scenario("udp-bind-emfile", system, iterations=N, inject=("socket", "EACCES", 1))
    assert r.outcomes == ("bind=EACCES",), r
    assert r.verdict is Verdict.NO_LEAK


def test_a_crash_under_strace_is_a_crash_verdict(tmp_path: Path) -> None:
    # strace re-raises the tracee's fatal signal on itself, so the child's
    # death by SIGABRT is still seen by the runner as such.
    cmd = [*strace_inject_prefix("pipe2", "ENFILE", 1, 1), sys.executable, "-c",
           "import os; os.pipe2(0)"]
    rc, _out, err, timed_out = _run_child(cmd, str(tmp_path), 10.0)
    assert "ENFILE" in err or "Too many open files in system" in err
    assert rc == 1
    rc, _out, _err, timed_out = _run_child(
        [*strace_inject_prefix("pipe2", "ENFILE", 1, 1), sys.executable, "-c",
         "import os; os.abort()"], str(tmp_path), 10.0)
    assert judge([], rc, timed_out)[:2] == (Verdict.CRASH, "SIGABRT")
