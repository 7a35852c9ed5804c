"""fdguard.survey over the committed fake /proc tree: ranking, what is left out, the JSON."""

from __future__ import annotations

import re
from pathlib import Path

from fdguard.survey import FdUsage, HostSurvey, rank_key, survey

FAKE = str(Path(__file__).parent.parent / "data" / "fakeproc")


def test_the_fake_tree_is_surveyed_and_its_odd_processes_accounted_for() -> None:
    s = survey(root=FAKE)
    # 7777778's limits line is malformed: unreadable, not guessed. (The fake zombie
    # 7777779 has an fd entry, which no kernel shows: tests/cli/test_top_cli.py leaves
    # out a real zombie.)
    assert s.processes[0] == FdUsage(7777777, "node server", 20, 1024, 4096)
    assert 7777778 not in {p.pid for p in s.processes}
    assert s.unreadable == 1
    assert s.file_nr is None  # no sys/fs/file-nr in the fake tree
    assert s.to_json()["processes"][0] == (
        {"pid": 7777777, "name": "node server", "count": 20, "soft_limit": 1024,
         "hard_limit": 4096, "share": round(20 / 1024, 4)}
    )
    assert survey(root=FAKE, name=re.compile("^nginx")).processes == ()


def _usage(pid: int, count: int, soft: int | None) -> FdUsage:
    return FdUsage(pid, f"p{pid}", count, soft, soft)


def test_ranking_by_share_puts_unlimited_last_and_by_count_ignores_limits() -> None:
    ps = [_usage(1, 900, None), _usage(2, 50, 64), _usage(3, 500, 4096), _usage(4, 60, 64)]
    by_usage = sorted(ps, key=lambda p: rank_key(p, "usage"))
    assert [p.pid for p in by_usage] == [4, 2, 3, 1]
    by_count = sorted(ps, key=lambda p: rank_key(p, "count"))
    assert [p.pid for p in by_count] == [1, 3, 4, 2]


def test_host_table_share_and_json() -> None:
    s = HostSurvey(1.0, (_usage(2, 50, 64),), 0, (1500, 0, 100_000))
    assert s.file_share == 0.015
    doc = s.to_json(top=0)
    assert doc["processes"] == []
    assert doc["surveyed"] == 1
    assert doc["system"] == {"allocated": 1500, "unused": 0, "file_max": 100_000}
