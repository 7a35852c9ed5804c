"""The C reproducer of every catalogue scenario, compiled with its one-line build command and run
on its own against Debian's libuv 1.44.2, prints the same per-iteration fd deltas and the same
libuv outcomes (error names, statuses) as `fdguard lab run` of that scenario on the same libuv.

The outcomes are what make the comparison bite where 1.44.2 does not leak (deltas all zero): they
show the C program provoked the same error on the same call (EMFILE under the squeezed fd table,
EADDRINUSE, EACCES as nobody, ECANCELED on a closed pending connect...). A scenario that aborts
inside libuv aborts the reproducer with the same signal after the same counts.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from fdguard.lab.repro import supported, write
from fdguard.lab.runner import Verdict, run_scenario
from fdguard.lab.scenarios import CATALOGUE
from fdguard.lab.versions import resolve

N = 4
# Scenarios that abort inside Debian's libuv (assertions): a crash, in the lab and in C.
ABORTS = {"tcp-close-twice", "loop-init-enomem"}
# Compared in test_lab_real.py against the releases where they leak.
ELSEWHERE = {"loop-init-emfile", "libuv-load-unload", "pipe-ipc-queue-enomem"}
# ENFILE variants run under strace in the lab; their C is the EMFILE twin's (test_lab_enfile_real).
INJECTED = {n for n, s in CATALOGUE.items() if s.inject}


def _build(scenario: str, out: Path) -> Path:
    r = write(scenario, out)
    proc = subprocess.run(shlex.split(r.build_command), cwd=out, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    return out / "repro"


def _run(exe: Path, library: Path) -> tuple[int, tuple[int, ...], tuple[str, ...], str]:
    proc = subprocess.run([str(exe), str(library), str(N)], capture_output=True, text=True,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)
    iters = [line.split(maxsplit=6) for line in proc.stdout.splitlines()
             if line.startswith("iter ")]
    deltas = tuple(int(f[5]) for f in iters)
    outcomes = tuple(dict.fromkeys(f[6] if len(f) > 6 else "" for f in iters))
    return proc.returncode, deltas, outcomes, proc.stdout + proc.stderr


def test_every_catalogue_scenario_has_a_c_reproducer() -> None:
    assert set(supported()) == set(CATALOGUE)


@pytest.mark.parametrize("scenario", sorted(set(supported()) - ABORTS - ELSEWHERE - INJECTED))
def test_reproducer_prints_the_lab_deltas_and_outcomes_on_debian_libuv(
    scenario: str, tmp_path: Path
) -> None:
    system = resolve("system")
    exe = _build(scenario, tmp_path)
    lab = run_scenario(scenario, system, iterations=N)
    assert lab.verdict in (Verdict.LEAK, Verdict.NO_LEAK), lab
    before = set(Path("/tmp").glob("fdguard-repro-*"))
    rc, deltas, outcomes, out = _run(exe, system.path)
    assert set(Path("/tmp").glob("fdguard-repro-*")) <= before  # its scratch dir is removed
    assert rc == (1 if lab.verdict is Verdict.LEAK else 0), out
    assert len(deltas) == N, out
    assert deltas == lab.deltas, out
    assert outcomes == lab.outcomes, out
    assert f"scenario {scenario}\n" in out
    assert "libuv 1.44.2" in out
    assert f"verdict {lab.verdict}" in out
    assert f"expected: {CATALOGUE[scenario].expect}".replace('"', "'") in out


@pytest.mark.parametrize("scenario", sorted(ABORTS))
def test_reproducer_aborts_where_the_lab_run_crashes(scenario: str, tmp_path: Path) -> None:
    system = resolve("system")
    exe = _build(scenario, tmp_path)
    lab = run_scenario(scenario, system, iterations=N)
    assert (lab.verdict, lab.signal) == (Verdict.CRASH, "SIGABRT"), lab
    rc, deltas, outcomes, out = _run(exe, system.path)
    assert rc == -signal.SIGABRT, out
    assert deltas == lab.deltas, out
    assert outcomes == lab.outcomes, out
