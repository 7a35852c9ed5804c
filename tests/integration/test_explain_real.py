"""`explain` against real runtimes: a verdict per fd that matches the ground truth each
test process prints (Node.js 20, uvloop, a C service on Debian's libuv)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import fdguard
from fdguard.attribute import Explanation, Verdict, explain
from fdguard.model import TcpState
from tests.conftest import PROCS, Child, wait_line

NODE_SERVER = str(PROCS / "explain_node_server.js")
UVLOOP_APP = str(PROCS / "explain_uvloop_app.py")


def _build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("explain_build", PROCS / "explain_build.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("native")
    b = _build()
    return {"uvloops": b.build_uvloops(out), "addon": b.build_leak_addon(out)}


@pytest.fixture
def agent_env(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "agents"
    d.mkdir(mode=0o700)
    env = dict(os.environ)
    env["FDGUARD_AGENT_DIR"] = str(d)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH", "")])
    return env


def _hang_up(port: int, n: int) -> None:
    """Connect n clients to the server and close them: the server side sees EOF."""
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port)):
            pass


def verdicts(ex: Explanation) -> dict[int, Verdict]:
    return {v.fd.fd: v.verdict for v in ex.fds}


def _check_contract(ex: Explanation) -> None:
    doc = ex.to_json()
    assert set(doc["runtime"]) >= {"name", "libuv_version", "source"}
    for lp in doc["loops"]:
        assert set(lp) >= {"epoll_fd", "internal_fds", "watched_fds"}
    for f in doc["fds"]:
        assert set(f) >= {"fd", "kind", "verdict", "evidence"}
        assert f["verdict"] in {v.value for v in Verdict}
    assert set(doc["summary"]) >= {"expected", "actual", "unexplained", "confidence"}
    assert doc["summary"]["actual"] == len(doc["fds"])


# -- Node.js -------------------------------------------------------------------


def test_node_closewait_pileup_is_the_applications(
    spawn: Callable[..., Child], node: str, tmp_path: Path
) -> None:
    child = spawn([node, "--report-on-signal", NODE_SERVER, "closewait", "5"], cwd=str(tmp_path))
    truth = json.loads(child.ready)
    _hang_up(truth["port"], 5)
    closewait = json.loads(wait_line(child.proc))["closewait"]
    ex = explain(child.pid)
    _check_contract(ex)
    assert ex.view is not None
    assert ex.view.source == "node-report:SIGUSR2"
    v = verdicts(ex)
    for fd in closewait:
        assert v[fd] is Verdict.HANDLE
    states = {f.fd.fd: f.fd.state for f in ex.fds}
    assert all(states[fd] is TcpState.CLOSE_WAIT for fd in closewait)
    assert v[truth["listen_fd"]] is Verdict.HANDLE
    assert ex.summary.unexplained == 0
    assert ex.summary.confidence in ("high", "medium")
    assert ex.runtime is not None
    assert ex.runtime.libuv_version == truth["uv"]
    # The report file was read and removed: nothing left in the process's cwd.
    assert not list(tmp_path.glob("report.*.json"))
    # Node 20 runs several loops (main, platform); each has its epoll and eventfd.
    assert len(ex.loops.loops) >= 2
    for lp in ex.loops.loops:
        assert v[lp.epoll_fd] is Verdict.LOOP_INTERNAL
    main = [lp for lp in ex.loops.loops if truth["listen_fd"] in lp.watched]
    assert len(main) == 1
    roles = {i.role for i in main[0].internal}
    assert {"epoll", "async-eventfd", "signal-pipe-read", "signal-pipe-write"} <= roles


def test_node_closewait_without_view_says_heuristics(
    spawn: Callable[..., Child], node: str
) -> None:
    child = spawn([node, NODE_SERVER, "closewait", "3"])
    truth = json.loads(child.ready)
    _hang_up(truth["port"], 3)
    closewait = json.loads(wait_line(child.proc))["closewait"]
    ex = explain(child.pid)
    assert ex.view is None
    assert ex.summary.confidence == "low"
    assert any("heuristics" in b for b in ex.summary.basis)
    v = verdicts(ex)
    for fd in closewait:
        assert v[fd] is Verdict.HANDLE
    assert any("--report-on-signal" in n for n in ex.notes)


def test_node_unclosed_files_are_fs(spawn: Callable[..., Child], node: str,
                                    tmp_path: Path) -> None:
    child = spawn([node, "--report-on-signal", NODE_SERVER, "files", "4"], cwd=str(tmp_path))
    truth = json.loads(child.ready)
    ex = explain(child.pid)
    v = verdicts(ex)
    assert [v[fd] for fd in truth["files"]] == [Verdict.FS] * 4
    assert ex.summary.unexplained == 0
    assert ex.summary.by_verdict["fs"] >= 4


def test_node_fd_lost_by_native_code_is_unowned(
    spawn: Callable[..., Child], node: str, native: dict[str, Path], tmp_path: Path
) -> None:
    child = spawn([node, "--report-on-signal", NODE_SERVER, "unowned", str(native["addon"])],
                  cwd=str(tmp_path))
    truth = json.loads(child.ready)
    ex = explain(child.pid)
    v = verdicts(ex)
    assert v[truth["leaked"]] is Verdict.UNOWNED
    assert ex.summary.unexplained == 1
    leaked = next(f for f in ex.fds if f.fd.fd == truth["leaked"])
    assert leaked.certain
    assert "O_CLOEXEC" in leaked.evidence


def test_node_worker_thread_handles_and_loop(
    spawn: Callable[..., Child], node: str, tmp_path: Path
) -> None:
    child = spawn([node, "--report-on-signal", NODE_SERVER, "worker"], cwd=str(tmp_path))
    truth = json.loads(child.ready)
    ex = explain(child.pid)
    v = {x.fd.fd: x for x in ex.fds}
    wfd = truth["worker_listen_fd"]
    assert v[wfd].verdict is Verdict.HANDLE
    assert v[wfd].certain
    assert "worker 0" in v[wfd].evidence
    # The worker's loop is one more epoll, and it watches the worker's server.
    assert any(wfd in lp.watched for lp in ex.loops.loops)
    assert ex.summary.unexplained == 0


def test_node_inotify_and_io_uring_rings_are_loop_internal(
    spawn: Callable[..., Child], node: str, tmp_path: Path
) -> None:
    env = dict(os.environ, UV_USE_IO_URING="1")
    child = spawn([node, "--report-on-signal", NODE_SERVER, "watch", str(tmp_path)],
                  env=env, cwd=str(tmp_path))
    truth = json.loads(child.ready)
    ex = explain(child.pid)
    kinds = {f.fd.fd: f.fd.kind.value for f in ex.fds}
    v = verdicts(ex)
    rings = [fd for fd, k in kinds.items() if k == "io_uring"]
    inotify = [fd for fd, k in kinds.items() if k == "inotify"]
    assert rings, "libuv 1.46 with UV_USE_IO_URING=1 opens io_uring rings per loop"
    assert len(inotify) == 1
    assert all(v[fd] is Verdict.LOOP_INTERNAL for fd in rings + inotify)
    main = next(lp for lp in ex.loops.loops if truth["listen_fd"] in lp.watched)
    assert inotify[0] in main.internal_fds
    assert ex.summary.unexplained == 0


def test_node_inherited_socket_from_its_parent(spawn: Callable[..., Child],
                                               node: str) -> None:
    parent = spawn([sys.executable, str(PROCS / "explain_parent.py"), node, NODE_SERVER,
                    "plain"])
    info = json.loads(parent.ready)
    ex = explain(info["child"], view="none")
    v = {x.fd.fd: x for x in ex.fds}
    assert v[info["fd"]].verdict is Verdict.INHERITED
    assert v[info["fd"]].certain
    assert ex.summary.unexplained == 0


def test_node_under_fdguard_run_agent(
    spawn: Callable[..., Child], node: str, native: dict[str, Path],
    agent_env: dict[str, str]
) -> None:
    child = spawn([sys.executable, "-m", "fdguard", "run", "--", node, NODE_SERVER, "unowned",
                   str(native["addon"])], env=agent_env)
    truth = json.loads(child.ready)
    sock = Path(agent_env["FDGUARD_AGENT_DIR"]) / f"{child.pid}.sock"
    assert sock.exists()
    assert sock.stat().st_mode & 0o077 == 0
    ex = explain(child.pid)
    assert ex.view is not None
    assert ex.view.source == "agent:node"
    v = verdicts(ex)
    assert v[truth["leaked"]] is Verdict.UNOWNED
    assert v[truth["listen_fd"]] is Verdict.HANDLE
    assert ex.summary.unexplained == 1


def test_node_inspector_view_opens_and_closes_again(
    spawn: Callable[..., Child], node: str, native: dict[str, Path]
) -> None:
    # --inspect-port=0: SIGUSR1 opens the inspector on a free port, so parallel
    # test runs never fight over 9229.
    child = spawn([node, "--inspect-port=0", NODE_SERVER, "unowned", str(native["addon"])])
    truth = json.loads(child.ready)
    before = {(f.fd, f.target) for f in fdguard.snapshot(child.pid).fds}
    ex = explain(child.pid, view="inspector")
    assert ex.view is not None
    assert ex.view.source == "node-inspector"
    v = verdicts(ex)
    assert v[truth["leaked"]] is Verdict.UNOWNED
    assert v[truth["listen_fd"]] is Verdict.HANDLE
    after = fdguard.snapshot(child.pid)
    # Closed again: no listening socket and no fd more than before.
    assert {(f.fd, f.target) for f in after.fds} == before
    assert [f for f in after.fds if f.state is TcpState.LISTEN and f.fd != truth["listen_fd"]] == []


# -- uvloop --------------------------------------------------------------------


def _uvloop(spawn: Callable[..., Child], env: dict[str, str], *args: str) -> Child:
    return spawn([sys.executable, "-m", "fdguard.agent", UVLOOP_APP, *args], env=env)


def test_uvloop_closewait_pileup(spawn: Callable[..., Child],
                                 agent_env: dict[str, str]) -> None:
    child = _uvloop(spawn, agent_env, "closewait", "4")
    truth = json.loads(child.ready)
    _hang_up(truth["port"], 4)
    closewait = json.loads(wait_line(child.proc))["closewait"]
    ex = explain(child.pid)
    _check_contract(ex)
    assert ex.view is not None
    assert ex.view.source == "agent:python"
    # uvloop's own libuv handles are listed too (by type; they expose no fd).
    kinds = {h.type for h in ex.view.handles if h.fd is None}
    assert {"uvloop.UVAsync", "uvloop.TCPServer"} <= kinds
    v = verdicts(ex)
    assert [v[fd] for fd in closewait] == [Verdict.HANDLE] * 4
    assert ex.summary.unexplained == 0
    assert ex.runtime is not None
    assert ex.runtime.name == "uvloop"
    assert ex.runtime.libuv_version == truth["uv"]
    # The loop uvloop reports (uv_backend_fd) is one fdguard found from outside.
    assert truth["epoll_fd"] in {lp.epoll_fd for lp in ex.loops.loops}


def test_uvloop_unclosed_files_are_fs(spawn: Callable[..., Child],
                                      agent_env: dict[str, str]) -> None:
    child = _uvloop(spawn, agent_env, "files", "3")
    truth = json.loads(child.ready)
    ex = explain(child.pid)
    v = verdicts(ex)
    assert [v[fd] for fd in truth["files"]] == [Verdict.FS] * 3
    assert ex.summary.unexplained == 0, [
        x.to_json() for x in ex.fds if x.verdict is Verdict.UNOWNED]


def test_uvloop_detached_socket_is_unowned(spawn: Callable[..., Child],
                                           agent_env: dict[str, str]) -> None:
    child = _uvloop(spawn, agent_env, "unowned")
    truth = json.loads(child.ready)
    ex = explain(child.pid)
    v = verdicts(ex)
    assert v[truth["leaked"]] is Verdict.UNOWNED
    assert ex.summary.unexplained == 1
    loop = next(lp for lp in ex.loops.loops if lp.epoll_fd == truth["epoll_fd"])
    assert truth["listen_fd"] in loop.watched


def test_python_under_fdguard_run_agent(spawn: Callable[..., Child],
                                        agent_env: dict[str, str]) -> None:
    child = spawn([sys.executable, "-m", "fdguard", "run", "--", sys.executable, UVLOOP_APP,
                   "unowned"], env=agent_env)
    truth = json.loads(child.ready)
    assert truth["pid"] == child.pid  # run execs: the service keeps the PID
    ex = explain(child.pid)
    assert ex.view is not None
    assert ex.view.source == "agent:python"
    assert verdicts(ex)[truth["leaked"]] is Verdict.UNOWNED


def test_uvloop_published_expected_count(spawn: Callable[..., Child],
                                         agent_env: dict[str, str]) -> None:
    child = _uvloop(spawn, agent_env, "publish", "7")
    json.loads(child.ready)
    path = Path(agent_env["FDGUARD_AGENT_DIR"]) / f"{child.pid}.expected.json"
    assert path.stat().st_mode & 0o077 == 0
    ex = explain(child.pid, view="none")
    assert ex.published is not None
    assert ex.published.expected_fds == 7
    assert ex.published.resources == {"db_connections": 2}
    assert any("publishes 7 expected fds" in n for n in ex.notes)
    assert ex.to_json()["published"]["expected_fds"] == 7


def test_plain_asyncio_agent_without_libuv(spawn: Callable[..., Child],
                                           agent_env: dict[str, str]) -> None:
    env = dict(agent_env, FDGUARD_TEST_ASYNCIO="1")
    child = _uvloop(spawn, env, "unowned")
    truth = json.loads(child.ready)
    ex = explain(child.pid)
    assert ex.runtime is None
    assert ex.view is not None
    v = verdicts(ex)
    assert v[truth["leaked"]] is Verdict.UNOWNED
    # asyncio's selector epoll is the loop's own, as the agent says.
    assert v[truth["epoll_fd"]] is Verdict.LOOP_INTERNAL
    assert v[truth["listen_fd"]] is Verdict.HANDLE
    assert ex.summary.unexplained == 1


# -- C on the system libuv -----------------------------------------------------


@pytest.mark.parametrize("nloops", [1, 3])
def test_c_service_loops_and_leak(spawn: Callable[..., Child], native: dict[str, Path],
                                  nloops: int) -> None:
    child = spawn([str(native["uvloops"]), str(nloops), "leak"])
    truth = json.loads(child.ready)
    ex = explain(child.pid)
    _check_contract(ex)
    assert ex.runtime is not None
    assert ex.runtime.libuv_version == truth["uv_version_string"]
    assert sorted(lp.epoll_fd for lp in ex.loops.loops) == sorted(
        lp["epoll_fd"] for lp in truth["loops"])
    v = verdicts(ex)
    for want in truth["loops"]:
        loop = next(lp for lp in ex.loops.loops if lp.epoll_fd == want["epoll_fd"])
        assert want["server_fd"] in loop.watched
        assert v[want["server_fd"]] is Verdict.HANDLE
        roles = {i.role for i in loop.internal}
        assert {"epoll", "async-eventfd", "signal-pipe-read", "signal-pipe-write",
                "emfile-reserve"} <= roles
    # One process-wide signal lock pipe, whatever the number of loops.
    assert [i.role for i in ex.loops.process_wide] == [
        "signal-lock-pipe-read", "signal-lock-pipe-write"]
    assert v[truth["leaked"]] is Verdict.UNOWNED
    assert ex.summary.unexplained == 1
    assert ex.summary.confidence == "low"
    # Everything else is explained: loop internals, handles, stdio.
    others = {fd: vv for fd, vv in v.items() if fd != truth["leaked"]}
    assert set(others.values()) <= {Verdict.LOOP_INTERNAL, Verdict.HANDLE, Verdict.STDIO}
