"""Opt-in (FDGUARD_SLOW=1 and FDGUARD_LIBUV_GIT=<a libuv git checkout or bare mirror>): bisect a
real libuv history down to the commit that fixed the SCM_RIGHTS ENOMEM fd leak, then confirm both
ends with the compiled C reproducer.

It is not part of the default run and not counted as coverage: it needs libuv's git history, which
the package registries do not carry, and builds four or five commits with cmake (about 30 s on two
cores). The default suite covers commit bisection against a generated git history
(test_lab_real.py::test_bisect_down_to_the_commit_with_cached_builds).

Ground truth: 4fce06ec9 "unix: fix fd leaks in SCM_RIGHTS error path (#4358)", first in 1.49.0;
its first parent still leaks (the leak came with ff7dcd265 in 1.45.0).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tarfile
from pathlib import Path

import pytest

from fdguard.lab.bisect import bisect_commits
from fdguard.lab.build import build
from fdguard.lab.repro import write
from fdguard.lab.runner import Verdict

FIX = "4fce06ec96283225ceedbf181d7211830c173ee3"
SCENARIO = "pipe-ipc-queue-enomem"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FDGUARD_SLOW") != "1",
                       reason="opt-in: set FDGUARD_SLOW=1 and FDGUARD_LIBUV_GIT"),
]


@pytest.fixture(scope="module")
def libuv_git() -> Path:
    path = os.environ.get("FDGUARD_LIBUV_GIT")
    assert path, "FDGUARD_SLOW=1 needs FDGUARD_LIBUV_GIT=<a libuv git checkout or bare mirror>"
    return Path(path)


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(_git_dir(repo)), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def _library(repo: Path, commit: str, tmp: Path, cache: Path) -> Path:
    """The cached build of `commit` (the bisect built it already)."""
    archive = tmp / f"{commit}.tar"
    archive.write_bytes(subprocess.run(
        ["git", "--git-dir", str(_git_dir(repo)), "archive", commit], check=True,
        capture_output=True).stdout)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / commit, filter="data")
    built = build(tmp / commit, cache_dir=cache, commit=commit)
    assert built.cached
    return built.library


def test_bisect_names_the_fixing_commit_and_the_reproducer_confirms_both_ends(
    libuv_git: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    # Four commits before the fix and two after it on the first-parent line to 1.49.0.
    old = f"{FIX}~4"
    new = _git(libuv_git, "rev-list", "--first-parent", "--reverse", f"{FIX}..v1.49.0").split()[1]
    cb = bisect_commits(SCENARIO, libuv_git, old, new, iterations=4, cache_dir=cache)
    assert (cb.old_verdict, cb.new_verdict) == (Verdict.LEAK, Verdict.NO_LEAK)
    assert cb.first_new.commit == FIX
    assert cb.first_new.subject == "unix: fix fd leaks in SCM_RIGHTS error path (#4358)"
    assert cb.last_old.commit == _git(libuv_git, "rev-parse", f"{FIX}~1")
    assert cb.candidates == 6
    again = bisect_commits(SCENARIO, libuv_git, old, new, iterations=4, cache_dir=cache)
    assert again.first_new.commit == FIX
    assert all(p.cached for p in again.probes)

    out = tmp_path / "repro"
    r = write(SCENARIO, out)
    subprocess.run(shlex.split(r.build_command), cwd=out, check=True, capture_output=True)
    for commit, leaks in ((cb.last_old.commit, True), (FIX, False)):
        lib = _library(libuv_git, commit, tmp_path, cache)
        proc = subprocess.run([str(out / "repro"), str(lib), "4"], capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == (1 if leaks else 0), proc.stdout + proc.stderr
        deltas = [int(line.split()[5]) for line in proc.stdout.splitlines()
                  if line.startswith("iter ")]
        assert deltas == ([0, 1, 2, 3] if leaks else [0, 0, 0, 0]), proc.stdout
        assert proc.stdout.count("read=ENOMEM") == 4
