"""The stress verdict (CPython-style refleak rule, made robust to noise) and its bookkeeping."""

from __future__ import annotations

import pytest

from fdguard.errors import UsageError
from fdguard.model import Fd, FdKind, Limits, ProcessRef, Snapshot, TcpState
from fdguard.stress import (
    BASELINE,
    FaultConfig,
    RunPolicy,
    Scenario,
    Service,
    Workload,
    growth,
    judge,
    new_fds,
    settle,
)


@pytest.mark.parametrize(
    ("deltas", "leak"),
    [
        ((5, 5, 5), True),  # a steady leak
        ((1, 1, 1), True),  # one fd per round is still a leak
        ((0, 0, 0), False),  # healthy
        ((3, 0, 0), False),  # a one-time cache after the warm-up
        ((0, 1, 0), False),  # noise
        ((8, -8, 1), False),  # CPython's bpo-30776 false positive
        ((1, -1, 1, -1), False),  # a connection in flight at sampling time
        ((1, 1), True),
        ((1,), False),  # below min_growth
        ((), False),
    ],
)
def test_judge_follows_the_all_rounds_grew_rule(deltas: tuple[int, ...], leak: bool) -> None:
    assert judge(deltas, max_zero_rounds=0, min_growth=2).leak is leak


def test_judge_tolerates_flat_rounds_for_slow_leaks_only_when_asked() -> None:
    slow = (1, 0, 1, 1, 0, 1)
    assert not judge(slow, max_zero_rounds=0, min_growth=2).leak
    verdict = judge(slow, max_zero_rounds=2, min_growth=2)
    assert verdict.leak
    assert "4 of 6" in verdict.reason


def test_judge_explains_a_one_time_allocation() -> None:
    verdict = judge((3, 0, 0), min_growth=2)
    assert not verdict.leak
    assert "one-time" in verdict.reason


def _snap(fds: list[Fd]) -> Snapshot:
    return Snapshot(ProcessRef(1, 1), ("x",), Limits(1024, 4096), tuple(fds), 0.0, "test")


def _tcp(fd: int, ino: int, state: TcpState) -> Fd:
    return Fd(fd, FdKind.TCP, f"socket:[{ino}]", inode=ino, state=state, local="127.0.0.1:1")


def test_growth_by_kind_and_tcp_state_per_round() -> None:
    first = _snap([Fd(0, FdKind.CHARDEV, "/dev/null", inode=5), _tcp(3, 100, TcpState.LISTEN)])
    last = _snap(
        [
            Fd(0, FdKind.CHARDEV, "/dev/null", inode=5),
            _tcp(3, 100, TcpState.LISTEN),
            *[_tcp(10 + i, 200 + i, TcpState.CLOSE_WAIT) for i in range(6)],
            Fd(20, FdKind.FILE, "/tmp/spool", inode=9),
            Fd(21, FdKind.FILE, "/tmp/spool2", inode=10),
            Fd(22, FdKind.FILE, "/tmp/spool3", inode=11),
        ]
    )
    by_kind, by_state = growth(first, last, rounds=3)
    assert by_kind == {"file": 1.0, "tcp": 2.0}
    assert by_state == {"tcp:CLOSE-WAIT": 2.0}
    leaked = new_fds(first, last)
    assert [f.fd for f in leaked] == [10, 11, 12, 13, 14, 15, 20, 21, 22]
    assert new_fds(first, last, limit=2) == leaked[:2]


def test_new_fds_sees_a_reused_fd_number_as_new() -> None:
    first = _snap([Fd(7, FdKind.FILE, "/a", inode=1)])
    last = _snap([Fd(7, FdKind.FILE, "/b", inode=2)])
    assert [f.target for f in new_fds(first, last)] == ["/b"]


def test_policy_and_workload_reject_nonsense() -> None:
    with pytest.raises(UsageError):
        RunPolicy(rounds=0)
    with pytest.raises(UsageError):
        RunPolicy(rounds=3, max_zero_rounds=3)
    with pytest.raises(UsageError):
        Workload(mode="flood")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        Workload(connections=0)


def test_scenario_runs_the_baseline_first_unless_disabled() -> None:
    fault = FaultConfig("x", proxy=None)
    sc = Scenario("s", Service(("true",)), faults=(fault,))
    assert sc.configs == (BASELINE, fault)
    assert not sc.uses_proxy
    sc = Scenario("s", Service(("true",)), faults=(fault,), policy=RunPolicy(baseline=False))
    assert sc.configs == (fault,)


class _Clock:
    """A manual clock: sleep advances time; counts come from a script."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_settle_waits_until_the_count_stops_moving(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    # The count falls while sockets close, then holds.
    script = iter([12, 11, 11, 10, *([9] * 1000)])
    monkeypatch.setattr("fdguard.stress.count", lambda _pid: next(script))
    monkeypatch.setattr("fdguard.stress.read_run_state", lambda _pid: "S")
    assert settle(1, clock, settle_ms=100, timeout_s=5) == 9
    assert 0.1 <= clock.now < 0.2


def test_settle_is_bounded_when_the_count_never_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    ticks = iter(range(10_000))
    monkeypatch.setattr("fdguard.stress.count", lambda _pid: next(ticks))
    monkeypatch.setattr("fdguard.stress.read_run_state", lambda _pid: "S")
    settle(1, clock, settle_ms=100, timeout_s=2)
    assert clock.now == pytest.approx(2.0, abs=0.02)


def test_duration_turns_rounds_into_a_minimum_and_stays_bounded() -> None:
    fixed = RunPolicy(rounds=3)
    assert [fixed.more_rounds(m, 1e9) for m in range(5)] == [True, True, True, False, False]
    soak = RunPolicy(rounds=3, duration_s=60)
    assert soak.more_rounds(2, 100.0)  # the minimum first
    assert soak.more_rounds(3, 59.0)
    assert not soak.more_rounds(3, 60.0)
    assert not soak.more_rounds(10_000, 1.0)  # never unbounded
    with pytest.raises(UsageError):
        RunPolicy(duration_s=0)


def test_settle_waits_while_the_service_is_runnable(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr("fdguard.stress.count", lambda _pid: 7)
    # Starved for 0.5 s (runnable, count still), then idle.
    monkeypatch.setattr("fdguard.stress.read_run_state",
                        lambda _pid: "R" if clock.now < 0.5 else "S")
    assert settle(1, clock, settle_ms=100, timeout_s=5) == 7
    assert 0.5 <= clock.now < 0.7
