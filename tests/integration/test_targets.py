"""Following real processes by PID, name, cmdline, pidfile, cgroup and launch; restarts split."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fdguard.errors import UsageError
from fdguard.targets import LaunchedProcess, SpecKind, TargetSet, TargetSpec

SLEEPER = [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"]


def sleeper(tag: str) -> list[str]:
    # The tag makes the cmdline unique to this test run.
    return [*SLEEPER, tag]


def test_parse_specs() -> None:
    assert TargetSpec.parse("123") == TargetSpec(SpecKind.PID, "123")
    assert TargetSpec.parse("name:^node$").kind is SpecKind.NAME
    assert TargetSpec.parse("pidfile:/run/x.pid").label == "pidfile:/run/x.pid"
    for bad in ("nope:1", "pid:abc", "name:(", "name:", "cmdline"):
        with pytest.raises(UsageError):
            TargetSpec.parse(bad)


def test_pid_spec_follows_one_identity_until_it_exits(spawn) -> None:
    child = spawn(sleeper("x"))
    ts = TargetSet([TargetSpec.parse(str(child.pid))])
    [ch] = ts.refresh()
    assert ch.type == "start"
    assert ch.target.ref.pid == child.pid
    assert ch.target.command[-1] == "x"
    assert ts.refresh() == []
    child.proc.kill()
    child.proc.wait()
    [gone] = ts.refresh()
    assert gone.type == "exit"
    assert ts.finished


def test_cmdline_pattern_finds_all_and_pidfile_restart_splits(spawn, tmp_path: Path) -> None:
    tag = f"fdg-{uuid.uuid4().hex}"
    a = spawn(sleeper(tag))
    b = spawn(sleeper(tag))
    ts = TargetSet([TargetSpec(SpecKind.CMDLINE, tag)])
    found = {c.target.pid for c in ts.refresh()}
    assert found == {a.pid, b.pid}  # never the watcher itself, though its argv has no tag

    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{a.pid}\n")
    pf = TargetSet([TargetSpec(SpecKind.PIDFILE, str(pidfile))])
    [start] = pf.refresh()
    assert start.target.pid == a.pid
    # The service "restarts": the old process dies, a new one writes the pidfile.
    a.proc.kill()
    a.proc.wait()
    c = spawn(sleeper(tag))
    pidfile.write_text(f"{c.pid}\n")
    changes = pf.refresh()
    assert [x.type for x in changes] == ["exit", "restart"]
    assert changes[1].target.pid == c.pid
    assert changes[1].previous is not None
    assert changes[1].previous.ref == start.target.ref


def test_name_pattern_matches_comm(spawn) -> None:
    child = spawn(sleeper("y"))
    comm = Path(f"/proc/{child.pid}/comm").read_text().strip()
    ts = TargetSet([TargetSpec(SpecKind.NAME, f"^{comm}$")])
    assert child.pid in {c.target.pid for c in ts.refresh()}
    assert os.getpid() not in {t.pid for t in ts.current}


def test_lost_then_rescan_is_a_restart(spawn) -> None:
    tag = f"fdg-{uuid.uuid4().hex}"
    a = spawn(sleeper(tag))
    ts = TargetSet([TargetSpec(SpecKind.CMDLINE, tag)])
    [first] = ts.refresh()
    a.proc.kill()
    a.proc.wait()
    # The sampler notices the exit before the next rescan.
    assert [x.type for x in ts.lost(first.target.ref)] == ["exit"]
    b = spawn(sleeper(tag))
    [again] = ts.refresh()
    assert again.type == "restart"
    assert again.target.pid == b.pid
    assert again.previous is not None
    assert again.previous.pid == a.pid


@pytest.fixture
def cgroup() -> Iterator[Path]:
    path = Path("/sys/fs/cgroup/unified") / f"fdguard-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    path.rmdir()


def test_cgroup_spec_lists_its_members(cgroup: Path, spawn) -> None:
    child = spawn(sleeper("z"))
    (cgroup / "cgroup.procs").write_text(str(child.pid))
    # Given as the path /proc/PID/cgroup shows on its "0::" line.
    assert Path(f"/proc/{child.pid}/cgroup").read_text().endswith(f"0::/{cgroup.name}\n")
    ts = TargetSet([TargetSpec(SpecKind.CGROUP, f"/{cgroup.name}")])
    assert [c.target.pid for c in ts.refresh()] == [child.pid]
    child.proc.kill()
    child.proc.wait()


def test_launched_command_is_followed_and_stopped() -> None:
    lp = LaunchedProcess([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ts = TargetSet([lp.spec])
        [ch] = ts.refresh()
        assert ch.target.pid == lp.pid
    finally:
        status = lp.stop(grace=5.0)
    assert status == -15
