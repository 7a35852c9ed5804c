"""The loopback fault proxy between a real client socket and a real server process.

The server (tests/procs/stress_echo_server.py) echoes and reports, per
connection, the bytes it got and how the connection ended (eof / reset), so
each fault is checked from the service's side, where fd leaks happen.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from fdguard.faults import FaultProxy, ProxyFaults
from fdguard.inspect import snapshot
from fdguard.model import TcpState
from tests.conftest import Child, python_proc


class Reports:
    """Reads the echo server's per-connection JSON lines, with a timeout."""

    def __init__(self, child: Child) -> None:
        assert child.proc.stdout is not None
        self.fd = child.proc.stdout.fileno()
        self.buf = b""

    def next(self, timeout: float = 5.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return dict(json.loads(line))


@pytest.fixture
def echo(spawn: Callable[..., Child]) -> tuple[Child, tuple[str, int], Reports]:
    child = spawn(python_proc("stress_echo_server.py"))
    return child, ("127.0.0.1", int(child.ready)), Reports(child)


def _read_to_end(s: socket.socket) -> bytes:
    got = b""
    while chunk := s.recv(65536):
        got += chunk
    return got


def _roundtrip(address: tuple[str, int], payload: bytes) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got, time.perf_counter() - t0


def test_clean_proxy_forwards_faithfully_and_passes_half_close(echo: Any) -> None:
    _, address, reports = echo
    with FaultProxy(address) as proxy:
        for i in range(20):
            payload = f"line {i}\n".encode() * 100
            got, _ = _roundtrip(proxy.address, payload)
            assert got == payload
            r = reports.next()
            assert r is not None
            assert r["data"].encode() == payload
            assert r["end"] == "eof"
        stats = proxy.stats()
    assert stats.accepted == 20
    assert stats.resets == 0
    assert stats.bytes_up == stats.bytes_down == sum(len(f"line {i}\n") * 100 for i in range(20))


def test_latency_and_bandwidth_slow_the_round_trip(echo: Any) -> None:
    _, address, reports = echo
    with FaultProxy(address, ProxyFaults(latency_ms=60, jitter_ms=10), seed=1) as proxy:
        got, took = _roundtrip(proxy.address, b"ping\n")
        assert got == b"ping\n"
        assert took >= 0.1  # 50 ms at least each way
        assert reports.next() is not None
        proxy.set_faults(ProxyFaults(bandwidth_bps=20_000))
        got, took = _roundtrip(proxy.address, b"x" * 4000)
        assert got == b"x" * 4000
        assert took >= 0.35  # 4000 bytes at 20 kB/s, each way
        assert reports.next() is not None


def test_reset_reaches_the_service_as_econnreset(echo: Any) -> None:
    _, address, reports = echo
    with FaultProxy(address, ProxyFaults(reset_after=4)) as proxy:
        with socket.create_connection(proxy.address, timeout=5) as s:
            s.sendall(b"GET\nrest-never-sent\n")
            with pytest.raises(ConnectionResetError):
                _read_to_end(s)
        r = reports.next()
        assert r is not None
        assert r["end"] == "reset"
        assert r["data"] in ("", "GET\n")  # the kernel may drop unread data on RST
        assert "rest" not in r["data"]
        assert proxy.stats().resets == 1


def test_partial_data_then_eof(echo: Any) -> None:
    _, address, reports = echo
    with FaultProxy(address, ProxyFaults(partial_bytes=3)) as proxy:
        with socket.create_connection(proxy.address, timeout=5) as s:
            s.sendall(b"GET /long/request\n")
            assert s.recv(100) == b""  # the client is closed, no reply
        r = reports.next()
        assert r == {"conn": 1, "data": "GET", "end": "eof", "seconds": r["seconds"]}


def test_half_open_peer_leaves_the_service_socket_established(echo: Any) -> None:
    child, address, reports = echo
    with FaultProxy(address, ProxyFaults(half_open=True, hold_s=30)) as proxy:
        with socket.create_connection(proxy.address, timeout=5) as s:
            s.sendall(b"hello\n")
            assert s.recv(100) == b"hello\n"
        # The client is gone, but the service hears nothing.
        assert reports.next(timeout=0.5) is None
        snap = snapshot(child.pid)
        peers = [f for f in snap.fds if f.kind.is_tcp and f.state is TcpState.ESTAB]
        assert len(peers) == 1
        assert proxy.stats().held_half_open == 1
    # Stopping the proxy closes what it held: now the service sees EOF.
    r = reports.next()
    assert r is not None
    assert r["end"] == "eof"


def test_slow_close_delays_the_fin(echo: Any) -> None:
    _, address, reports = echo
    with FaultProxy(address, ProxyFaults(slow_close_ms=300)) as proxy:
        with socket.create_connection(proxy.address, timeout=5) as s:
            s.sendall(b"a\n")
            assert s.recv(10) == b"a\n"
        r = reports.next()
        assert r is not None
        assert r["seconds"] >= 0.29


def test_blackhole_with_timeout_drops_data_then_closes(echo: Any) -> None:
    _, address, reports = echo
    with FaultProxy(address, ProxyFaults(blackhole=True, timeout_ms=200)) as proxy:
        t0 = time.monotonic()
        with socket.create_connection(proxy.address, timeout=5) as s:
            s.sendall(b"into the void\n")
            assert s.recv(100) == b""
        took = time.monotonic() - t0
        assert 0.19 <= took < 3.0
        r = reports.next()
        assert r is not None
        assert r["data"] == ""


def test_upstream_down_is_a_reset_for_the_client() -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    with FaultProxy(("127.0.0.1", port)) as proxy:
        s = socket.create_connection(proxy.address, timeout=5)
        try:
            with pytest.raises(ConnectionResetError):
                _read_to_end(s)
        finally:
            s.close()
        assert proxy.stats().upstream_failed == 1
