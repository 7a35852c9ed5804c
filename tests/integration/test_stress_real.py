"""`fdguard.stress` against real leaking and healthy services (Node.js and uvloop).

Each server leaks on exactly one error path (tests/procs/stress_*_server.py):
- Node: an upstream connect that fails leaves the client socket in CLOSE-WAIT;
- uvloop: a client reset leaves the connection's spool file open.
The same shipped scenario (examples/scenarios/error_paths.toml: strace connect
fault, proxy reset, truncated request, slow network) must flag exactly that
configuration for the leaky build and nothing for the healthy one, and give
the same verdict when run again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fdguard.model import FdKind, TcpState
from fdguard.scenario import load_scenario
from fdguard.stress import StressEvent, run

ROOT = Path(__file__).parents[2]
SCENARIO = ROOT / "examples" / "scenarios" / "error_paths.toml"
PROCS = ROOT / "tests" / "procs"


def _argv(runtime: str, node: str | None, leaky: bool) -> list[str]:
    flag = ["--leaky"] if leaky else []
    if runtime == "node":
        assert node is not None
        return [node, str(PROCS / "stress_node_server.js"), *flag]
    return [sys.executable, str(PROCS / "stress_uvloop_server.py"), *flag]


def about(deltas: tuple[int, ...] | list[int], per_round: int) -> bool:
    """Every round grew, by `per_round` over the run give or take two: a loaded
    machine can starve the service past the settle time, moving a close or a
    leak from one round to the next, but not making fds appear or vanish."""
    total = per_round * len(deltas)
    return all(d >= 1 for d in deltas) and abs(sum(deltas) - total) <= 2


CASES = [
    ("node", True, {"connect-refused"}),
    ("node", False, set()),
    ("uvloop", True, {"client-reset"}),
    ("uvloop", False, set()),
]


@pytest.mark.slow
@pytest.mark.parametrize(("runtime", "leaky", "expected"), CASES,
                         ids=["node-leaky", "node-healthy", "uvloop-leaky", "uvloop-healthy"])
def test_stress_flags_exactly_the_leaking_fault_and_is_stable(
    runtime: str, leaky: bool, expected: set[str], node: str
) -> None:
    scenario = load_scenario(SCENARIO, command=_argv(runtime, node, leaky))
    verdicts = []
    for _ in range(2):
        events: list[StressEvent] = []
        result = run(scenario, on_event=events.append)
        names = [r.config.name for r in result.results]
        assert names == ["baseline", "connect-refused", "client-reset", "truncated-request",
                         "slow-network"]
        # Every configuration really ran its rounds; the driver was served except
        # where the proxy reset or cut every request.
        for r in result.results:
            assert r.error is None, r.error
            assert len(r.rounds) == 4
            served = sum(s.driver_ok for s in r.rounds)
            cut = r.config.name in ("client-reset", "truncated-request")
            # A loaded machine may time out a request or two (2 s each).
            assert served == 0 if cut else served >= 18, (r.config.name, r.rounds)
        assert [e.kind for e in events].count("done") == 5
        summary = [(r.config.name, r.deltas, [x.count for x in r.rounds], r.reason)
                   for r in result.results]
        assert set(result.leaking) == expected, summary
        verdicts.append({r.config.name: r.leak for r in result.results})
        by_name = {r.config.name: r for r in result.results}
        # The fault proxy really injected: every client-reset connection was reset.
        reset = by_name["client-reset"].proxy
        assert reset is not None
        assert reset.resets == reset.accepted == 20, reset
        if runtime == "node" and leaky:
            leak = by_name["connect-refused"]
            assert about(leak.deltas, 5), summary
            assert max(leak.growth_by_state, key=leak.growth_by_state.__getitem__) == (
                "tcp:CLOSE-WAIT"
            )
            assert abs(leak.growth_by_state["tcp:CLOSE-WAIT"] - 5) <= 0.7
            assert leak.leaked
            assert all(f.kind is FdKind.TCP and f.state is TcpState.CLOSE_WAIT
                       for f in leak.leaked)
        if runtime == "uvloop" and leaky:
            leak = by_name["client-reset"]
            assert about(leak.deltas, 5), summary
            assert abs(leak.growth_by_kind["file"] - 5) <= 0.7, leak.growth_by_kind
            assert all(f.kind is FdKind.FILE and "fdguard-spool" in (f.target or "")
                       for f in leak.leaked)
    assert verdicts[0] == verdicts[1], verdicts
