"""`fdguard report` through the real CLI in-process: outputs, formats and usage errors."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fdguard.cli.main import cli
from tests.unit.test_report_writer import GONE_PID, _store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "fd.db"
    _store(path)
    return path


def test_report_from_store_writes_every_format(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["report", "--from-store", "svc", "--store", str(db),
                                   "--format", "github", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("report.md", "report.html", "issue.md", "fd-series.png", "fd-series.svg"):
        assert (out / name).is_file(), name
    assert f"report: {out / 'report.md'}" in res.output
    assert f"chart:  {out / 'fd-series.svg'}" in res.output
    assert "still missing: libuv version and runtime" in res.output
    md = (out / "report.md").read_text()
    assert f"pid {GONE_PID} -> {GONE_PID + 1}" in md


def test_report_by_target_id_and_pid(db: Path, tmp_path: Path) -> None:
    for spec in ("#1", str(GONE_PID)):
        out = tmp_path / f"out-{spec.strip('#')}"
        res = CliRunner().invoke(cli, ["report", "--from-store", spec, "--store", str(db),
                                       "--out", str(out)])
        assert res.exit_code == 0, res.output
        # Both name the first process: its series, without the later restart's.
        md = (out / "report.md").read_text()
        assert "150 samples" in md
        assert "Restarts:" not in md


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a PID or --from-store TARGET"),
        (["--from-store", "nope"], "no target 'nope'"),
        (["--from-store", "svc", "--redact-extra", "("], "not a regular expression"),
        (["1", "--trace", "{trace}", "--trace-for", "5s"], "not both"),
        (["0"], "positive"),
    ],
)
def test_usage_errors_exit_2(db: Path, tmp_path: Path, args: list[str], message: str) -> None:
    trace = tmp_path / "t.json"
    trace.write_text("{}")
    argv = ["report", *[a.replace("{trace}", str(trace)) for a in args], "--store", str(db),
            "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_from_store_without_any_store_is_a_usage_error(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    res = CliRunner().invoke(cli, ["report", "--from-store", "svc", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "give --store PATH" in res.output


def test_a_bad_saved_document_is_a_usage_error(db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "explain.json"
    bad.write_text("[1, 2]")
    res = CliRunner().invoke(cli, ["report", "--from-store", "svc", "--store", str(db),
                                   "--explain", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "is not a JSON object" in res.output


def test_report_on_a_live_process_without_a_store(spawn, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "no-store-here"))
    child = spawn([sys.executable, "-c",
                   "import sys, time; print('ready', flush=True); sys.stdin.read()"])
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["report", str(child.pid), "--trace-for", "500ms",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text()
    # Live facts are there; what only a recording gives is listed as missing.
    assert f"Target: pid {child.pid} (running)" in md
    assert re.search(r"\| RLIMIT_NOFILE of the target \| soft \d+, hard \d+ "
                     r"\(read from the live process\) \|", md)
    assert "still missing: libuv version and runtime" in res.output
    assert "fd series (monitoring data)" in res.output
    # A window was traced: the section is there (nothing leaked in it).
    assert "`fdguard trace` (attach, " in md
    assert not (out / "fd-series.png").exists()
