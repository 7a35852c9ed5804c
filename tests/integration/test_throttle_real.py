"""`fdguard guard throttle` as a real process in front of a real uvloop server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROCS = Path(__file__).parent.parent / "procs"
UVLOOP_SERVER = str(PROCS / "guard_uvloop_server.py")
REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _upstream(spawn: Callable[..., Any]) -> str:
    up = spawn([sys.executable, UVLOOP_SERVER], env={**os.environ, "LEAK_EVERY": "0"})
    return f"127.0.0.1:{up.ready}"


def _throttle(spawn: Callable[..., Any], upstream: str, *args: str) -> tuple[Any, str, int]:
    t = spawn([sys.executable, "-m", "fdguard", "guard", "throttle", "--listen", "127.0.0.1:0",
               "--upstream", upstream, *args], timeout=60)
    host, port = json.loads(t.ready)["listen"].rsplit(":", 1)
    return t, host, int(port)


def _stop(t: Any) -> dict[str, Any]:
    t.proc.send_signal(signal.SIGTERM)
    out, _ = t.proc.communicate(timeout=30)
    doc: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return doc


def _request(sock: socket.socket) -> bool:
    """One request on an open connection; True if answered 200, False if refused."""
    try:
        sock.sendall(REQ)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            data += chunk
        return data.startswith(b"HTTP/1.1 200")
    except (ConnectionResetError, BrokenPipeError):
        return False


def _once(host: str, port: int) -> bool:
    try:
        s = socket.create_connection((host, port), timeout=10)
    except ConnectionResetError:
        return False  # refused so fast that connect() itself saw the reset
    with s:
        return _request(s)


def test_rate_cap_is_accurate_and_queues(spawn: Callable[..., Any]) -> None:
    up = _upstream(spawn)
    t, host, port = _throttle(spawn, up, "--rate", "100", "--queue", "64",
                              "--queue-timeout", "10")
    n = 150
    t0 = time.monotonic()
    oks = sum(_once(host, port) for _ in range(n))
    elapsed = time.monotonic() - t0
    stats = _stop(t)
    assert oks == n  # queued, not refused
    # 150 connections at 100/s, a burst of 1 (and the fraction of a token saved
    # while idle before the first): 1.48 s at least.
    assert elapsed >= 1.47, elapsed
    assert n / elapsed <= 102, n / elapsed
    assert n / elapsed > 80, n / elapsed  # and not much slower than the cap
    assert stats["admitted"] == n
    assert stats["refused"] == 0


def test_rate_cap_without_queue_refuses_the_excess(spawn: Callable[..., Any]) -> None:
    up = _upstream(spawn)
    t, host, port = _throttle(spawn, up, "--rate", "50", "--burst", "5")
    t0 = time.monotonic()
    results = []
    while time.monotonic() - t0 < 2.0:
        results.append(_once(host, port))
    elapsed = time.monotonic() - t0
    stats = _stop(t)
    ok = sum(results)
    assert len(results) - ok > 0  # refused by reset
    # Admitted: the burst plus 50/s: within 10% of that.
    expected = 5 + 50 * elapsed
    assert abs(ok - expected) <= 0.1 * expected, (ok, expected)
    assert stats["admitted"] == ok
    assert stats["refused_queue_full"] == len(results) - ok


def test_concurrency_cap_refuses_then_admits_after_a_release(spawn: Callable[..., Any]) -> None:
    up = _upstream(spawn)
    t, host, port = _throttle(spawn, up, "--max-conns", "3")
    held = [socket.create_connection((host, port), timeout=10) for _ in range(3)]
    try:
        assert all(_request(s) for s in held)
        assert not _once(host, port)  # a 4th is refused
        held.pop().close()
        deadline = time.monotonic() + 10
        while not _once(host, port):  # the proxy sees the close within moments
            assert time.monotonic() < deadline
    finally:
        for s in held:
            s.close()
    stats = _stop(t)
    assert stats["peak_active"] == 3
    assert stats["refused"] >= 1


def test_queued_connection_waits_for_a_slot_or_times_out(spawn: Callable[..., Any]) -> None:
    up = _upstream(spawn)
    t, host, port = _throttle(spawn, up, "--max-conns", "1", "--queue", "4",
                              "--queue-timeout", "0.5", "--refuse", "http503")
    first = socket.create_connection((host, port), timeout=10)
    try:
        assert _request(first)
        with socket.create_connection((host, port), timeout=10) as late:
            late.sendall(REQ)
            t0 = time.monotonic()
            answer = late.recv(4096)
            waited = time.monotonic() - t0
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert waited >= 0.4, waited
        with socket.create_connection((host, port), timeout=10) as queued:
            queued.sendall(REQ)
            first.close()  # frees the slot: the queued one gets in
            assert queued.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        first.close()
    stats = _stop(t)
    assert stats["refused_timeout"] == 1
    assert stats["queued"] == 2


def test_throttle_runs_as_a_guarded_program_on_the_guards_socket(
    spawn: Callable[..., Any], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        back = probe.getsockname()[1]
    cfg = tmp_path / "front.toml"
    cfg.write_text(f"""
[programs.app]
command = [{json.dumps(sys.executable)}, {json.dumps(UVLOOP_SERVER)}]
listen = ["127.0.0.1:{back}"]
ready = "notify"
env = {{ LEAK_EVERY = "0" }}

[programs.front]
command = [{json.dumps(sys.executable)}, "-m", "fdguard", "guard", "throttle",
           "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:{back}", "--max-conns", "2"]
listen = ["127.0.0.1:0"]
""")
    rdir = tmp_path / "run"
    rdir.mkdir(mode=0o700)
    g = spawn([sys.executable, "-m", "fdguard", "guard", "--runtime-dir", str(rdir),
               "--config", str(cfg)], timeout=60)
    # Workers share the guard's stdout (the proxy prints its own line): ask the guard.
    from fdguard.guard.control import send_command

    ctl = rdir / "front" / "control.sock"
    deadline = time.monotonic() + 60
    while True:
        st = send_command(ctl, {"cmd": "status"})["status"]["programs"]
        if all(w["state"] == "ready" for p in st.values() for w in p["workers"]) and all(
            p["workers"] for p in st.values()
        ):
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    host, port = st["front"]["listen"][0].rsplit(":", 1)
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]
    try:
        assert all(_request(s) for s in held)  # through the proxy to the app
        assert not _once(host, int(port))  # the third is over the cap
    finally:
        for s in held:
            s.close()
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0
