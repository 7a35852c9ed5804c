"""The ENFILE variants' strace plumbing: finding the first injected call, the command line."""

from __future__ import annotations

from fdguard.lab.runner import first_injected_call, strace_inject_prefix
from fdguard.lab.scenarios import CATALOGUE, ENFILE_TWINS

LOG = """\
100 socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 3
101 socket(AF_UNIX, SOCK_STREAM, 0) = 4
100 socket(AF_INET, SOCK_DGRAM, IPPROTO_IP) = 5
100 sched_yield()                     = 0
100 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 6
100 sched_yield()                     = 0
"""


def test_first_injected_call_counts_only_the_marking_thread() -> None:
    # pid 101's call is its own count (strace counts per traced task).
    assert first_injected_call(LOG, "socket") == 3


def test_no_call_inside_a_window_is_none() -> None:
    assert first_injected_call(LOG, "pipe2") is None
    assert first_injected_call("100 socket() = 3\n", "socket") is None


def test_strace_prefix_fails_from_first_every_step() -> None:
    cmd = strace_inject_prefix("accept4", "ENFILE", 3, 7)
    assert cmd[1:] == ["-f", "-qq", "-o", "/dev/null", "-e", "trace=accept4",
                       "-e", "inject=accept4:error=ENFILE:when=7+3"]


def test_every_enfile_variant_twins_an_emfile_scenario() -> None:
    for emfile, (syscall, _step) in ENFILE_TWINS.items():
        sc = CATALOGUE[emfile.removesuffix("-emfile") + "-enfile"]
        assert (sc.twin, sc.inject, sc.path) == (emfile, (syscall, "ENFILE", _step), "error")
        assert sc.iterate is CATALOGUE[emfile].iterate
