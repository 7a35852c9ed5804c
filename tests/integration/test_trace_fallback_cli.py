"""`fdguard trace` when ptrace is refused (poll fallback), and the real CLI in-process:
attach with ^C ending the window, and launch mode on a real command."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from click.testing import CliRunner

from fdguard import count
from fdguard.cli.main import cli
from fdguard.procfs.proctree import read_children
from fdguard.procfs.tasks import read_task_tracers
from fdguard.trace import VerdictCode, trace_pid
from tests.conftest import PROCS, Child
from tests.integration.test_trace_real import ask


def _node_pid_under(tracer: int) -> int:
    kids = read_children(tracer)
    assert len(kids) == 1
    return kids[0]


def test_refused_attach_falls_back_to_polling_and_says_why(
    spawn: Callable[..., Child], node: str
) -> None:
    # Another strace already traces node: the kernel refuses a second tracer (EPERM).
    child = spawn(["strace", "-f", "-o", os.devnull, node, str(PROCS / "trace_node_leak.js")])
    info = json.loads(child.ready)
    pid = info["pid"]
    assert pid == _node_pid_under(child.pid)
    base = count(pid)

    def load() -> None:
        assert [ask(info["port"], "LEAK") for _ in range(2)] == ["kept", "kept"]

    rep = trace_pid(
        pid, 30.0, on_attached=load, stop_when=lambda: count(pid) == base + 2, poll_interval=0.05
    )
    assert rep.mode == "poll"
    assert not rep.stacks
    text = " ".join(rep.warnings)
    assert "already traced by pid" in text
    assert "falling back to polling" in text
    assert len(rep.open_at_end) == 2
    for o in rep.open_at_end:
        assert o.birth is None
        assert o.kind is not None
        assert o.kind.value == "tcp"
        assert o.verdict.code in (VerdictCode.UNKNOWN, VerdictCode.HANDLE_NOT_CLOSED)
        assert o.to_json()["syscall"] is None


def _interrupt_after_leaks(pid: int, port: int, main: int, done: list[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tracers = read_task_tracers(pid)
        if tracers and all(t != 0 for t in tracers.values()):
            break
        time.sleep(0.01)
    done.extend(ask(port, "LEAK") for _ in range(2))
    done.append(ask(port, "HI"))
    # The window is waiting in strace's wait(): ^C ends it and the report follows.
    signal.pthread_kill(main, signal.SIGINT)


def test_cli_attach_json_ended_by_interrupt(spawn: Callable[..., Child], node: str) -> None:
    child = spawn([node, str(PROCS / "trace_node_leak.js")])
    port = json.loads(child.ready)["port"]
    assert ask(port, "LEAK") == "kept"  # before the window: must not be reported
    done: list[str] = []
    helper = threading.Thread(
        target=_interrupt_after_leaks, args=(child.pid, port, threading.get_ident(), done)
    )
    helper.start()
    try:
        result = CliRunner().invoke(
            cli, ["trace", str(child.pid), "--for", "60s", "--json", "--exit-code"]
        )
    finally:
        helper.join()
    assert done[:2] == ["kept", "kept"]
    assert result.exit_code == 10, result.output
    doc = json.loads(result.output)
    assert set(doc) >= {"target", "window_s", "open_at_end", "groups"}
    assert doc["window_s"] < 60
    assert "window cut short by an interrupt" in doc["warnings"]
    accepted = [o for o in doc["open_at_end"] if o["syscall"] == "accept4"]
    assert len(accepted) == 2
    assert all(o["libuv_function"] == "uv__server_io" for o in accepted)
    assert doc["groups"][0]["count"] == 2
    assert doc["groups"][0]["verdict"] in ("libuv-created", "handle-not-closed")


def test_cli_launch_human_output_for_a_command_that_exits() -> None:
    code = (
        "import os\n"
        "fds = [os.open('/etc/hostname', os.O_RDONLY) for _ in range(3)]\n"
        "os.close(fds[0])\n"
    )
    result = CliRunner().invoke(cli, ["trace", "--", sys.executable, "-c", code])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "launched under strace --seccomp-bpf" in out
    assert "the command exited" in out
    assert "2 x file from openat" in out
    assert "created by the runtime outside libuv" in out
