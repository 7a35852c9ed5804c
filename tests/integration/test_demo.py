"""`fdguard demo` end to end through the real CLI: a real Node.js service leaks, is watched,
explained and traced (and, with --guard, kept up by the real supervisor), the report is
written, and everything the demo started or created is gone afterwards -- in under two
minutes."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fdguard.cli.main import cli
from fdguard.report import SECTIONS


def _run(out: Path, *args: str) -> tuple[str, float]:
    start = time.monotonic()
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), *args])
    elapsed = time.monotonic() - start
    assert res.exit_code == 0, res.output
    return res.output, elapsed


def _check(output: str, out: Path, node: str, steps: int, *, emfile: bool = True) -> str:
    # Every step was announced, in order, then the cleanup and the report's path.
    seen = [int(m) for m in re.findall(rf"^(\d)/{steps} ", output, re.M)]
    assert sorted(set(seen)) == list(range(1, steps + 1))
    assert seen == sorted(seen)
    assert "leak detected" in output
    assert f"Open the report: {out / 'report.md'}" in output
    assert output.rstrip().splitlines()[-1].startswith("On your own services: `fdguard top`")
    tmp = re.search(r"to (/\S+)/service\.js", output)
    assert tmp is not None
    assert not Path(tmp.group(1)).exists(), "the demo left its temporary directory"
    started = re.search(r"started it: pid (\d+)", output)
    assert started is not None
    assert not Path(f"/proc/{started.group(1)}").exists(), "the demo left its service running"

    md = (out / "report.md").read_text()
    for s in SECTIONS:
        assert f"\n## {s}\n" in md
    own = subprocess.run([node, "-p", "process.versions.uv"], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert f"| libuv version | {own} |" in md
    # The story is all there: the verdict, the leaking kind, its birth certificate, the
    # EMFILE its users saw, and nothing left unchecked.
    assert "Leak verdict: +" in md
    assert "| file |" in md
    assert "uv__fs_work" in md
    unchecked = re.findall(r"^- \[ \] (.*)$", md, re.M)
    if emfile:
        assert "EMFILE" in md
        assert unchecked == []
    else:
        assert [u.split(" -- ")[0] for u in unchecked] == ["error logs"]
    for name in ("report.html", "issue.md", "fd-series.png", "fd-series.svg"):
        assert (out / name).is_file()
    return md


@pytest.mark.node
@pytest.mark.slow
def test_demo_end_to_end(node: str, tmp_path: Path) -> None:
    out = tmp_path / "demo-report"
    output, elapsed = _run(out)
    assert elapsed < 120
    md = _check(output, out, node, 7)
    assert "(running)" in md  # the report read the live service


@pytest.mark.node
@pytest.mark.slow
def test_demo_with_guard_keeps_the_service_up(node: str, tmp_path: Path) -> None:
    out = tmp_path / "demo-report"
    # Without the run to EMFILE: the guard's part is the point here.
    output, elapsed = _run(out, "--guard", "--no-emfile", "--trace-window", "2")
    assert elapsed < 120
    md = _check(output, out, node, 8, emfile=False)
    m = re.search(r"guard: (\d+) graceful restart\(s\), (\d+) requests answered, (\d+) failed",
                  output)
    assert m is not None
    assert int(m.group(1)) >= 2
    assert int(m.group(2)) > 100
    assert int(m.group(3)) == 0, "a graceful restart lost requests"
    # The report shows the containment and the restarts on the chart's series.
    assert "Containment meanwhile:" in md
    assert "fd share" in md
    assert "Restarts: pid " in md
    svg = (out / "fd-series.svg").read_text()
    assert '<g id="fd-total-1">' in svg
