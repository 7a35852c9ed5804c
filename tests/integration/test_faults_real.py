"""Syscall faults (strace --inject, libfiu) and the fd-limit squeeze on real processes."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator

import pytest

from fdguard.faults import FiuFault, SyscallFault, fiu_argv, squeeze, strace_argv
from fdguard.inspect import count
from tests.conftest import PROCS, Child, python_proc

# Connects three times, one after the other, to PORT; prints one word per attempt.
NODE_CONNECTS = """
const net = require('net');
const port = Number(process.argv[1]);
const out = [];
function one(i) {
  if (i === 3) { process.stdout.write(out.join(' ') + '\\n'); return; }
  const s = net.connect(port, '127.0.0.1');
  s.on('connect', () => { out.push('ok'); s.destroy(); one(i + 1); });
  s.on('error', (e) => { out.push(e.code); one(i + 1); });
}
one(0);
"""

PY_CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print("ok", flush=True)
except OSError as e:
    print(type(e).__name__, flush=True)
"""

PY_ACCEPT = """
import socket
l = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(l.getsockname())
try:
    a, _ = l.accept()   # CPython calls accept4(), which libfiu does not wrap
    print("accepted", flush=True)
except OSError as e:
    print(type(e).__name__, flush=True)
"""


@pytest.fixture
def listener() -> Iterator[int]:
    """A real loopback listener; connects complete in its backlog."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as lsock:
        yield lsock.getsockname()[1]


@pytest.mark.parametrize(
    ("when", "expected"),
    [("2", "ok ECONNREFUSED ok"), ("2+", "ok ECONNREFUSED ECONNREFUSED"),
     ("1+2", "ECONNREFUSED ok ECONNREFUSED")],
)
def test_strace_injects_on_the_nth_call_of_an_unmodified_node(
    spawn: Callable[..., Child], node: str, listener: int, when: str, expected: str
) -> None:
    fault = SyscallFault("connect", error="ECONNREFUSED", when=when)
    child = spawn(strace_argv([node, "-e", NODE_CONNECTS, str(listener)], [fault]))
    assert child.ready == expected


def test_strace_delay_holds_the_call(spawn: Callable[..., Child], node: str,
                                     listener: int) -> None:
    script = "const t=Date.now();" + NODE_CONNECTS.replace(
        "process.stdout.write(out.join(' ') + '\\n')",
        "process.stdout.write(String(Date.now() - t) + '\\n')")
    child = spawn(strace_argv([node, "-e", script, str(listener)],
                              [SyscallFault("connect", delay_ms=150, when="1")]))
    assert int(child.ready) >= 150


def test_libfiu_fails_connect_in_an_unmodified_python(spawn: Callable[..., Child],
                                                      listener: int) -> None:
    plain = spawn([sys.executable, "-c", PY_CONNECT, str(listener)])
    assert plain.ready == "ok"
    faulted = spawn(fiu_argv([sys.executable, "-c", PY_CONNECT, str(listener)],
                             [FiuFault("connect", "ECONNREFUSED")]))
    assert faulted.ready == "ConnectionRefusedError"


def test_libfiu_accept_fault_misses_accept4_as_documented(spawn: Callable[..., Child]) -> None:
    child = spawn(fiu_argv([sys.executable, "-c", PY_ACCEPT], [FiuFault("accept", "EMFILE")]))
    assert child.ready == "accepted"
    # strace sees the raw syscall and does fail it.
    traced = spawn(strace_argv([sys.executable, "-c", PY_ACCEPT],
                               [SyscallFault("accept4", error="EMFILE")]))
    assert traced.ready == "OSError"


def _probe(address: tuple[str, int]) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection(address, timeout=1.0) as s:
                s.sendall(b"GET\n")
                reply = b""
                while b"\n" not in reply and (chunk := s.recv(64)):
                    reply += chunk
                return reply.startswith(b"200")
        except OSError:
            return False

    return probe


@pytest.mark.slow
def test_squeeze_node_server_recovers(spawn: Callable[..., Child], node: str) -> None:
    child = spawn([node, str(PROCS / "stress_node_server.js")])
    address = ("127.0.0.1", int(child.ready))
    before = count(child.pid)
    result = squeeze(child.pid, address, _probe(address), headroom=2, flood=24, hold_s=0.4)
    assert result.squeezed_soft == before + 2
    assert result.restored
    assert result.peak_fds <= result.squeezed_soft
    assert result.served_after
    assert result.back_to_baseline
    assert not result.spinning, result.to_json()
    assert result.recovered
    assert result.problems == []


@pytest.mark.slow
def test_squeeze_catches_a_server_that_spins_on_emfile(spawn: Callable[..., Child]) -> None:
    child = spawn(python_proc("stress_emfile_server.py", "--on-emfile", "spin"))
    address = ("127.0.0.1", int(child.ready))
    # The machine is shared: a busy loop gets well under a full core, an idle
    # server next to nothing; 0.2 of a core separates them.
    result = squeeze(child.pid, address, _probe(address), headroom=1, flood=8, hold_s=0.5,
                     spin_threshold=0.2)
    assert result.restored
    assert result.cpu_during >= 0.2
    assert result.spinning
    assert not result.recovered
    assert any("spinning" in p for p in result.problems)


@pytest.mark.slow
def test_squeeze_catches_a_server_that_wedges_on_emfile(spawn: Callable[..., Child]) -> None:
    child = spawn(python_proc("stress_emfile_server.py", "--on-emfile", "wedge"))
    address = ("127.0.0.1", int(child.ready))
    result = squeeze(child.pid, address, _probe(address), headroom=1, flood=8, hold_s=0.3,
                     recover_timeout_s=1.0)
    assert result.restored
    assert not result.served_after
    assert not result.recovered
    assert any("wedged" in p for p in result.problems)
