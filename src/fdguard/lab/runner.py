"""Run a lab scenario against one libuv in a child process; judge the counts: leak, no leak, crash.

The child (`fdguard.lab.child`) streams a JSON line per iteration, so a child
that aborts or segfaults mid-run still leaves every count taken before; its
death by signal is the verdict `crash`, with the signal's name. A child that
outlives its time is killed (with its process group: spawn scenarios start
grandchildren) and judged `timeout`.

The verdict compares the count after the last iteration with the count after
the first, warm-up iteration: libuv creates some fds once, on first use (the
loop's signal pipe, the async eventfd, inotify, the EMFILE reserve fd), and
those are not leaks. Any growth after warm-up is a leak, named per fd kind and
listed fd by fd from the two snapshots the child took.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fdguard.errors import ToolMissing, UsageError
from fdguard.lab.runtime import RUNTIME_CATALOGUE, run_runtime
from fdguard.lab.scenarios import CATALOGUE
from fdguard.lab.versions import LibuvTarget

DEFAULT_ITERATIONS = 10
DEFAULT_TIMEOUT = 30.0


class Verdict(enum.StrEnum):
    """How a scenario run ended."""

    LEAK = "leak"
    NO_LEAK = "no-leak"
    CRASH = "crash"
    TIMEOUT = "timeout"
    UNSUPPORTED = "unsupported"
    ERROR = "error"


@dataclass(frozen=True)
class LeakedFd:
    """An fd open after the last iteration that was not open after the warm-up one."""

    fd: int
    kind: str
    target: str | None


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario run against one libuv."""

    scenario: str
    libuv: str
    library: str
    version: str | None
    iterations: int  # completed
    counts: tuple[int, ...]  # after setup, then after each iteration
    outcomes: tuple[str, ...]  # distinct libuv outcomes, in order of appearance
    growth: int  # last count - count after the warm-up iteration
    growth_by_kind: tuple[tuple[str, int], ...]
    leaked: tuple[LeakedFd, ...]
    verdict: Verdict
    signal: str | None
    exit_status: int | None
    detail: str
    seconds: float

    @property
    def deltas(self) -> tuple[int, ...]:
        """Per-iteration counts relative to the warm-up iteration (the first is 0)."""
        if len(self.counts) < 2:
            return ()
        return tuple(c - self.counts[1] for c in self.counts[1:])

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "libuv": self.libuv, "library": self.library,
            "version": self.version, "verdict": str(self.verdict), "signal": self.signal,
            "exit_status": self.exit_status, "iterations": self.iterations,
            "counts": list(self.counts), "deltas": list(self.deltas), "growth": self.growth,
            "growth_by_kind": dict(self.growth_by_kind), "outcomes": list(self.outcomes),
            "leaked": [{"fd": f.fd, "kind": f.kind, "target": f.target} for f in self.leaked],
            "detail": self.detail, "seconds": round(self.seconds, 3),
        }


def _parse_lines(out: str) -> list[dict[str, Any]]:
    events = []
    for line in out.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                events.append(obj)
    return events


def judge(
    events: list[dict[str, Any]], returncode: int | None, timed_out: bool
) -> tuple[Verdict, str | None, str]:
    """The verdict of one child run from its events and how it exited (pure)."""
    kinds = {e.get("event") for e in events}
    if timed_out:
        return Verdict.TIMEOUT, None, ""
    if returncode is not None and returncode < 0:
        return Verdict.CRASH, signal.Signals(-returncode).name, ""
    if "unsupported" in kinds:
        return Verdict.UNSUPPORTED, None, next(e["detail"] for e in events
                                                if e.get("event") == "unsupported")
    if "error" in kinds:
        return Verdict.ERROR, None, next(e["detail"] for e in events if e.get("event") == "error")
    if "done" not in kinds:
        return Verdict.ERROR, None, f"child exited with status {returncode} before finishing"
    counts = [e["count"] for e in events if e.get("event") == "iter"]
    if len(counts) >= 2 and counts[-1] > counts[0]:
        return Verdict.LEAK, None, ""
    return Verdict.NO_LEAK, None, ""


def _fd_table(events: list[dict[str, Any]], when: str) -> dict[int, tuple[str, str | None]]:
    for e in events:
        if e.get("event") == "fds" and e.get("when") == when:
            return {int(fd): (kind, target) for fd, kind, target in e["fds"]}
    return {}


def run_scenario(
    name: str,
    target: LibuvTarget,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    timeout: float = DEFAULT_TIMEOUT,
    inject: tuple[str, str, int] | None = None,
) -> ScenarioResult:
    """Run scenario `name` `iterations` times against `target` in a child; never raises for
    what happens inside the child (a crash, a hang, a missing symbol are verdicts).

    `inject` = (syscall, errno, step) runs the child under strace failing that
    syscall inside the scenario's squeeze windows (see `strace_inject_prefix`)
    instead of squeezing the fd limit; it defaults to the scenario's own.

    Raises:
        UsageError: unknown scenario or fewer than 2 iterations.
    """
    if name not in CATALOGUE and name not in RUNTIME_CATALOGUE:
        raise UsageError(f"no such scenario: {name} (see `fdguard lab list`)")
    if iterations < 2:
        raise UsageError("a verdict needs at least 2 iterations (the first is the warm-up)")
    started = time.monotonic()
    if name in RUNTIME_CATALOGUE:
        # The runtime brings its own libuv: `target` does not apply.
        rt = RUNTIME_CATALOGUE[name].runtime
        events, rc, timed_out, err = run_runtime(name, iterations, timeout)
        return _result(name, rt, rt, events, rc, timed_out, err, started)
    inject = inject or CATALOGUE[name].inject
    note = ""
    with tempfile.TemporaryDirectory(prefix="fdguard-lab-") as workdir:
        cmd = [sys.executable, "-m", "fdguard.lab.child", "--libuv", str(target.path),
               "--scenario", name, "--iterations", str(iterations), "--workdir", workdir]
        if inject is not None:
            cmd.append("--mark-windows")
            # The dry run gets its own scratch dir: it leaves sockets bound there.
            with tempfile.TemporaryDirectory(prefix="fdguard-lab-dry-") as drydir:
                dry = [*cmd[:-2], drydir, cmd[-1]]
                first = _first_injected_call(dry, drydir, inject[0], timeout)
            if first is None:
                return _result(name, target.label, str(target.path), [], None, False,
                               f"{inject[0]} is never called inside a window: nothing to inject",
                               started)
            cmd = strace_inject_prefix(*inject, first) + cmd
            note = "under " + " ".join(cmd[:cmd.index(sys.executable)])
        rc, out, err, timed_out = _run_child(cmd, workdir, timeout)
    result = _result(name, target.label, str(target.path), _parse_lines(out), rc, timed_out,
                     err, started)
    if note:
        detail = f"{result.detail}\n{note}" if result.detail else note
        result = dataclasses.replace(result, detail=detail)
    return result


def _run_child(cmd: list[str], workdir: str, timeout: float) -> tuple[int | None, str, str, bool]:
    timed_out = False
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=workdir, start_new_session=True,
                            text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    finally:
        # Grandchildren (spawn scenarios) die with the group even on success.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err, timed_out


def strace_inject_prefix(syscall: str, errno: str, step: int, first: int) -> list[str]:
    """The strace command line that fails `syscall` with `errno` at its `first`-th call and
    every `step`-th after it (step 1: every call from `first` on).

    strace counts invocations per traced thread/process (each new one starts at
    1), so `when=FIRST+` fails the main thread's calls from the first one made
    inside a squeeze window onwards, and a spawned grandchild's only once it
    made as many. Every scenario's windows are its only calls of `syscall`
    after setup, so failing all later calls fails exactly the windowed ones.

    Raises:
        ToolMissing: strace is not installed.
    """
    strace = shutil.which("strace")
    if strace is None:
        raise ToolMissing("strace", "ENFILE scenarios inject the error with strace")
    return [strace, "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}",
            "-e", f"inject={syscall}:error={errno}:when={first}+{step}"]


_STRACE_LINE = re.compile(r"^(\d+)\s+(\w+)\(")


def first_injected_call(log: str, syscall: str) -> int | None:
    """From a `strace -f -e trace=SYSCALL,sched_yield` log: the invocation number (1-based)
    of the first `syscall` call the main thread made inside a window, None if it made none.

    The main thread is the one that marks windows with `sched_yield` (pure)."""
    calls = [(int(m[1]), m[2]) for m in map(_STRACE_LINE.match, log.splitlines()) if m]
    marks = [pid for pid, call in calls if call == "sched_yield"]
    if not marks:
        return None
    main = marks[0]
    n = 0
    inside = False
    for pid, call in calls:
        if pid != main:
            continue
        if call == "sched_yield":
            inside = not inside
        elif call == syscall:
            n += 1
            if inside:
                return n
    return None


def _first_injected_call(cmd: list[str], workdir: str, syscall: str, timeout: float) -> int | None:
    # A dry run, identical to the real one until the first injected call, traced
    # without injection: Python's start-up and the scenario's setup make a
    # version-dependent number of calls of the syscall before the first window.
    strace = shutil.which("strace")
    if strace is None:
        raise ToolMissing("strace", "ENFILE scenarios inject the error with strace")
    log = os.path.join(workdir, ".strace-dry-run")
    _run_child([strace, "-f", "-qq", "-o", log, "-e", f"trace={syscall},sched_yield", *cmd],
               workdir, timeout)
    try:
        with open(log) as f:
            text = f.read()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log)
    return first_injected_call(text, syscall)


def _result(name: str, label: str, library: str, events: list[dict[str, Any]],
            returncode: int | None, timed_out: bool, err: str, started: float) -> ScenarioResult:
    verdict, sig, detail = judge(events, returncode, timed_out)
    if verdict in (Verdict.CRASH, Verdict.TIMEOUT, Verdict.ERROR) and err.strip():
        detail = (detail + "\n" if detail else "") + err.strip()[-1500:]
    ready = next((e for e in events if e.get("event") == "ready"), None)
    iters = [e for e in events if e.get("event") == "iter"]
    counts = ([ready["count"]] if ready else []) + [e["count"] for e in iters]
    outcomes = tuple(dict.fromkeys(str(e.get("outcome", "")) for e in iters))
    warm, end = _fd_table(events, "warm"), _fd_table(events, "end")
    leaked = tuple(LeakedFd(fd, k, t) for fd, (k, t) in sorted(end.items())
                   if warm.get(fd) != (k, t))
    gone = Counter(k for fd, (k, t) in warm.items() if end.get(fd) != (k, t))
    grown = Counter(f.kind for f in leaked)
    grown.subtract(gone)
    by_kind = tuple(sorted((k, v) for k, v in grown.items() if v))
    growth = iters[-1]["count"] - iters[0]["count"] if len(iters) >= 2 else 0
    return ScenarioResult(
        scenario=name, libuv=label, library=library,
        version=ready["version"] if ready else None, iterations=len(iters),
        counts=tuple(counts), outcomes=outcomes, growth=growth, growth_by_kind=by_kind,
        leaked=leaked if verdict is Verdict.LEAK else (), verdict=verdict, signal=sig,
        exit_status=returncode, detail=detail, seconds=time.monotonic() - started,
    )
