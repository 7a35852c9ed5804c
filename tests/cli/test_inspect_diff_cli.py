"""`fdguard inspect PID --diff BEFORE.json` and `--for`: what a real process opened, closed
and left in CLOSE-WAIT between two snapshots, grouped by what it is."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from fdguard.cli.main import cli
from tests.conftest import wait_line

# Holds a pipe pair and a loopback connection whose both ends it owns; on "grow" it
# opens 5 log files, closes the pipe, and closes the client end of the connection
# (the accepted end, still open, goes to CLOSE-WAIT), then says "done".
CHILD = """
import os, socket, sys
logs = sys.argv[1]
r, w = os.pipe()
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname()); acc, _ = srv.accept()
print("ready", flush=True)
sys.stdin.readline()
held = [open(os.path.join(logs, f"req-{i}.log"), "w") for i in range(5)]
os.close(r); os.close(w); cli.close()
print("done", flush=True)
sys.stdin.read()
"""


def _inspect(*args: str) -> Any:
    res = CliRunner().invoke(cli, ["inspect", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def _grow(child: Any) -> None:
    child.proc.stdin.write(b"grow\n")
    child.proc.stdin.flush()
    assert wait_line(child.proc) == "done"


def test_diff_names_what_was_opened_closed_and_left_in_close_wait(spawn, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    child = spawn([sys.executable, "-c", CHILD, str(logs)])
    before = tmp_path / "before.json"
    before.write_text(_inspect(str(child.pid), "--json").stdout)
    _grow(child)

    doc = json.loads(_inspect(str(child.pid), "--diff", str(before), "--json").stdout)
    assert doc["pid"] == child.pid
    assert (doc["opened"], doc["closed"]) == (5, 3)  # 5 logs; 2 pipe ends, 1 socket
    assert doc["after"]["count"] - doc["before"]["count"] == 2
    groups = {(g["kind"], g["what"]): g for g in doc["groups"]}
    # Runs of digits are `*` in the whole path (pytest's tmp dirs have some too).
    pattern = re.sub(r"\d+", "*", f"{logs}/req-0.log")
    assert pattern.endswith("/logs/req-*.log")
    logs_group = groups[("file", pattern)]
    assert (logs_group["opened"], logs_group["net"]) == (5, 5)
    assert doc["groups"][0] == logs_group  # the biggest change first
    assert groups[("pipe", "")]["net"] == -2
    [tcp] = [g for (kind, _), g in groups.items() if kind == "tcp"]
    assert tcp["net"] == -1  # the client end, closed
    assert doc["moved"] == [{"from": "ESTAB", "to": "CLOSE-WAIT", "count": 1}]
    assert {f["target"] for f in doc["opened_fds"]} == {
        str(logs / f"req-{i}.log") for i in range(5)
    }

    text = _inspect(str(child.pid), "--diff", str(before)).stdout.splitlines()
    assert text[0].startswith(f"pid {child.pid} (")
    assert "fds (+2) in " in text[0]
    assert text[1] == "opened 5, closed 3, sockets that changed state 1"
    assert text[2].split() == ["+5", "file", pattern]
    assert "  moved: 1 socket ESTAB -> CLOSE-WAIT" in text

    # Filters apply to both sides: only sockets.
    tcp_only = json.loads(
        _inspect(str(child.pid), "--diff", str(before), "--kind", "tcp", "--json").stdout
    )
    assert {g["kind"] for g in tcp_only["groups"]} == {"tcp"}
    assert tcp_only["opened"] == 0


def test_for_takes_the_second_snapshot_later(spawn, tmp_path: Path) -> None:
    child = spawn([sys.executable, "-c", CHILD, str(tmp_path)])
    res = _inspect(str(child.pid), "--for", "0.2s", "--json")
    doc = json.loads(res.stdout)
    assert doc["seconds"] >= 0.2
    assert doc["groups"] == []  # nothing happened meanwhile
    assert doc["moved"] == []
    text = _inspect(str(child.pid), "--for", "100ms").stdout
    assert text.splitlines()[-1] == "  no change"


def test_a_diff_against_another_process_or_a_non_snapshot_is_refused(
    spawn, tmp_path: Path
) -> None:
    one = spawn([sys.executable, "-c", CHILD, str(tmp_path)])
    two = spawn([sys.executable, "-c", CHILD, str(tmp_path)])
    before = tmp_path / "one.json"
    before.write_text(_inspect(str(one.pid), "--json").stdout)
    res = CliRunner().invoke(cli, ["inspect", str(two.pid), "--diff", str(before)])
    assert res.exit_code == 2
    assert f"is a snapshot of pid {one.pid}" in res.stderr
    assert "take a new one" in res.stderr
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    res = CliRunner().invoke(cli, ["inspect", str(one.pid), "--diff", str(junk)])
    assert res.exit_code == 2
    assert "not an fdguard snapshot" in res.stderr
    # Filtered or not, a snapshot whose fds are not fds is refused, not a traceback.
    junk.write_text(json.dumps({"pid": one.pid, "start_time": 1, "taken_at": 0, "fds": [7]}))
    res = CliRunner().invoke(cli, ["inspect", str(one.pid), "--diff", str(junk), "--kind", "tcp"])
    assert res.exit_code == 2
    assert "fds[0] is not an fd" in res.stderr
    res = CliRunner().invoke(cli, ["inspect", str(one.pid), "--diff", str(junk), "--for", "1s"])
    assert res.exit_code == 2
    assert "not both" in res.stderr
    filtered = tmp_path / "filtered.json"
    filtered.write_text(_inspect(str(one.pid), "--json", "--kind", "pipe").stdout)
    res = CliRunner().invoke(cli, ["inspect", str(one.pid), "--diff", str(filtered)])
    assert res.exit_code == 2
    assert "saved with --kind/--state" in res.stderr
