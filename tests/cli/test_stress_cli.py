"""`fdguard stress` in-process through click's CliRunner, against real servers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fdguard.cli.main import cli
from tests.integration.test_stress_real import about

ROOT = Path(__file__).parents[2]
SCENARIO = str(ROOT / "examples" / "scenarios" / "error_paths.toml")
NODE_SERVER = str(ROOT / "tests" / "procs" / "stress_node_server.js")
UVLOOP_SERVER = str(ROOT / "tests" / "procs" / "stress_uvloop_server.py")
SMALL = ["--rounds", "2", "--warmup", "1", "--connections", "3"]


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_json_names_the_leaking_fault_and_exits_10(node: str) -> None:
    code, out, _ = _run("stress", "--scenario", SCENARIO, "--json", "--only", "baseline",
                        "--only", "connect-refused", "--", node, NODE_SERVER, "--leaky")
    assert code == 10
    doc = json.loads(out)
    assert doc["leak"] is True
    assert doc["leaking"] == ["connect-refused"]
    base, refused = doc["configs"]
    assert base["name"] == "baseline"
    assert base["leak"] is False
    assert all(abs(d) <= 1 for d in base["deltas"])
    assert refused["faults"] == "connect:ECONNREFUSED@1+"
    assert about(refused["deltas"], 5)
    assert abs(refused["growth_by_state"]["tcp:CLOSE-WAIT"] - 5) <= 0.7
    assert refused["driver"] == {"ok": 20, "failed": 0}
    assert {(f["kind"], f["state"]) for f in refused["leaked_fds"]} == {("tcp", "CLOSE-WAIT")}


@pytest.mark.slow
def test_human_report_lists_leaked_fds_with_kind_and_target() -> None:
    code, out, _ = _run("stress", *SMALL, "--no-baseline", "--fault",
                        "client-reset=proxy:reset_after=4", "--fault", "proxy:partial_bytes=2",
                        "--", sys.executable, UVLOOP_SERVER, "--leaky")
    assert code == 10
    assert "client-reset" in out
    assert "LEAK" in out
    assert "FAILED: client-reset" in out
    lines = [line for line in out.splitlines() if line.strip().startswith("fd ")]
    assert len(lines) == 6
    assert all(": file " in line and "fdguard-spool" in line and "(deleted)" in line
               for line in lines)


@pytest.mark.slow
def test_healthy_server_passes_and_squeeze_recovers() -> None:
    code, out, _ = _run("stress", *SMALL, "--fault", "proxy:reset_after=4", "--fault",
                        "squeeze:headroom=2,flood=16,hold_s=0.3", "--",
                        sys.executable, UVLOOP_SERVER)
    assert code == 0, out
    assert "no leak in any configuration" in out
    assert "served again: yes" in out
    assert "recovered" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stress"], "give the service command"),
        (["stress", "--fault", "bogus:x", "--", "true"], "kind must be"),
        (["stress", "--fault", "fiu:accept4:error=EMFILE", "--", "true"], "strace"),
        (["stress", "--scenario", "/nonexistent.toml"], "cannot read scenario"),
        (["stress", "--only", "nope", "--", "true"], "no fault configuration named nope"),
        (["stress", "--connections", "0", "--", "true"], "connections"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    code, _, err = _run(*args)
    assert code == 2
    assert message in err


def test_a_service_that_never_gets_ready_is_an_error() -> None:
    code, _, err = _run("stress", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert code == 1
    assert "exited before it was ready" in err


@pytest.mark.slow
def test_birth_certificates_show_where_the_leaked_fds_were_created() -> None:
    # One warm-up and one measured round of two connections: strace -k is slow.
    code, out, _ = _run("stress", "--json", "--birth-certificates", "--no-baseline",
                        "--rounds", "1", "--warmup", "1", "--connections", "2",
                        "--fault", "client-reset=proxy:reset_after=4",
                        "--", sys.executable, UVLOOP_SERVER, "--leaky")
    assert code == 10
    (reset,) = json.loads(out)["configs"]
    assert reset["leak"] is True
    certs = reset["birth_certificates"]
    assert certs
    top = certs[0]
    assert top["syscall"] in ("openat", "open")
    assert set(top["kinds"]) == {"file"}
    assert top["count"] >= 2
    symbols = [f["symbol"] or "" for f in top["frames"]]
    # The spool file is opened from uvloop's connection_made callback.
    assert any("call_connection_made" in s for s in symbols)


def test_birth_certificates_say_why_not_for_strace_injected_faults(node: str) -> None:
    code, out, _ = _run("stress", "--json", "--birth-certificates", "--no-baseline",
                        "--rounds", "2", "--warmup", "1", "--connections", "2",
                        "--fault", "refused=syscall:connect:error=ECONNREFUSED",
                        "--", node, NODE_SERVER, "--leaky")
    assert code == 10
    (refused,) = json.loads(out)["configs"]
    assert refused["birth_certificates"] == [
        {"note": "no birth certificates for strace-injected faults: a process has one "
                 "tracer, and strace --inject is it"}
    ]


def test_libfiu_and_strace_reach_the_same_error_path_of_node(node: str) -> None:
    code, out, _ = _run("stress", "--json", "--progress", "--no-baseline", "--rounds", "2",
                        "--warmup", "1", "--connections", "3",
                        "--fault", "fiu-refused=fiu:connect:error=ECONNREFUSED",
                        "--fault", "strace-refused=syscall:connect:error=ECONNREFUSED",
                        "--", node, NODE_SERVER, "--leaky")
    assert code == 10
    doc = json.loads(out)
    assert doc["leaking"] == ["fiu-refused", "strace-refused"]
    for config in doc["configs"]:
        assert about(config["deltas"], 3)
        assert abs(config["growth_by_state"]["tcp:CLOSE-WAIT"] - 3) <= 1


def test_duration_keeps_measuring_past_the_minimum_rounds() -> None:
    code, out, _ = _run("stress", "--json", "--duration", "0.6", "--rounds", "2", "--warmup",
                        "1", "--connections", "2", "--no-baseline", "--fault",
                        "proxy:latency_ms=1", "--", sys.executable, UVLOOP_SERVER)
    assert code == 0
    (config,) = json.loads(out)["configs"]
    assert len(config["deltas"]) >= 2
    assert config["leak"] is False
    assert all(abs(d) <= 1 for d in config["deltas"])


DRIVER = (
    "import socket; s = socket.create_connection(('{host}', {port})); s.sendall(b'GET\\n'); "
    "s.recv(16); s.close()"
)


def test_an_external_driver_command_from_a_scenario_file(tmp_path: Path, node: str) -> None:
    scenario = tmp_path / "driver.toml"
    scenario.write_text(
        f"""
name = "external driver"
[service]
command = [{json.dumps(node)}, {json.dumps(NODE_SERVER)}, "--leaky"]
[workload]
command = [{json.dumps(sys.executable)}, "-c", {json.dumps(DRIVER)}]
timeout = 10
[run]
warmup = 1
rounds = 2
min_growth = 2
[[fault]]
name = "refused"
syscall = [{{ call = "connect", error = "ECONNREFUSED" }}]
"""
    )
    code, out, _ = _run("stress", "--scenario", str(scenario), "--json")
    doc = json.loads(out)
    assert code == 10
    assert doc["leaking"] == ["refused"]
    base, refused = doc["configs"]
    assert base["driver"] == {"ok": 3, "failed": 0}
    assert all(1 <= d <= 2 for d in refused["deltas"])


def test_syscall_faults_start_once_the_service_is_ready(node: str) -> None:
    # Every other socket() fails: at start-up that would kill the listener; once
    # attached it only hits the upstream connect path, which leaks in --leaky.
    # accept4 at EMFILE every third call costs connections, but leaks nothing.
    code, out, _ = _run("stress", "--json", "--no-baseline", "--rounds", "2", "--warmup", "1",
                        "--connections", "4",
                        "--fault", "socket-emfile=syscall:socket:error=EMFILE:when=1+2",
                        "--fault", "accept-emfile=syscall:accept4:error=EMFILE:when=2+3",
                        "--", node, NODE_SERVER, "--leaky")
    assert code == 10
    doc = json.loads(out)
    assert doc["leaking"] == ["socket-emfile"]
    socket_fault, accept_fault = doc["configs"]
    assert about(socket_fault["deltas"], 2)
    assert accept_fault["leak"] is False
    assert accept_fault["error"] is None  # node survived
    # The fault really hit: libuv answers EMFILE by dropping what is queued.
    assert accept_fault["driver"]["failed"] > 0


def test_from_start_faults_the_start_up_too(tmp_path: Path, node: str) -> None:
    scenario = tmp_path / "start.toml"
    scenario.write_text(
        f"""
[service]
command = [{json.dumps(node)}, {json.dumps(NODE_SERVER)}]
[run]
baseline = false
[[fault]]
name = "socket-emfile-from-start"
syscall = [{{ call = "socket", error = "EMFILE" }}]
from_start = true
"""
    )
    code, _, err = _run("stress", "--scenario", str(scenario))
    assert code == 1
    assert "exited before it was ready" in err
    assert "EMFILE" in err
