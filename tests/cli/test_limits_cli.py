"""`fdguard limits` through the real CLI (in-process) against a real child."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from fdguard.cli.main import cli
from fdguard.store import Store

_CHILD = "import sys; print('ready', flush=True); sys.stdin.read()"


def _child(spawn: Callable[..., object], soft: int) -> int:
    child = spawn(["sh", "-c", f'ulimit -Sn {soft}; ulimit -Hn 4000; exec "$0" -c "$1"',
                   sys.executable, _CHILD])
    return child.pid  # type: ignore[attr-defined, no-any-return]


def test_limits_shows_soft_hard_and_usage(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 200)
    res = CliRunner().invoke(cli, ["limits", str(pid)])
    assert res.exit_code == 0, res.output
    assert "soft 200  hard 4000" in res.output
    res = CliRunner().invoke(cli, ["limits", "show", "--json", str(pid)])
    doc = json.loads(res.output)
    assert doc["limits"] == {"soft": 200, "hard": 4000}
    assert doc["pid"] == pid


def test_limits_raise_prints_what_it_did_warns_and_records(
    spawn: Callable[..., object], tmp_path: Path
) -> None:
    pid = _child(spawn, 200)
    db = tmp_path / "fd.db"
    res = CliRunner().invoke(cli, ["limits", "raise", str(pid), "--to", "1000", "--store",
                                   str(db)])
    assert res.exit_code == 0, res.output
    assert f"pid {pid}: RLIMIT_NOFILE soft 200 -> 1000, hard 4000 -> 4000" in res.stdout
    assert "only buys time" in res.stderr
    with open(f"/proc/{pid}/limits") as f:
        line = next(ln for ln in f if ln.startswith("Max open files"))
    assert line.split()[3:5] == ["1000", "4000"]
    with Store(db) as store:
        (ev,) = store.events()
        (target,) = store.targets()
    assert ev.type == "limit_change"
    assert ev.data["before"] == {"soft": 200, "hard": 4000}
    assert ev.data["after"] == {"soft": 1000, "hard": 4000}
    assert target.ref.pid == pid


def test_limits_raise_with_observe_gives_an_eta_and_json(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 200)
    res = CliRunner().invoke(
        cli, ["limits", "raise", str(pid), "--to", "hard", "--observe", "0.2", "--json",
              "--no-store"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["after"] == {"soft": 4000, "hard": 4000}
    assert doc["rate_per_hour"] is not None


def test_limits_raise_above_hard_is_a_usage_error(spawn: Callable[..., object]) -> None:
    pid = _child(spawn, 200)
    res = CliRunner().invoke(cli, ["limits", "raise", str(pid), "--to", "9000"])
    assert res.exit_code == 2
    assert "--allow-hard" in res.stderr


def test_limits_of_a_missing_process() -> None:
    res = CliRunner().invoke(cli, ["limits", "999999999"])
    assert res.exit_code == 3
