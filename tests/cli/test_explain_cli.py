"""The real CLI in-process: `inspect --json` carries the runtime, `explain --json` its contract."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

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
