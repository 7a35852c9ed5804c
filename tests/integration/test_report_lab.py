"""A report carrying what the real `fdguard lab` produced: its C reproducer (which, taken back
out of the report, builds and reproduces the leak against Debian's libuv) and its per-libuv
verdicts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from click.testing import CliRunner

from fdguard.cli.main import cli
from tests.unit.test_report_writer import _store

SCENARIO = "loop-init-emfile"
SYSTEM_LIBUV = "/usr/lib/x86_64-linux-gnu/libuv.so.1"


def test_lab_reproducer_and_runs_in_the_report(tmp_path: Path) -> None:
    runner = CliRunner()
    repro_dir = tmp_path / "repro"
    res = runner.invoke(cli, ["lab", "repro", SCENARIO, "--out", str(repro_dir)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["lab", "run", SCENARIO, "--libuv", "system", "--libuv", "uvloop",
                              "-n", "5", "--json"])
    assert res.exit_code in (0, 10), res.output
    runs = tmp_path / "runs.json"
    runs.write_text(res.output)

    db = tmp_path / "fd.db"
    _store(db)
    out = tmp_path / "report"
    res = runner.invoke(cli, ["report", "--from-store", "svc", "--store", str(db),
                              "--lab", str(repro_dir), "--lab", str(runs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text()
    assert "From `fdguard lab repro` (repro)." in md
    assert "- [x] minimal reproducer" in md
    # The lab's verdicts per libuv: Debian's 1.44.2 leaks the epoll fd, uvloop's copy does not.
    assert re.search(r"\| loop-init-emfile \| system \| 1\.44\.2 \| leak \| 4 over 5 "
                     r"iterations \| epoll \+4 \|", md)
    assert re.search(r"\| loop-init-emfile \| uvloop \| 1\.\d+\.\d+ \| no-leak \|", md)

    # Take the reproducer back out of the report, build it as the report says, run it.
    work = tmp_path / "from-report"
    work.mkdir()
    for name in ("repro.c", "build.sh"):
        block = re.search(rf"`{re.escape(name)}`:\n\n```\w*\n(.*?)\n```", md, re.S)
        assert block is not None, name
        (work / name).write_text(block.group(1) + "\n")
    build = re.search(r"Build:\n\n```sh\n(.*?)\n```", md, re.S)
    run = re.search(r"Run:\n\n```sh\n(.*?)\n```", md, re.S)
    assert build is not None
    assert run is not None
    assert build.group(1).startswith("sh build.sh")
    assert run.group(1) == "./repro /path/to/libuv.so [iterations]"
    res_b = subprocess.run(["sh", "-c", build.group(1)], cwd=work, capture_output=True,
                           text=True, timeout=60, check=False)
    assert res_b.returncode == 0, res_b.stderr
    res_r = subprocess.run(["./repro", SYSTEM_LIBUV, "5"], cwd=work, capture_output=True,
                           text=True, timeout=60, check=False)
    assert res_r.returncode == 1, res_r.stdout + res_r.stderr  # 1: the leak reproduced
