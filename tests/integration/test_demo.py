"""`fdguard demo` end to end through the real CLI: a real Node.js service leaks, is watched,
explained and traced, the report is written, and everything the demo started or created is
gone afterwards -- in under two minutes."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fdguard.cli.main import cli
from fdguard.report import SECTIONS


@pytest.mark.node
@pytest.mark.slow
def test_demo_end_to_end(node: str, tmp_path: Path) -> None:
    out = tmp_path / "demo-report"
    start = time.monotonic()
    res = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    elapsed = time.monotonic() - start
    assert res.exit_code == 0, res.output
    assert elapsed < 120
    # Every step was announced, in order, then the cleanup and the report's path.
    steps = [int(m) for m in re.findall(r"^(\d)/7 ", res.output, re.M)]
    assert steps == [1, 2, 3, 4, 5, 6, 7]
    assert "leak detected" in res.output
    assert f"Open the report: {out / 'report.md'}" in res.output
    tmp = re.search(r"to (/\S+)/service\.js", res.output)
    assert tmp is not None
    assert not Path(tmp.group(1)).exists(), "the demo left its temporary directory"
    pid = int(re.search(r"started it: pid (\d+)", res.output).group(1))  # type: ignore[union-attr]
    assert not Path(f"/proc/{pid}").exists(), "the demo left its service running"

    md = (out / "report.md").read_text()
    for s in SECTIONS:
        assert f"\n## {s}\n" in md
    own = subprocess.run([node, "-p", "process.versions.uv"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert f"| libuv version | {own} |" in md
    # The story is all there: the verdict, the leaking kind, its birth certificate, the
    # EMFILE its users saw, and nothing left unchecked but the optional parts.
    assert "Leak verdict: +" in md
    assert "| file |" in md
    assert "uv__fs_work" in md
    assert "EMFILE" in md
    assert "- [ ]" not in md
    for name in ("report.html", "issue.md", "fd-series.png", "fd-series.svg"):
        assert (out / name).is_file()
