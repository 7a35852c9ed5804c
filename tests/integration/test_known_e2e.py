"""End to end: a known libuv fd leak reproduced in a real process, named by `known`.

Debian 12's libuv (1.44.2) carries loop-init-epoll-leak (fixed in 1.51.0): a
uv_loop_init() that fails after creating its epoll fd (here: EMFILE under a
squeezed RLIMIT_NOFILE) leaks that epoll fd. A small C program on the system
libuv reproduces it; `known` must detect the version, list the bug as carried
and rank it first from the shape of the growth (epoll without eventfd or pipes).
The same squeeze in uvloop 0.23.0, which vendors libuv 1.52.1, leaks nothing and
`known` names nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from fdguard.cli.main import cli
from fdguard.known import known_for_pid, parse_version
from fdguard.known.match import FITS
from tests.conftest import PROCS, Child, python_proc, wait_line

TRIES = 5


@pytest.fixture(scope="module")
def squeeze_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler: scripts/setup.sh installs gcc")
    out = tmp_path_factory.mktemp("known") / "known_loop_init_squeeze"
    subprocess.run(
        [cc, "-O1", "-Wall", "-o", str(out), str(PROCS / "known_loop_init_squeeze.c"), "-luv"],
        check=True,
        capture_output=True,
    )
    return out


def _go(child: Child) -> Callable[[float], None]:
    """A `sleep` for known_for_pid that, instead of waiting, runs the squeeze and waits for it."""

    def run_squeeze(_seconds: float) -> None:
        assert child.proc.stdin is not None
        child.proc.stdin.write(b"go\n")
        child.proc.stdin.flush()
        done = wait_line(child.proc)
        assert done == f"done fails={TRIES} ok=0", done

    return run_squeeze


def test_debian_libuv_leaks_epoll_on_failed_loop_init_and_known_names_it(
    spawn: Callable[..., Child], squeeze_exe: Path
) -> None:
    child = spawn([str(squeeze_exe), str(TRIES)])
    version = parse_version(child.ready.split()[1])
    assert version < parse_version("1.51.0"), f"system libuv {version} has the fix already"

    report = known_for_pid(child.pid, interval=1.0, sleep=_go(child))

    assert report.version == version
    assert report.runtime is not None
    assert report.runtime["linkage"] == "shared"
    assert any("backported" in n for n in report.notes)
    assert "loop-init-epoll-leak" in {b.id for b in report.carried}
    assert report.observation is not None
    growth = dict(report.observation.growth)
    # 3 free fds: each failing init keeps its epoll fd until none is left.
    assert growth.get("epoll") == 3
    assert growth.get("eventfd", 0) == 0
    assert growth.get("pipe", 0) == 0
    top = report.candidates[0]
    assert top.bug.id == "loop-init-epoll-leak"
    assert top.score >= FITS
    assert any("epoll grew by 3" in e for e in top.evidence_for)
    assert str(top.bug.fixed_in) == "1.51.0"
    # Every other carried bug scores below it: the growth does not fit them.
    assert all(c.score < top.score for c in report.candidates[1:])


def test_known_cli_on_the_real_process_lists_the_carried_bug(
    spawn: Callable[..., Child], squeeze_exe: Path
) -> None:
    child = spawn([str(squeeze_exe), str(TRIES)])
    res = CliRunner().invoke(cli, ["known", str(child.pid), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["pid"] == child.pid
    assert doc["libuv_version"] == child.ready.split()[1]
    assert doc["runtime"]["name"] == "libuv"
    assert "loop-init-epoll-leak" in [b["id"] for b in doc["carried"]]
    assert doc["upgrade_to"] is not None


def test_uvloop_on_a_fixed_libuv_leaks_nothing_and_known_names_nothing(
    spawn: Callable[..., Child],
) -> None:
    child = spawn(python_proc("known_uvloop_squeeze.py", str(TRIES)))
    version = parse_version(child.ready.split()[1])
    # uvloop 0.23.0 (what setup installs today) vendors libuv 1.52.1, past the fix.
    assert version >= parse_version("1.51.0"), f"uvloop's libuv {version} predates the fix"

    report = known_for_pid(child.pid, interval=1.0, sleep=_go(child))

    assert report.version == version
    assert report.runtime is not None
    assert report.runtime["name"] == "uvloop"
    assert "loop-init-epoll-leak" not in {b.id for b in report.carried}
    assert report.observation is not None
    growth = dict(report.observation.growth)
    assert growth.get("epoll", 0) <= 0
    assert report.observation.total_growth == 0
    assert all(c.bug.id != "loop-init-epoll-leak" for c in report.candidates)
