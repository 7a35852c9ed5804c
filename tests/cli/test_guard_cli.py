"""`fdguard guard` sub-commands through the real CLI in-process (CliRunner).

`run` itself forks workers and owns signals, so it runs as its own process
(spawned); the control commands (status, restart, stop) and --print-systemd
run in-process against it.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from fdguard.cli.main import cli

UVLOOP_SERVER = str(Path(__file__).parent.parent / "procs" / "guard_uvloop_server.py")


def _guard(spawn: Callable[..., Any], rdir: Path, *args: str) -> Any:
    rdir.mkdir(mode=0o700, exist_ok=True)
    return spawn([sys.executable, "-m", "fdguard", "guard", "--runtime-dir", str(rdir), *args],
                 timeout=60)


def test_print_systemd_renders_socket_and_service_units() -> None:
    res = CliRunner().invoke(cli, [
        "guard", "--print-systemd", "--name", "api", "--listen", "127.0.0.1:8080",
        "--nofile", "4096", "--max-fd-share", "0.8", "--grace", "15", "--",
        "node", "server.js",
    ])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "# --- fdguard-api.socket" in out
    assert "ListenStream=127.0.0.1:8080" in out
    assert "# --- fdguard-api.service" in out
    assert "LimitNOFILE=4096" in out
    assert "Restart=on-failure" in out
    exec_line = next(ln for ln in out.splitlines() if ln.startswith("ExecStart="))
    assert " guard --name api " in exec_line
    assert "--max-fd-share 0.8" in exec_line
    assert "--listen http=127.0.0.1:8080" in exec_line
    assert exec_line.endswith("-- node server.js")


def test_run_without_a_command_is_a_usage_error() -> None:
    res = CliRunner().invoke(cli, ["guard", "--workers", "2"])
    assert res.exit_code == 2
    assert "give a command" in res.stderr


def test_status_without_a_running_guard(tmp_path: Path) -> None:
    rdir = tmp_path / "run"
    rdir.mkdir(mode=0o700)
    res = CliRunner().invoke(cli, ["guard", "status", "--runtime-dir", str(rdir)])
    assert res.exit_code == 2
    assert "none running" in res.stderr


def test_restart_status_and_stop_a_running_guard(spawn: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    rdir = tmp_path / "run"
    g = _guard(spawn, rdir, "--name", "web", "--listen", "127.0.0.1:0", "--ready", "notify",
               "--grace", "5", "--", sys.executable, UVLOOP_SERVER)
    up = json.loads(g.ready)
    (first,) = up["pids"]["web"]
    # The control socket is the guard user's only: 0600 in a 0700 directory.
    ctl = rdir / "web" / "control.sock"
    assert stat.S_IMODE(os.stat(ctl).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(rdir / "web").st_mode) == 0o700

    r = CliRunner()
    res = r.invoke(cli, ["guard", "status", "--runtime-dir", str(rdir), "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)
    assert [w["pid"] for w in st["programs"]["web"]["workers"]] == [first]

    res = r.invoke(cli, ["guard", "restart", "--runtime-dir", str(rdir)])
    assert res.exit_code == 0, res.output
    assert "restart queued: web worker 0" in res.stdout
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        res = r.invoke(cli, ["guard", "status", "--name", "web", "--runtime-dir", str(rdir),
                             "--json"])
        prog = json.loads(res.stdout)["programs"]["web"]
        if prog["restarts"] == 1 and all(w["pid"] != first for w in prog["workers"]):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no restart seen: {prog}")

    res = r.invoke(cli, ["guard", "restart", "nosuch", "--runtime-dir", str(rdir)])
    assert res.exit_code == 2
    assert "no program named" in res.stderr

    res = r.invoke(cli, ["guard", "stop", "--runtime-dir", str(rdir)])
    assert res.exit_code == 0
    assert g.proc.wait(timeout=30) == 0
    log = g.proc.stderr.read().decode()
    assert "restart program=web worker=0" in log
    assert "reason='on demand (control socket)'" in log
