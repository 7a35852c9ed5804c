"""Find where a scenario's verdict changed: across builds, and down to the commit in a git checkout.

Across releases, every given libuv is run and the results ordered by version;
each place the verdict flips between neighbours is a transition (last leaking
and first clean, or the reverse).

Down to the commit, the search is `git bisect run`'s, but read-only on the
user's checkout: commits come from `git rev-list --first-parent OLD..NEW`,
each probed commit's tree is exported with `git archive` into a scratch
directory and built through the build cache (keyed by the tree's digest, so a
commit probed twice, or by an earlier bisect, is built once). HEAD, the index
and the work tree of the checkout are never touched, and it works on a bare
mirror too.
"""

from __future__ import annotations

import itertools
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fdguard.errors import LabBuildError, UsageError
from fdguard.lab.build import build, version_key
from fdguard.lab.runner import DEFAULT_ITERATIONS, ScenarioResult, Verdict, run_scenario
from fdguard.lab.versions import LibuvTarget


@dataclass(frozen=True)
class Transition:
    """Neighbouring versions (or commits) whose verdicts differ."""

    before: ScenarioResult
    after: ScenarioResult


@dataclass(frozen=True)
class ReleaseBisect:
    """A scenario run against every given libuv, oldest first, with the verdict flips."""

    scenario: str
    results: tuple[ScenarioResult, ...]
    transitions: tuple[Transition, ...]


def _comparable(v: Verdict) -> bool:
    return v in (Verdict.LEAK, Verdict.NO_LEAK, Verdict.CRASH)


def bisect_releases(
    scenario: str,
    targets: Sequence[LibuvTarget],
    *,
    iterations: int = DEFAULT_ITERATIONS,
    run: Callable[..., ScenarioResult] = run_scenario,
) -> ReleaseBisect:
    """Run `scenario` on each target and report where the verdict flips between versions."""
    results = [run(scenario, t, iterations=iterations) for t in targets]
    results.sort(key=lambda r: version_key(r.version or "0.0.0"))
    judged = [r for r in results if _comparable(r.verdict)]
    transitions = tuple(Transition(a, b) for a, b in itertools.pairwise(judged)
                        if a.verdict != b.verdict)
    return ReleaseBisect(scenario, tuple(results), transitions)


@dataclass(frozen=True)
class CommitProbe:
    """One commit built and run during a git bisect."""

    commit: str
    subject: str
    version: str
    verdict: Verdict
    cached: bool


@dataclass(frozen=True)
class CommitBisect:
    """The first commit whose verdict is the newer ref's, and the last one with the older's."""

    scenario: str
    old_ref: str
    new_ref: str
    old_verdict: Verdict
    new_verdict: Verdict
    last_old: CommitProbe
    first_new: CommitProbe
    probes: tuple[CommitProbe, ...]
    candidates: int


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "--git-dir", str(_git_dir(repo)), *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def _export(repo: Path, commit: str, dest: Path) -> None:
    archive = dest / "tree.tar"
    with archive.open("wb") as f:
        proc = subprocess.run(["git", "--git-dir", str(_git_dir(repo)), "archive", commit],
                              stdout=f, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise LabBuildError(f"git archive {commit} failed: {proc.stderr.decode()[-500:]}")
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "tree", filter="data")
    archive.unlink()


def bisect_commits(
    scenario: str,
    repo: str | Path,
    old_ref: str,
    new_ref: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    cache_dir: Path | None = None,
    jobs: int = 2,
) -> CommitBisect:
    """Binary-search the first-parent history OLD..NEW for the commit that changed the verdict.

    Raises:
        UsageError: OLD is not an ancestor of NEW, or both ends give the same verdict.
        LabBuildError: a probed commit does not build.
    """
    repo = Path(repo)
    old = _git(repo, "rev-parse", f"{old_ref}^{{commit}}").strip()
    new = _git(repo, "rev-parse", f"{new_ref}^{{commit}}").strip()
    if subprocess.run(["git", "--git-dir", str(_git_dir(repo)), "merge-base", "--is-ancestor",
                       old, new], check=False).returncode != 0:
        raise UsageError(f"{old_ref} is not an ancestor of {new_ref}")
    commits = _git(repo, "rev-list", "--reverse", "--first-parent", f"{old}..{new}").split()
    probes: dict[str, CommitProbe] = {}

    def probe(commit: str) -> CommitProbe:
        if commit in probes:
            return probes[commit]
        with tempfile.TemporaryDirectory(prefix="fdguard-bisect-") as tmp:
            _export(repo, commit, Path(tmp))
            built = build(Path(tmp) / "tree", cache_dir=cache_dir, jobs=jobs, commit=commit)
        target = LibuvTarget(built.version, built.library, "build")
        result = run_scenario(scenario, target, iterations=iterations)
        subject = _git(repo, "log", "-1", "--format=%s", commit).strip()
        p = CommitProbe(commit, subject, built.version, result.verdict, built.cached)
        probes[commit] = p
        return p

    first, last = probe(old), probe(new)
    if first.verdict == last.verdict:
        raise UsageError(f"{old_ref} and {new_ref} both give {first.verdict}: nothing to bisect")
    lo, hi = -1, len(commits) - 1  # commits[hi] has the new verdict; "commit -1" is old
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(commits[mid]).verdict == last.verdict:
            hi = mid
        else:
            lo = mid
    last_old = first if lo < 0 else probes[commits[lo]]
    return CommitBisect(scenario, old_ref, new_ref, first.verdict, last.verdict, last_old,
                        probes[commits[hi]], tuple(probes.values()), len(commits))
