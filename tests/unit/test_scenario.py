"""Scenario files (TOML) and one-line CLI fault specs, including the examples shipped."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fdguard.errors import UsageError
from fdguard.faults import ProxyFaults, SyscallFault
from fdguard.scenario import load_scenario, parse_fault_spec, parse_scenario

EXAMPLES = Path(__file__).parents[2] / "examples" / "scenarios"

FULL = """
name = "demo"
[service]
command = ["node", "s.js"]
port = 8080
ready_line = false
env = { NODE_ENV = "test" }
[workload]
mode = "reset"
connections = 3
request = "PING\\n"
timeout = 1.5
[run]
warmup = 0
rounds = 5
settle_ms = 50
settle_timeout = 1.0
max_zero_rounds = 1
min_growth = 3
baseline = false
[[fault]]
name = "refused"
syscall = [{ call = "connect", error = "ECONNREFUSED", when = "2+" }]
from_start = true
[[fault]]
name = "fiu-refused"
fiu = [{ call = "connect", error = "ECONNREFUSED", probability = 0.5 }]
[[fault]]
name = "reset"
proxy = { reset_after = 4, latency_ms = 3 }
[[fault]]
name = "squeeze"
squeeze = { headroom = 1, flood = 8, recover_timeout = 2.0 }
"""


def test_full_scenario_round_trips_into_typed_objects() -> None:
    sc = parse_scenario(tomllib.loads(FULL))
    assert sc.name == "demo"
    assert sc.service.argv == ("node", "s.js")
    assert sc.service.port == 8080
    assert not sc.service.ready_line
    assert sc.service.env == (("NODE_ENV", "test"),)
    assert sc.workload.mode == "reset"
    assert sc.workload.request == b"PING\n"
    assert sc.policy.rounds == 5
    assert sc.policy.settle_timeout_s == 1.0
    assert not sc.policy.baseline
    assert [c.name for c in sc.configs] == ["refused", "fiu-refused", "reset", "squeeze"]
    assert sc.faults[0].syscall == (SyscallFault("connect", error="ECONNREFUSED", when="2+"),)
    assert sc.faults[0].from_start
    assert not sc.faults[1].from_start
    assert sc.faults[1].fiu[0].probability == 0.5
    assert sc.faults[2].proxy == ProxyFaults(reset_after=4, latency_ms=3)
    assert sc.faults[3].squeeze is not None
    assert sc.faults[3].squeeze.recover_timeout_s == 2.0
    assert sc.uses_proxy


def test_cli_command_replaces_the_file_command() -> None:
    sc = parse_scenario(tomllib.loads(FULL), command=["python3", "srv.py"])
    assert sc.service.argv == ("python3", "srv.py")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ('[service]\ncommand = ["x"]\nprot = 1\n', "unknown keys"),
        ('[service]\ncommand = ["x"]\n[run]\nround = 3\n', "unknown keys"),
        ('[service]\ncommand = ["x"]\n[[fault]]\nname = "a"\nproxy = { resett = 1 }\n',
         "unknown keys"),
        ('[service]\ncommand = ["x"]\n[[fault]]\nproxy = { reset_after = 1 }\n', "name"),
        ('[service]\ncommand = ["x"]\n[[fault]]\nname = "baseline"\n', "baseline"),
        ('[service]\ncommand = ["x"]\n[[fault]]\nname = "a"\n[[fault]]\nname = "a"\n', "unique"),
        ("[service]\ncommand = []\n", "command"),
        ('[service]\ncommand = ["x"]\n[[fault]]\nname = "a"\n'
         'fiu = [{ call = "accept4", error = "EMFILE" }]\n', "strace"),
        ('[service]\ncommand = ["x"]\n[[fault]]\nname = "a"\n'
         'syscall = [{ call = "connect", error = "ECONNREFUSED" }]\n'
         'fiu = [{ call = "connect", error = "ECONNREFUSED" }]\n', "combined"),
    ],
)
def test_mistakes_in_a_ci_gate_are_errors(patch: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_scenario(tomllib.loads(patch))


def test_load_scenario_reports_bad_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_scenario(bad)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_examples_load(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.faults
    assert sc.service.argv


def test_fault_specs() -> None:
    c = parse_fault_spec("syscall:connect:error=ECONNREFUSED:when=1+")
    assert c.syscall == (SyscallFault("connect", error="ECONNREFUSED"),)
    assert c.name == "syscall:connect:error=ECONNREFUSED:when=1+"
    named = parse_fault_spec("refused=syscall:connect:error=ECONNREFUSED")
    assert named.name == "refused"
    assert parse_fault_spec("fiu:connect:error=ECONNREFUSED").fiu[0].function == "connect"
    p = parse_fault_spec("proxy:reset_after=4,latency_ms=2.5,half_open")
    assert p.proxy == ProxyFaults(reset_after=4, latency_ms=2.5, half_open=True)
    s = parse_fault_spec("squeeze")
    assert s.squeeze is not None
    assert s.squeeze.headroom == 2
    assert parse_fault_spec("squeeze:headroom=5").squeeze.headroom == 5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "spec", ["bogus:x", "proxy:nope=1", "fiu:connect", "fiu:accept4:error=EMFILE",
             "squeeze:headroom=2,extra=1", "syscall:connect"],
)
def test_bad_fault_specs(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_fault_spec(spec)
