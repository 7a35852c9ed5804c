"""The real CLI in-process: `inspect --json` carries the runtime, `explain --json` its contract."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from fdguard.cli.main import cli
from tests.conftest import PROCS, Child

IDLE = "print('ready', flush=True); import sys; sys.stdin.read()"


def test_inspect_json_fills_runtime_for_node(spawn: Callable[..., Child], node: str) -> None:
    child = spawn([node, str(PROCS / "explain_node_server.js"), "plain"])
    truth = json.loads(child.ready)
    res = CliRunner().invoke(cli, ["inspect", str(child.pid), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["runtime"]["name"] == "node"
    assert doc["runtime"]["libuv_version"] == truth["uv"]


def test_inspect_json_runtime_null_without_libuv(spawn: Callable[..., Child]) -> None:
    child = spawn([sys.executable, "-c", IDLE])
    res = CliRunner().invoke(cli, ["inspect", str(child.pid), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["runtime"]["name"] is None
    assert doc["runtime"]["libuv_version"] is None


def test_explain_json_contract_on_node(spawn: Callable[..., Child], node: str,
                                       tmp_path: Path) -> None:
    child = spawn([node, "--report-on-signal", str(PROCS / "explain_node_server.js"),
                   "files", "2"], cwd=str(tmp_path))
    truth = json.loads(child.ready)
    res = CliRunner().invoke(cli, ["explain", str(child.pid), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["runtime"]["name"] == "node"
    assert doc["runtime"]["libuv_version"] == truth["uv"]
    assert doc["runtime"]["source"]
    assert {"epoll_fd", "internal_fds", "watched_fds"} <= set(doc["loops"][0])
    by_fd = {f["fd"]: f for f in doc["fds"]}
    for fd in truth["files"]:
        assert by_fd[fd]["verdict"] == "fs"
        assert by_fd[fd]["evidence"]
    assert by_fd[truth["listen_fd"]]["verdict"] == "handle"
    s = doc["summary"]
    assert {"expected", "actual", "unexplained", "confidence"} <= set(s)
    assert s["actual"] == len(doc["fds"])
    assert not list(tmp_path.glob("report.*.json"))


def test_explain_human_output_groups_and_flags_unowned(
    spawn: Callable[..., Child], node: str
) -> None:
    child = spawn([node, str(PROCS / "explain_node_server.js"), "files", "3"])
    res = CliRunner().invoke(cli, ["explain", str(child.pid), "--view", "none"])
    assert res.exit_code == 0, res.output
    assert "runtime: node, libuv" in res.output
    assert "confidence low" in res.output
    assert "no handle view: verdicts rest on heuristics" in res.output
    assert "3 fds  file" in res.output
    assert "=> 3 file(s) opened by path and still open" in res.output


def test_explain_view_report_refused_without_report_on_signal(
    spawn: Callable[..., Child], node: str
) -> None:
    child = spawn([node, str(PROCS / "explain_node_server.js"), "plain"])
    res = CliRunner().invoke(cli, ["explain", str(child.pid), "--view", "report"])
    assert res.exit_code == 1
    assert "--report-on-signal" in res.output


def test_explain_no_such_process() -> None:
    res = CliRunner().invoke(cli, ["explain", "999999999"])
    assert res.exit_code == 3


def test_explain_inspector_needs_explicit_flag(spawn: Callable[..., Child], node: str) -> None:
    child = spawn([node, "--inspect-port=0", str(PROCS / "explain_node_server.js"), "plain"])
    res = CliRunner().invoke(cli, ["explain", str(child.pid), "--view", "inspector"])
    assert res.exit_code == 2
    assert "--open-inspector" in res.output
    # Nothing was sent: node never announced a debugger on its stderr.
    child.proc.stdin.close()  # type: ignore[union-attr]
    child.proc.wait(timeout=10)
    assert b"Debugger listening" not in child.proc.stderr.read()  # type: ignore[union-attr]
