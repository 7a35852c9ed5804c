"""Runtime detection against real runtimes: the libuv version fdguard reads from the
binary must equal what the runtime itself says."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fdguard.runtimes import detect
from tests.conftest import PROCS, Child

IDLE = "print('ready', flush=True); import sys; sys.stdin.read()"


def _load_build():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("explain_build", PROCS / "explain_build.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def uvloops_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _load_build().build_uvloops(tmp_path_factory.mktemp("uv"))


def test_node_version_equals_process_versions_uv(
    spawn: Callable[..., Child], node: str
) -> None:
    child = spawn([node, str(PROCS / "explain_node_server.js"), "plain"])
    truth = json.loads(child.ready)
    own = subprocess.run([node, "-p", "process.versions.uv"], capture_output=True,
                         text=True, check=True).stdout.strip()
    info = detect(child.pid)
    assert info is not None
    assert info.name == "node"
    assert info.libuv_version == own == truth["uv"]
    assert info.linkage == "executable"
    assert "uv_version" in info.source


def test_uvloop_versions_equal_libuv_get_version(spawn: Callable[..., Child]) -> None:
    child = spawn([sys.executable, str(PROCS / "explain_uvloop_app.py"), "plain"])
    truth = json.loads(child.ready)
    info = detect(child.pid)
    assert info is not None
    assert info.name == "uvloop"
    assert info.linkage == "extension"
    # truth["uv"] is uvloop.loop.libuv_get_version() decoded inside the app.
    assert info.libuv_version == truth["uv"]
    assert info.versions["uvloop"] == truth["uvloop"]
    assert info.path.endswith(".so")
    assert "/uvloop/" in info.path


def test_shared_libuv_equals_uv_version_string(
    spawn: Callable[..., Child], uvloops_exe: Path
) -> None:
    child = spawn([str(uvloops_exe), "1"])
    truth = json.loads(child.ready)
    info = detect(child.pid)
    assert info is not None
    assert info.name == "libuv"
    assert info.linkage == "shared"
    assert "libuv.so" in info.path
    assert info.libuv_version == truth["uv_version_string"]


def test_no_libuv_said_plainly(spawn: Callable[..., Child]) -> None:
    child = spawn([sys.executable, "-c", IDLE])
    assert child.ready == "ready"
    assert detect(child.pid) is None

