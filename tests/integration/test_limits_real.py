"""`raise_limit` against real child processes: /proc/PID/limits shows the change."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from fdguard.errors import UsageError
from fdguard.limits import LimitRefused, raise_limit, read_limits
from fdguard.procfs.process import parse_limits

# A child whose soft limit is lowered by its shell before it execs python.
_CHILD = "import sys; print('ready', flush=True); sys.stdin.read()"


def _child(spawn: Callable[..., object], soft: int, hard: int | None = None) -> int:
    hard_cmd = f"ulimit -Sn {soft}; ulimit -Hn {hard}; " if hard is not None else ""
    child = spawn(["sh", "-c", f'{hard_cmd}ulimit -Sn {soft}; exec "$0" -c "$1"',
                   sys.executable, _CHILD])
    return child.pid  # type: ignore[attr-defined, no-any-return]


def _proc_limits(pid: int) -> tuple[int | None, int | None]:
    with open(f"/proc/{pid}/limits", "rb") as f:
        lim = parse_limits(f.read())
    return lim.soft, lim.hard


def test_read_limits_of_a_real_child(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 256)
    rep = read_limits(pid)
    assert rep.limits.soft == 256
    assert rep.process.pid == pid
    assert 3 <= rep.count < 256
    assert rep.headroom == 256 - rep.count


def test_raise_soft_limit_of_a_real_child(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 256)
    _, hard = _proc_limits(pid)
    change = raise_limit(pid, 1024)
    assert change.before.soft == 256
    assert change.after.soft == 1024
    assert change.after.hard == hard
    assert _proc_limits(pid) == (1024, hard)
    assert change.gained == 768


def test_raise_to_hard(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 100, hard=2000)
    change = raise_limit(pid, "hard")
    assert _proc_limits(pid) == (2000, 2000)
    assert change.after.soft == 2000


def test_never_above_hard_without_the_flag(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 100, hard=2000)
    with pytest.raises(UsageError, match="above the hard limit"):
        raise_limit(pid, 5000)
    assert _proc_limits(pid) == (100, 2000)


def test_above_hard_with_the_flag_is_up_to_the_kernel(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 100, hard=2000)
    # The kernel decides: with CAP_SYS_RESOURCE the hard limit moves, without it EPERM.
    try:
        change = raise_limit(pid, 3000, allow_hard=True)
    except LimitRefused:
        assert _proc_limits(pid) == (100, 2000)
    else:
        assert change.after == change.after.__class__(3000, 3000)
        assert _proc_limits(pid) == (3000, 3000)


def test_lowering_is_refused(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 512)
    with pytest.raises(UsageError, match="refusing to lower"):
        raise_limit(pid, 256)
    assert _proc_limits(pid)[0] == 512


def test_same_value_changes_nothing(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 300)
    change = raise_limit(pid, 300)
    assert not change.changed
