"""`fdguard inspect` and `fdguard count`: the real CLI, in-process, on this very test process
and on the committed fake /proc tree; exit statuses, one-line errors, the JSON contract."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fdguard.cli.main import cli
from fdguard.errors import ExitStatus, NoSuchProcess

FAKE = str(Path(__file__).parent.parent / "data" / "fakeproc")
NODE = 7777777  # tests/data/fakeproc/README.md
BAD_LIMITS = 7777778
ZOMBIE = 7777779
# Above PID_MAX_LIMIT (4194304): no process can have this PID.
NO_SUCH_PID = 99999999

# The DESIGN.md contract, written out here rather than taken from the enums, so
# that a renamed enum value fails this test.
KINDS = {
    "file", "dir", "chardev", "blockdev", "pipe", "fifo", "tcp", "tcp6", "udp", "udp6",
    "unix", "netlink", "raw", "packet", "epoll", "eventfd", "inotify", "fanotify",
    "signalfd", "timerfd", "io_uring", "pidfd", "memfd", "other",
}
TCP_STATES = {
    "ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSE",
    "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING",
}
TOP_KEYS = {"pid", "start_time", "command", "limits", "count", "by_kind", "runtime", "fds"}
FD_KEYS = {"fd", "kind", "target", "state", "local", "remote"}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=True)


def run_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


def check_contract(doc: dict[str, Any]) -> None:
    assert set(doc) >= TOP_KEYS
    assert isinstance(doc["pid"], int)
    assert isinstance(doc["count"], int)
    assert all(isinstance(c, str) for c in doc["command"])
    assert set(doc["limits"]) == {"soft", "hard"}
    assert {"name", "libuv_version"} <= set(doc["runtime"])
    assert set(doc["by_kind"]) <= KINDS
    assert sum(doc["by_kind"].values()) == doc["count"]
    for f in doc["fds"]:
        assert set(f) >= FD_KEYS, f
        assert isinstance(f["fd"], int)
        assert f["kind"] in KINDS
        if f["kind"] in ("tcp", "tcp6"):
            assert f["state"] in TCP_STATES, f
        elif f["state"] is not None:
            assert f["state"] in TCP_STATES | {"UNCONN"}, f
        for end in ("local", "remote"):
            value = f[end]
            if value is not None and f["kind"] in ("tcp6", "udp6"):
                assert value.startswith("[")
                assert "]:" in value


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("fdguard: error: ")
    return lines[0]


@dataclass
class Held:
    """Sockets this test process holds, by what they are."""

    listen: socket.socket
    client: socket.socket
    server: socket.socket
    close_wait: socket.socket
    never: socket.socket
    listen6: socket.socket

    def local(self, sock: socket.socket) -> str:
        host, port = sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@pytest.fixture
def held() -> Iterator[Held]:
    socks: list[socket.socket] = []

    def keep(s: socket.socket) -> socket.socket:
        socks.append(s)
        return s

    try:
        listen = keep(socket.socket())
        listen.bind(("127.0.0.1", 0))
        listen.listen(4)
        client = keep(socket.create_connection(listen.getsockname()))
        server = keep(listen.accept()[0])
        close_wait = keep(socket.create_connection(listen.getsockname()))
        peer = listen.accept()[0]
        peer.close()
        # Wait for the FIN: the socket becomes readable with EOF.
        close_wait.settimeout(5)
        assert close_wait.recv(1) == b""
        never = keep(socket.socket())
        listen6 = keep(socket.socket(socket.AF_INET6))
        listen6.bind(("::1", 0))
        listen6.listen(1)
        yield Held(listen, client, server, close_wait, never, listen6)
    finally:
        for s in socks:
            s.close()


# -- the test process itself -------------------------------------------------------


def test_json_on_self_follows_the_contract(held: Held) -> None:
    doc = run_json("inspect", str(os.getpid()))
    check_contract(doc)
    assert doc["pid"] == os.getpid()
    assert doc["command"][0].endswith(("python3", "python", "python3.11", "pytest")) or any(
        "pytest" in c for c in doc["command"]
    )
    by_fd = {f["fd"]: f for f in doc["fds"]}
    expect = {
        held.listen.fileno(): ("tcp", "LISTEN", held.local(held.listen), None),
        held.client.fileno(): (
            "tcp", "ESTAB", held.local(held.client), held.local(held.listen),
        ),
        held.close_wait.fileno(): (
            "tcp", "CLOSE-WAIT", held.local(held.close_wait), held.local(held.listen),
        ),
        # Never connected: in no kernel table, still a tcp in CLOSE.
        held.never.fileno(): ("tcp", "CLOSE", None, None),
        held.listen6.fileno(): ("tcp6", "LISTEN", held.local(held.listen6), None),
    }
    got = {
        fd: (by_fd[fd]["kind"], by_fd[fd]["state"], by_fd[fd]["local"], by_fd[fd]["remote"])
        for fd in expect
    }
    assert got == expect
    assert doc["count"] == len(doc["fds"])
    assert doc["by_kind"]["tcp"] >= 4
    soft = doc["limits"]["soft"]
    import resource

    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_kind_filter(held: Held) -> None:
    doc = run_json("inspect", str(os.getpid()), "--kind", "tcp")
    # "tcp" means both families, as `ss -t` does.
    assert {f["kind"] for f in doc["fds"]} == {"tcp", "tcp6"}
    assert held.listen6.fileno() in {f["fd"] for f in doc["fds"]}
    assert doc["filter"] == {"kind": ["tcp"], "state": []}
    # Summary fields still describe the whole process.
    assert doc["count"] > len(doc["fds"])
    only6 = run_json("inspect", str(os.getpid()), "--kind", "tcp6")
    assert [f["fd"] for f in only6["fds"]] == [held.listen6.fileno()]


def test_state_filter(held: Held) -> None:
    doc = run_json("inspect", str(os.getpid()), "--state", "CLOSE-WAIT")
    assert [f["fd"] for f in doc["fds"]] == [held.close_wait.fileno()]
    lower = run_json("inspect", str(os.getpid()), "--state", "close-wait")
    assert [f["fd"] for f in lower["fds"]] == [held.close_wait.fileno()]
    both = run_json(
        "inspect", str(os.getpid()), "--kind", "tcp", "--state", "LISTEN", "--state", "CLOSE"
    )
    assert {f["fd"] for f in both["fds"]} == {
        held.listen.fileno(), held.listen6.fileno(), held.never.fileno(),
    }


def test_human_view(held: Held) -> None:
    result = run("inspect", str(os.getpid()))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"pid {os.getpid()} ")
    assert "fds open, soft limit" in lines[1]
    assert any(line.startswith("by kind: ") for line in lines)
    assert any("CLOSE-WAIT 1 (!)" in line for line in lines)
    header = next(line for line in lines if line.startswith("FD"))
    assert header.split()[:5] == ["FD", "KIND", "STATE", "LOCAL", "REMOTE"]
    row = next(line for line in lines if line.split()[:1] == [str(held.close_wait.fileno())])
    assert row.split()[1:4] == ["tcp", "CLOSE-WAIT", held.local(held.close_wait)]


def test_filter_matching_nothing() -> None:
    result = run("inspect", str(os.getpid()), "--kind", "packet")
    assert result.exit_code == 0
    assert "no fd matches the filter" in result.stdout


def test_count_matches_inspect() -> None:
    result = run("count", str(os.getpid()), "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    snap = run_json("inspect", str(os.getpid()))
    # Inspecting itself, the snapshot also sees the two /proc directory fds it
    # holds while reading (/proc/PID and /proc/PID/fd); count holds none.
    own = [f for f in snap["fds"] if (f["target"] or "").startswith(f"/proc/{os.getpid()}")]
    assert len(own) == 2
    assert counts == {str(os.getpid()): snap["count"] - len(own)}
    plain = run("count", str(os.getpid()), "1")
    assert plain.exit_code == 0
    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert [r[0] for r in rows] == [str(os.getpid()), "1"]
    assert all(int(r[1]) > 0 for r in rows)


# -- exit statuses -------------------------------------------------------------------


def test_missing_pid_exits_3_with_one_line() -> None:
    for args in (("inspect", str(NO_SUCH_PID)), ("count", str(NO_SUCH_PID))):
        result = run(*args)
        assert result.exit_code == ExitStatus.NO_SUCH_PROCESS == 3
        assert str(NO_SUCH_PID) in one_line_error(result)
        assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("inspect", "0"),
        ("inspect", "-5"),
        ("inspect", "abc"),
        ("inspect",),
        ("inspect", "1", "--kind", "bogus"),
        ("inspect", "1", "--state", "HALF-OPEN"),
        ("count",),
    ],
)
def test_bad_usage_exits_2(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code == ExitStatus.USAGE == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_pid_zero_says_why() -> None:
    assert "positive" in one_line_error(run("inspect", "0"))


def test_traceback_flag_lets_the_error_through() -> None:
    result = run("--traceback", "inspect", str(NO_SUCH_PID))
    # In-process the exception itself comes out, with its traceback, instead
    # of being turned into an exit status and a one-line message.
    assert isinstance(result.exception, NoSuchProcess)
    assert result.exc_info is not None
    text = "".join(traceback.format_exception(*result.exc_info))
    assert text.startswith("Traceback (most recent call last)")
    # The traceback reaches down to where /proc was read.
    assert "fdguard/procfs/process.py" in text
    assert "fdguard: error" not in result.output


def test_access_denied_exits_4(spawn: Callable[..., Any]) -> None:
    # We run as root; the kernel only refuses /proc/PID/fd to a caller that is
    # neither the same user nor holder of CAP_SYS_PTRACE. So: a target owned by
    # "nobody", and the real CLI run as root with CAP_SYS_PTRACE dropped.
    target = spawn(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "sh", "-c", "echo ready; exec cat"],
    )
    assert target.ready == "ready"
    assert os.stat(f"/proc/{target.pid}").st_uid == 65534
    cmd = ["setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace",
           sys.executable, "-m", "fdguard", "inspect", str(target.pid)]
    denied = spawn(cmd, ready=False)
    out, err = denied.proc.communicate(timeout=60)
    assert denied.proc.returncode == ExitStatus.ACCESS_DENIED == 4, err.decode()
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"fdguard: error: access denied reading fd/0 for pid {target.pid}")
    assert "CAP_SYS_PTRACE" in lines[0]
    assert out == b""


# -- the fake /proc tree, through the hidden --proc-root ----------------------------------


def test_fake_root_json() -> None:
    doc = run_json("inspect", str(NODE), "--proc-root", FAKE)
    check_contract(doc)
    assert doc["pid"] == NODE
    assert doc["start_time"] == 424242
    assert doc["command"] == ["node", "server.js", "--port", "8080"]
    assert doc["limits"] == {"soft": 1024, "hard": 4096}
    assert doc["count"] == 20
    assert doc["by_kind"]["tcp"] == 3
    # exe -> /usr/bin/node: the runtime is detected through the fake root too.
    assert doc["runtime"]["name"] == "node"
    assert re.fullmatch(r"1\.\d+\.\d+", doc["runtime"]["libuv_version"])
    by_fd = {f["fd"]: f for f in doc["fds"]}
    assert [by_fd[7][k] for k in ("kind", "state", "local", "remote")] == [
        "tcp", "CLOSE-WAIT", "127.0.0.1:50001", "127.0.0.1:80",
    ]
    assert [by_fd[8][k] for k in ("kind", "state", "local")] == ["tcp6", "LISTEN", "[::1]:8080"]
    assert [by_fd[9][k] for k in ("kind", "state", "local", "remote")] == [
        "unix", "LISTEN", "/run/fake-node.sock", None,
    ]
    assert by_fd[3]["epoll_targets"] == [4, 5, 6, 9]
    assert by_fd[11]["inotify_watches"] == 1
    assert by_fd[12]["kind"] == "memfd"
    assert by_fd[12]["deleted"] is True
    # The socket in no table cannot be probed (no such PID): said, not hidden.
    assert by_fd[17]["kind"] == "other"
    assert "no kernel table" in by_fd[17]["note"]
    assert any("not probing" in w for w in doc["warnings"])


def test_fake_root_fdinfo_flags() -> None:
    doc = run_json("inspect", str(NODE), "--proc-root", FAKE, "--fdinfo")
    by_fd = {f["fd"]: f for f in doc["fds"]}
    assert by_fd[5]["flags"] == "02004002"
    assert (by_fd[5]["nonblocking"], by_fd[5]["cloexec"]) == (True, True)
    assert all("flags" in f for f in doc["fds"])


def test_fake_root_filters() -> None:
    doc = run_json("inspect", str(NODE), "--proc-root", FAKE, "--kind", "unix", "--kind", "udp")
    assert sorted((f["fd"], f["kind"]) for f in doc["fds"]) == [(9, "unix"), (16, "udp")]
    doc = run_json("inspect", str(NODE), "--proc-root", FAKE, "--state", "LISTEN")
    assert sorted(f["fd"] for f in doc["fds"]) == [5, 8, 9]


def test_fake_root_human_summary_flags_close_wait() -> None:
    result = run("inspect", str(NODE), "--proc-root", FAKE)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "node server.js --port 8080" in out
    assert "20 fds open, soft limit 1024 (2.0% of the soft limit), hard 4096" in out
    assert "CLOSE-WAIT 1 (!)" in out
    assert "1 in CLOSE-WAIT: the peer hung up" in out


def test_fake_root_zombie_exits_3() -> None:
    result = run("inspect", str(ZOMBIE), "--proc-root", FAKE)
    assert result.exit_code == 3
    assert "exited" in one_line_error(result)


def test_fake_root_malformed_limits_exits_1_naming_file_and_line() -> None:
    result = run("inspect", str(BAD_LIMITS), "--proc-root", FAKE)
    assert result.exit_code == ExitStatus.ERROR == 1
    line = one_line_error(result)
    assert f"{FAKE}/{BAD_LIMITS}/limits:9" in line
