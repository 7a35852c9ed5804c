"""The guard as a supervisor, with real processes: backoff and give-up, crash respawn,
SIGHUP rolling restarts one at a time, stop-signal forwarding, isolated programs from TOML."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fdguard.guard.control import send_command
from tests.conftest import wait_until

PROCS = Path(__file__).parent.parent / "procs"
UVLOOP_SERVER = str(PROCS / "guard_uvloop_server.py")
NODE_SERVER = str(PROCS / "guard_node_server.js")


def _guard(spawn: Callable[..., Any], tmp_path: Path, *args: str, ready: bool = True) -> Any:
    rdir = tmp_path / "run"
    rdir.mkdir(mode=0o700, exist_ok=True)
    return spawn([sys.executable, "-m", "fdguard", "guard", "--runtime-dir", str(rdir), *args],
                 timeout=60, ready=ready)


def _status(tmp_path: Path, name: str) -> dict[str, Any]:
    ans = send_command(tmp_path / "run" / name / "control.sock", {"cmd": "status"})
    st: dict[str, Any] = ans["status"]
    return st


def _events(log: str) -> list[str]:
    return [ln.split("fdguard guard: ", 1)[1] for ln in log.splitlines() if "fdguard guard: " in ln]


def test_a_worker_that_cannot_start_backs_off_then_the_guard_gives_up(
    spawn: Callable[..., Any], tmp_path: Path
) -> None:
    g = _guard(spawn, tmp_path, "--name", "bad", "--ready", "none", "--max-start-failures", "3",
               "--backoff", "0.1", "--", "sh", "-c", "exit 3", ready=False)
    assert g.proc.wait(timeout=30) == 1
    ev = _events(g.proc.stderr.read().decode())
    # Each exit is a failed start (before readiness was seen) or a crash right
    # after ready, which counts the same: backoff doubling, then FATAL, exit 1.
    crashes = [e for e in ev if "reason='unexpected'" in e or e.startswith("start-failed")]
    delays = [float(e.split("delay=")[1].split()[0]) for e in ev if e.startswith("backoff")]
    assert len(crashes) == 3, ev
    assert delays == [0.1, 0.2], ev
    assert any(e.startswith("fatal program=bad") for e in ev), ev


def test_a_command_that_does_not_exist_is_given_up_with_backoff(
    spawn: Callable[..., Any], tmp_path: Path
) -> None:
    g = _guard(spawn, tmp_path, "--name", "nx", "--ready", "none", "--max-start-failures", "3",
               "--backoff", "0.05", "--", "/nonexistent/server", ready=False)
    assert g.proc.wait(timeout=30) == 1
    ev = _events(g.proc.stderr.read().decode())
    failed = [e for e in ev if e.startswith("start-failed")]
    assert len(failed) == 3, ev
    assert "command not found" in failed[0]
    delays = [float(e.split("delay=")[1].split()[0]) for e in ev if e.startswith("backoff")]
    assert delays == [0.05, 0.1], ev
    assert any(e.startswith("fatal program=nx") for e in ev), ev
    assert not any(e.startswith("up ") for e in ev), ev


def test_a_crashed_worker_is_replaced(spawn: Callable[..., Any], tmp_path: Path) -> None:
    g = _guard(spawn, tmp_path, "--name", "c", "--listen", "127.0.0.1:0", "--ready", "notify",
               "--", sys.executable, UVLOOP_SERVER)
    (pid,) = json.loads(g.ready)["pids"]["c"]
    os.kill(pid, signal.SIGKILL)

    def replaced() -> bool:
        ws = _status(tmp_path, "c")["programs"]["c"]["workers"]
        return len(ws) == 1 and ws[0]["pid"] != pid and ws[0]["state"] == "ready"

    wait_until("a replacement worker", replaced, 30)
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0
    ev = _events(g.proc.stderr.read().decode())
    assert any(e.startswith(f"exit program=c worker=0 pid={pid}") and "SIGKILL" in e
               for e in ev), ev
    assert any("reason='worker exited (killed by SIGKILL)'" in e for e in ev), ev


def test_sighup_rolls_through_workers_one_at_a_time(spawn: Callable[..., Any],
                                                    tmp_path: Path) -> None:
    g = _guard(spawn, tmp_path, "--name", "r", "--listen", "127.0.0.1:0", "--workers", "3",
               "--ready", "notify", "--grace", "5", "--", sys.executable, UVLOOP_SERVER)
    old = set(json.loads(g.ready)["pids"]["r"])
    g.proc.send_signal(signal.SIGHUP)
    wait_until("3 restarts", lambda: _status(tmp_path, "r")["programs"]["r"]["restarts"] == 3, 60)
    new = {w["pid"] for w in _status(tmp_path, "r")["programs"]["r"]["workers"]
           if w["state"] == "ready"}
    assert len(new) == 3
    assert not (old & new)
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0
    ev = _events(g.proc.stderr.read().decode())
    # Rolling: each replacement is ready (restarted) before the next one starts.
    order = [e.split()[0] for e in ev if e.split()[0] in ("restart", "restarted")]
    assert order == ["restart", "restarted"] * 3, ev
    assert all("reason='SIGHUP (on demand)'" in e for e in ev if e.startswith("restart ")), ev


def test_sigterm_is_forwarded_and_workers_drain(spawn: Callable[..., Any],
                                               tmp_path: Path) -> None:
    g = _guard(spawn, tmp_path, "--name", "s", "--listen", "127.0.0.1:0", "--workers", "2",
               "--ready", "notify", "--", sys.executable, UVLOOP_SERVER)
    pids = json.loads(g.ready)["pids"]["s"]
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0
    ev = _events(g.proc.stderr.read().decode())
    for pid in pids:
        # exit status 0: the worker drained on SIGTERM and exited by itself.
        assert any(e.startswith("exit ") and f"pid={pid}" in e and "exit status 0" in e
                   for e in ev), ev


def test_isolated_programs_from_toml_restart_alone(spawn: Callable[..., Any], tmp_path: Path,
                                                   node: str) -> None:
    cfg = tmp_path / "iso.toml"
    cfg.write_text(f"""
[guard]
name = "iso"
interval = 0.1

[programs.web]
command = [{json.dumps(node)}, {json.dumps(NODE_SERVER)}]
listen = ["127.0.0.1:0"]
nofile = 512

[programs.leaky]
command = [{json.dumps(sys.executable)}, {json.dumps(UVLOOP_SERVER)}]
listen = ["127.0.0.1:0"]
ready = "notify"
nofile = 128
max_fd_share = 0.5
env = {{ LEAK_EVERY = "1" }}
""")
    g = _guard(spawn, tmp_path, "--config", str(cfg))
    up = json.loads(g.ready)
    web_pid = up["pids"]["web"][0]
    leaky_addr = up["listen"]["leaky"][0]
    host, port = leaky_addr.rsplit(":", 1)
    import http.client

    for _ in range(100):  # about 70 leaked fds: over half of 128
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("GET", "/")
        assert c.getresponse().status == 200
        c.close()
    wait_until(
        "the leaky program's restart",
        lambda: _status(tmp_path, "iso")["programs"]["leaky"]["restarts"] >= 1,
        30,
    )
    st = _status(tmp_path, "iso")["programs"]
    assert st["web"]["restarts"] == 0
    assert [w["pid"] for w in st["web"]["workers"]] == [web_pid]
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0
    ev = _events(g.proc.stderr.read().decode())
    assert any(e.startswith("restart program=leaky") and "fd share" in e for e in ev), ev
    assert not any(e.startswith("restart program=web") for e in ev), ev


def test_the_guard_adopts_sockets_systemd_passed_to_it(spawn: Callable[..., Any],
                                                       tmp_path: Path) -> None:
    import http.client
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rdir = tmp_path / "run"
    rdir.mkdir(mode=0o700)
    g = spawn([sys.executable, str(PROCS / "guard_socket_activate.py"), f"127.0.0.1:{port}",
               "http", "--", sys.executable, "-m", "fdguard", "guard", "--runtime-dir",
               str(rdir), "--name", "sa", "--listen", f"127.0.0.1:{port}", "--ready", "notify",
               "--", sys.executable, UVLOOP_SERVER], timeout=60)
    # Binding the port itself would have failed (the activator holds it at fd 3).
    assert json.loads(g.ready)["listen"]["sa"] == [f"127.0.0.1:{port}"]
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/")
    assert c.getresponse().read().startswith(b"ok ")
    c.close()
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(timeout=30) == 0


def test_the_guard_tells_systemd_and_records_restarts_in_the_store(
    spawn: Callable[..., Any], tmp_path: Path
) -> None:
    import socket

    from fdguard.store import Store

    db = tmp_path / "fd.db"
    (tmp_path / "run").mkdir(mode=0o700)
    # The guard's own NOTIFY_SOCKET, as systemd sets it for a Type=notify service.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        path2 = str(tmp_path / "notify2.sock")
        manager.bind(path2)
        manager.settimeout(30)
        g = spawn([sys.executable, "-m", "fdguard", "guard", "--runtime-dir",
                   str(tmp_path / "run"), "--name", "st2", "--listen", "127.0.0.1:0",
                   "--ready", "notify", "--store", str(db), "--", sys.executable,
                   UVLOOP_SERVER], timeout=60, env={**os.environ, "NOTIFY_SOCKET": path2})
        assert manager.recv(4096).startswith(b"READY=1")
        (first,) = json.loads(g.ready)["pids"]["st2"]
        send_command(tmp_path / "run" / "st2" / "control.sock", {"cmd": "restart"})
        wait_until(
            "the restart", lambda: _status(tmp_path, "st2")["programs"]["st2"]["restarts"] == 1, 30
        )
        g.proc.send_signal(signal.SIGTERM)
        assert manager.recv(4096) == b"STOPPING=1"
        assert g.proc.wait(timeout=30) == 0
    with Store(db) as store:
        restarts = [e for e in store.events() if e.type == "restart"]
        targets = {t.id: t for t in store.targets()}
    (ev,) = [e for e in restarts if e.data["program"] == "st2"]
    assert ev.data["old_pid"] == first
    assert targets[ev.data["old_target_id"]].ref.pid == first
    assert ev.target_id is not None
    assert targets[ev.target_id].ref.pid != first
    assert targets[ev.target_id].label == "guard:st2/st2/0"
    assert ev.data["reason"] == "on demand (control socket)"
