"""`trace_pid` and `trace_command`: one traced window, from start to `TraceReport`.

The facade the CLI and tests call. It owns the order of things, which matters:

attach: snapshot (start) -> strace attaches -> window -> strace detaches ->
        snapshot (end) -> parse -> report.
launch: strace starts the command -> window -> snapshot (end, while the
        command still runs) -> strace stops (the command gets SIGINT) -> report.

When ptrace is refused in attach mode, the window is still watched by
polling snapshots (`poll_window`): births are then known by fd and first
sighting only, with no syscall and no stack, and the report says so.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from fdguard.errors import NoSuchProcess, TraceRefused
from fdguard.inspect import snapshot
from fdguard.model import Fd, Snapshot
from fdguard.procfs.tasks import pid_alive
from fdguard.trace.lifecycle import Lifecycle, track_file
from fdguard.trace.ownership import from_attribute
from fdguard.trace.report import Owner, TraceReport, build_report
from fdguard.trace.runner import StraceInfo, StraceRun, probe_strace
from fdguard.trace.syscalls import Follow

# Given the target pid at the end of the window, `explain`'s ownership per fd
# and the name of its source, or None when no handle view is available.
OwnershipSource = Callable[[int], tuple[Mapping[int, Owner], str] | None]


def default_ownership(pid: int) -> tuple[Mapping[int, Owner], str] | None:
    """Ownership from `fdguard.attribute` when that module offers a per-fd verdict."""
    return from_attribute(pid)


@dataclass(frozen=True, slots=True)
class _Window:
    life: Lifecycle
    started_at: float
    ended_at: float


def _stack_warnings(info: StraceInfo, stacks: bool) -> list[str]:
    if stacks and not info.stacks:
        return [
            f"strace {info.version} at {info.path} was built without stack-trace support "
            "(no 'stack-trace=' in strace -V): births are shown without creation stacks; "
            "install a strace built with libunwind or libdw (Debian's is) for stacks"
        ]
    return []


def _safe_snapshot(pid: int, root: str) -> Snapshot | None:
    try:
        return snapshot(pid, root=root)
    except NoSuchProcess:
        return None


def _ownership(
    source: OwnershipSource | None, pid: int, alive: bool, warnings: list[str]
) -> tuple[Mapping[int, Owner] | None, str | None]:
    if source is None or not alive:
        return None, None
    try:
        got = source(pid)
    except NoSuchProcess:
        return None, None
    if got is None:
        warnings.append(
            "no handle view (fdguard.attribute): verdicts for fds created inside libuv "
            "come from the stack only and cannot tell a live handle from a libuv leak"
        )
        return None, None
    owners, name = got
    if owners and not any(o.certain for o in owners.values()):
        warnings.append(
            f"{name} had no handle view of this process (heuristics only): fds created "
            "inside libuv are not called libuv leaks or unclosed handles without proof"
        )
    return owners, name


def _interruptible_wait(run: StraceRun, window_s: float, warnings: list[str]) -> None:
    try:
        if run.wait(window_s):
            warnings.append("the target exited before the end of the window")
    except KeyboardInterrupt:
        warnings.append("window cut short by an interrupt")


def trace_pid(
    pid: int,
    window_s: float,
    *,
    stacks: bool = True,
    follow: Follow | None = None,
    ownership: OwnershipSource | None = default_ownership,
    strace: StraceInfo | None = None,
    keep_output: str | None = None,
    poll_interval: float = 0.2,
    on_attached: Callable[[], None] | None = None,
    stop_when: Callable[[], bool] | None = None,
    root: str = "/proc",
) -> TraceReport:
    """Attach to `pid` (all threads) for `window_s` seconds and report fds born and still open.

    Args:
        pid: the running process.
        window_s: how long to watch; ^C ends the window early and still reports.
        stacks: ask strace for creation stacks (-k) when it supports them.
        follow: which frequent syscalls to follow besides births (default none:
            closes are inferred from fd reuse and the end snapshot; see Follow).
        ownership: where "a live handle owns this fd" comes from (`explain`).
        on_attached: called once strace traces every thread (tests drive load here).
        stop_when: polled during the window; True ends it early (tests use this
            to end the window on an event instead of a timer).

    Raises:
        NoSuchProcess: the target does not exist.
        ToolMissing: strace is not installed (falls back to polling only when
            ptrace itself is refused, since then strace cannot help anyway).
    """
    info = strace or probe_strace()
    warnings = _stack_warnings(info, stacks)
    run = StraceRun(
        pid=pid,
        stacks=stacks,
        follow=follow or Follow(),
        strace=info,
        keep_output=keep_output,
        root=root,
    )
    with run:
        try:
            run.start()
        except TraceRefused as err:
            warnings.append(
                f"strace could not trace pid {pid} ({err.reason}); falling back to polling "
                "snapshots: births without syscalls or stacks"
            )
            return poll_window(
                pid,
                window_s,
                interval=poll_interval,
                ownership=ownership,
                warnings=warnings,
                on_started=on_attached,
                stop_when=stop_when,
                root=root,
            )
        # Both snapshots are taken while strace is attached: every fd that is in
        # the end snapshot and not in the start one was born under trace, so an
        # fd with no traced birth is one strace could not see (io_uring, a
        # syscall not followed), never one born in a gap before or after it.
        t0 = time.time()
        start = snapshot(pid, root=root)
        if on_attached is not None:
            on_attached()
        _wait_window(run, window_s, stop_when, warnings)
        ended = time.time()
        end = _safe_snapshot(pid, root)
        run.stop()
        life = track_file(run.output, pid)
    own, source = _ownership(ownership, pid, end is not None, warnings)
    if end is None:
        warnings.append("the target is gone: open fds are as the trace last saw them")
    return build_report(
        life,
        command=start.command,
        mode="attach",
        window_s=ended - t0,
        ended_at=ended,
        stacks=run.stacks,
        followed=run.follow,
        start=start,
        end=end,
        ownership=own,
        ownership_source=source,
        warnings=tuple(warnings),
    )


def _wait_window(
    run: StraceRun, window_s: float, stop_when: Callable[[], bool] | None, warnings: list[str]
) -> None:
    if stop_when is None:
        _interruptible_wait(run, window_s, warnings)
        return
    deadline = time.monotonic() + window_s
    try:
        while time.monotonic() < deadline:
            if stop_when():
                return
            if run.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                warnings.append("the target exited before the end of the window")
                return
    except KeyboardInterrupt:
        warnings.append("window cut short by an interrupt")


@dataclass
class Launched:
    """A command running under trace, for callers that drive it before the report."""

    run: StraceRun
    started_at: float

    @property
    def pid(self) -> int:
        assert self.run.target is not None
        return self.run.target


def start_command(
    argv: Sequence[str],
    *,
    stacks: bool = True,
    follow: Follow | None = None,
    strace: StraceInfo | None = None,
    stdin: int | IO[bytes] | None = None,
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
    env: dict[str, str] | None = None,
    keep_output: str | None = None,
    root: str = "/proc",
) -> Launched:
    """Start `argv` under strace (--seccomp-bpf); finish with `finish_command`.

    Raises:
        ToolMissing, TraceRefused.
    """
    info = strace or probe_strace()
    run = StraceRun(
        argv=argv,
        stacks=stacks,
        # The command may exit before the window ends, leaving no snapshot to
        # check against: follow closes unless told otherwise.
        follow=follow or Follow(closes=True),
        strace=info,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        keep_output=keep_output,
        root=root,
    )
    try:
        run.start()
    except BaseException:
        run.close()
        raise
    return Launched(run, time.time())


def finish_command(
    launched: Launched,
    *,
    window_s: float | None = None,
    stop_when: Callable[[], bool] | None = None,
    ownership: OwnershipSource | None = default_ownership,
    root: str = "/proc",
) -> TraceReport:
    """Wait out the window (if given), snapshot the command, stop it, and report."""
    run = launched.run
    warnings = _stack_warnings(run.info, stacks=True)
    with run:
        if window_s is not None:
            _wait_window(run, window_s, stop_when, warnings)
        pid = launched.pid
        end = _safe_snapshot(pid, root) if pid_alive(pid, root=root) else None
        ended = time.time()
        own, source = _ownership(ownership, pid, end is not None, warnings)
        command = end.command if end else tuple(run.argv or ())
        run.stop()
        life = track_file(run.output, pid)
    if end is None:
        warnings.append(
            "the command exited: these fds were still open when it exited "
            "(the kernel closed them; nothing else did)"
        )
    return build_report(
        life,
        command=command,
        mode="launch",
        window_s=ended - launched.started_at,
        ended_at=ended,
        stacks=run.stacks,
        followed=run.follow,
        end=end,
        ownership=own,
        ownership_source=source,
        warnings=tuple(warnings),
    )


def trace_command(
    argv: Sequence[str],
    window_s: float,
    *,
    stacks: bool = True,
    follow: Follow | None = None,
    ownership: OwnershipSource | None = default_ownership,
    keep_output: str | None = None,
) -> TraceReport:
    """Run `argv` under trace until it exits or `window_s` passes, then report.

    The command inherits fdguard's stdin/stdout/stderr. At the end of the
    window it gets SIGINT (then SIGTERM, then SIGKILL).
    """
    launched = start_command(argv, stacks=stacks, follow=follow, keep_output=keep_output)
    return finish_command(launched, window_s=window_s, ownership=ownership)


def poll_window(
    pid: int,
    window_s: float,
    *,
    start: Snapshot | None = None,
    interval: float = 0.2,
    ownership: OwnershipSource | None = default_ownership,
    warnings: list[str] | None = None,
    on_started: Callable[[], None] | None = None,
    stop_when: Callable[[], bool] | None = None,
    root: str = "/proc",
) -> TraceReport:
    """Watch `pid` without ptrace: snapshots every `interval`; births known by first sighting."""
    warns = list(warnings or [])
    first = start or snapshot(pid, root=root)
    t0 = time.time()
    seen: dict[tuple[int, int | None, str | None], float] = {}
    base = {_ident(f) for f in first.fds}
    if on_started is not None:
        on_started()
    last: Snapshot | None = first
    deadline = time.monotonic() + window_s
    try:
        while time.monotonic() < deadline:
            if stop_when is not None and stop_when():
                break
            cur = _safe_snapshot(pid, root)
            if cur is None:
                last = None
                warns.append("the target exited before the end of the window")
                break
            last = cur
            for f in cur.fds:
                key = _ident(f)
                if key not in base:
                    seen.setdefault(key, cur.taken_at)
            select.select([], [], [], min(interval, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        warns.append("window cut short by an interrupt")
    ended = time.time()
    end = _safe_snapshot(pid, root) if last is not None else None
    first_seen: dict[int, float] = {}
    if end is not None:
        for f in end.fds:
            key = _ident(f)
            if key not in base:
                first_seen[f.fd] = seen.get(key, end.taken_at)
    own, source = _ownership(ownership, pid, end is not None, warns)
    life = Lifecycle(
        root=pid,
        open=(),
        closed=(),
        closes_of_older_fds=0,
        exhaustion=(),
        root_exited_at=None,
        first_ts=None,
        last_ts=None,
        events=0,
    )
    return build_report(
        life,
        command=first.command,
        mode="poll",
        window_s=ended - t0,
        ended_at=ended,
        stacks=False,
        start=first,
        end=end,
        ownership=own,
        ownership_source=source,
        first_seen=first_seen,
        warnings=tuple(warns),
    )


def _ident(f: Fd) -> tuple[int, int | None, str | None]:
    return (f.fd, f.inode, None if f.inode is not None else f.target)
