"""parse_stat and parse_limits over /proc samples captured on a real kernel (tests/data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fdguard.errors import ProcfsFormatError
from fdguard.model import Limits
from fdguard.procfs.process import ProcStat, parse_limits, parse_stat

DATA = Path(__file__).parent.parent / "data" / "proc"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads((DATA / "manifest.json").read_text())  # type: ignore[no-any-return]


def test_stat_with_spaces_and_parentheses_in_comm(manifest: dict[str, Any]) -> None:
    stat = parse_stat((DATA / "stat").read_bytes())
    assert stat == ProcStat(pid=12929, comm="x) (y z", state="R", ppid=12888, start_time=45403)
    assert stat.comm == manifest["comm"]
    assert stat.pid == manifest["pid"]
    assert stat.ppid == manifest["ppid"]


def test_stat_plain_agrees_with_the_renamed_one() -> None:
    plain = parse_stat((DATA / "stat_plain").read_bytes())
    renamed = parse_stat((DATA / "stat").read_bytes())
    assert plain.comm == "python3"
    # Same process, same start time: only the name differs.
    assert (plain.pid, plain.ppid, plain.start_time) == (
        renamed.pid,
        renamed.ppid,
        renamed.start_time,
    )


def test_stat_comm_that_looks_like_fields() -> None:
    data = b"77 (a) R 1 2 3 (b) S 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 99 23\n"
    stat = parse_stat(data)
    assert stat.comm == "a) R 1 2 3 (b"
    assert stat.state == "S"
    assert stat.ppid == 5
    assert stat.start_time == 99


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"12 no parentheses here",
        b"12 (name) R 1",  # too few fields
        b"abc (name) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
        b"12 (name) R x 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
        b"12 )name( R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    ],
)
def test_malformed_stat_names_file_and_line(data: bytes) -> None:
    with pytest.raises(ProcfsFormatError) as info:
        parse_stat(data, "/fake/12/stat")
    assert info.value.source == "/fake/12/stat"
    assert info.value.line == 1
    assert "/fake/12/stat:1" in str(info.value)


def test_limits_from_sample(manifest: dict[str, Any]) -> None:
    limits = parse_limits((DATA / "limits").read_bytes())
    assert limits == Limits(soft=1000, hard=20000)
    assert [limits.soft, limits.hard] == manifest["nofile"]
    # The sample also holds 'unlimited' in other rows; they must not confuse the parser.
    assert b"unlimited" in (DATA / "limits").read_bytes()


def test_limits_unlimited_is_none() -> None:
    lines = (DATA / "limits").read_bytes().split(b"\n")
    patched = [
        b"Max open files            unlimited            unlimited            files     "
        if line.startswith(b"Max open files")
        else line
        for line in lines
    ]
    assert parse_limits(b"\n".join(patched)) == Limits(soft=None, hard=None)
    mixed = b"Max open files            1024                 unlimited            files\n"
    assert parse_limits(mixed) == Limits(soft=1024, hard=None)


def test_limits_bad_value_names_file_and_line() -> None:
    data = (DATA / "limits").read_bytes().replace(b"1000      ", b"lots      ", 1)
    with pytest.raises(ProcfsFormatError) as info:
        parse_limits(data, "/fake/1/limits")
    # "Max open files" is line 9 of /proc/PID/limits (after the header).
    assert (info.value.source, info.value.line) == ("/fake/1/limits", 9)
    assert "/fake/1/limits:9" in str(info.value)


def test_limits_short_line_names_file_and_line() -> None:
    with pytest.raises(ProcfsFormatError) as info:
        parse_limits(b"Limit  Soft Limit\nMax open files   1024\n", "lim")
    assert (info.value.source, info.value.line) == ("lim", 2)


def test_limits_missing_line() -> None:
    data = b"\n".join(
        line
        for line in (DATA / "limits").read_bytes().split(b"\n")
        if not line.startswith(b"Max open files")
    )
    with pytest.raises(ProcfsFormatError) as info:
        parse_limits(data, "lim")
    assert info.value.source == "lim"
    assert info.value.line is None
    assert "Max open files" in str(info.value)
