"""Matching against kind counts recorded in a real SQLite store (fdguard.store)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fdguard.cli.main import cli
from fdguard.known import observe_history, parse_version, rank
from fdguard.known.match import FITS
from fdguard.model import ProcessRef
from fdguard.store import Store

# A PID that cannot be running: the kernel's pid_max is at most 2**22.
GONE = 4_999_999


def test_history_rows_give_growth_from_first_to_last_moment() -> None:
    rows = [
        (100.0, "kind", "epoll", 1),
        (100.0, "kind", "pipe", 2),
        (160.0, "kind", "epoll", 2),
        (160.0, "kind", "pipe", 2),
        (220.0, "kind", "epoll", 4),
        (220.0, "kind", "pipe", 2),
        (220.0, "tcp_state", "CLOSE", 1),
    ]
    obs = observe_history(rows)
    assert dict(obs.growth) == {"epoll": 3, "pipe": 0, "tcp:CLOSE": 1}
    assert obs.window == "120 s of recorded history"
    assert rank(obs, parse_version("1.48.0"))[0].bug.id == "loop-init-epoll-leak"


def test_one_recorded_moment_measures_nothing() -> None:
    obs = observe_history([(1.0, "kind", "epoll", 9)])
    assert obs.growth == ()
    assert observe_history([]).window == "no recorded kind counts"


def _store(path: Path) -> None:
    with Store(path) as store:
        tid = store.target_id(ProcessRef(GONE, 77), ("svc",), 0.0)
        for i, epolls in enumerate([1, 2, 3, 5]):
            store.add_kind_counts(tid, 10.0 * i, {"epoll": epolls, "eventfd": 1, "pipe": 2})


def test_cli_weighs_a_stores_history_for_a_gone_process(tmp_path: Path) -> None:
    db = tmp_path / "fd.db"
    _store(db)
    res = CliRunner().invoke(
        cli, ["known", str(GONE), "--store", str(db), "--libuv", "1.44.2", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["observation"]["growth"] == {"epoll": 4}
    top = doc["candidates"][0]
    assert top["id"] == "loop-init-epoll-leak"
    assert top["score"] >= FITS


def test_cli_without_a_version_says_the_process_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "fd.db"
    _store(db)
    res = CliRunner().invoke(cli, ["known", str(GONE), "--store", str(db), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["libuv_version"] is None
    assert any("not detected" in n for n in doc["notes"])
    assert doc["candidates"][0]["carried"] is None


def test_cli_store_errors_are_usage_errors(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["known", "1", "--store", str(tmp_path / "none.db")])
    assert res.exit_code == 2
    db = tmp_path / "fd.db"
    _store(db)
    res = CliRunner().invoke(cli, ["known", "12345", "--store", str(db)])
    assert res.exit_code == 2
    assert "no record of pid" in res.output
