"""Run the real strace on a target: build its command line, start it, know when it is
attached, stop it cleanly, and reap it.

Choices, each for a reason:
- `-o FILE`, not a pipe: strace blocks the tracee while it writes, so a slow
  reader of a pipe would slow the target; a file never fills.
- One file for all threads (`-f`, not `-ff`): results are printed in the order
  the syscalls exited, which is the order fds were handed out; split files
  would only order by entry time.
- `-ttt` epoch timestamps (ages and joins with snapshots need wall time);
  `-y` fd paths (`socket:[inode]` matches a snapshot's inode; `-yy` would add a
  sock_diag query per printed fd, a cost paid on every syscall).
- `-k` when strace was built with an unwinder (`strace -V` lists
  `stack-trace=`); without it, births are still recorded, stackless.
- Launch mode adds `--seccomp-bpf`: only the traced syscalls stop the target.
  Attach mode cannot (the filter must be installed before exec), so every
  syscall of every thread stops there; `bench/trace_cost.py` measures both.
- strace runs in its own session: a terminal ^C reaches fdguard, which then
  ends the window itself (SIGINT makes strace detach, or in launch mode pass
  SIGINT on to the command).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from fdguard.errors import NoSuchProcess, ToolMissing, TraceRefused, UsageError
from fdguard.procfs.proctree import read_children
from fdguard.procfs.tasks import pid_alive, read_exe, read_task_tracers, read_yama_scope
from fdguard.trace.syscalls import Follow, strace_filter

_VERSION = re.compile(r"strace -- version (\S+)")


@dataclass(frozen=True, slots=True)
class StraceInfo:
    """What the installed strace can do."""

    path: str
    version: str
    stacks: bool  # built with libunwind/libdw: -k works
    seccomp: bool  # --seccomp-bpf exists (strace >= 5.3)


def parse_strace_version(text: str, path: str = "strace") -> StraceInfo:
    """Parse `strace -V` output."""
    m = _VERSION.search(text)
    version = m.group(1) if m else "unknown"
    stacks = "stack-trace=" in text
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
        seccomp = (major, minor) >= (5, 3)
    except ValueError:
        seccomp = False
    return StraceInfo(path=path, version=version, stacks=stacks, seccomp=seccomp)


def probe_strace(path: str | None = None) -> StraceInfo:
    """Find strace and ask what it supports.

    Raises:
        ToolMissing: strace is not installed.
    """
    exe = path or shutil.which("strace")
    if exe is None:
        raise ToolMissing("strace", "apt-get install strace (needed for birth certificates)")
    done = subprocess.run(
        [exe, "-V"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return parse_strace_version(done.stdout + done.stderr, exe)


def strace_command(
    info: StraceInfo,
    output: str,
    *,
    pid: int | None = None,
    argv: Sequence[str] | None = None,
    stacks: bool = True,
    follow: Follow | None = None,
) -> list[str]:
    """The strace command line for attaching to `pid` or launching `argv`."""
    if (pid is None) == (argv is None):
        raise UsageError("trace needs either a PID or a command, not both")
    cmd = [info.path, "-f", "-ttt", "-y", "-o", output, "-e", "trace=" + strace_filter(follow)]
    cmd += ["-e", "signal=none", "-s", "64"]
    if stacks and info.stacks:
        cmd.append("-k")
    if pid is not None:
        cmd += ["-p", str(pid)]
    else:
        assert argv is not None
        if info.seccomp:
            cmd.append("--seccomp-bpf")
        cmd += ["-q", "--", *argv]
    return cmd


def explain_refusal(pid: int | None, stderr: str, *, root: str = "/proc") -> str:
    """Why strace could not attach, in words a person can act on."""
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else "strace exited"
    if "Operation not permitted" not in stderr and "EPERM" not in stderr:
        return detail
    parts = [detail]
    if pid is not None:
        try:
            tracers = set(read_task_tracers(pid, root=root).values()) - {0}
        except NoSuchProcess:
            tracers = set()
        if tracers:
            parts.append(
                f"the process is already traced by pid {', '.join(map(str, sorted(tracers)))} "
                "(a debugger or another strace): a process has one tracer at a time"
            )
    scope = read_yama_scope(root=root)
    if scope == 1:
        parts.append(
            "YAMA ptrace_scope is 1: only a parent may trace; run fdguard as root, "
            "use launch mode (fdguard trace -- CMD), or set kernel.yama.ptrace_scope=0"
        )
    elif scope == 2:
        parts.append("YAMA ptrace_scope is 2: only a process with CAP_SYS_PTRACE may trace")
    elif scope == 3:
        parts.append("YAMA ptrace_scope is 3: ptrace is disabled on this machine")
    else:
        parts.append(
            "not allowed to ptrace it: run as its user or as root with CAP_SYS_PTRACE "
            "(containers often drop it, and seccomp profiles may block ptrace)"
        )
    return "; ".join(parts)


class StraceRun:
    """One running strace writing to a private file; always stopped and reaped by `stop()`.

    Use as a context manager. In attach mode `start()` returns once strace
    has attached to every thread of the target; in launch mode once the
    command's process exists (its own readiness is the caller's business).
    """

    def __init__(
        self,
        *,
        pid: int | None = None,
        argv: Sequence[str] | None = None,
        stacks: bool = True,
        follow: Follow | None = None,
        strace: StraceInfo | None = None,
        stdin: int | IO[bytes] | None = None,
        stdout: int | IO[bytes] | None = None,
        stderr: int | IO[bytes] | None = None,
        env: dict[str, str] | None = None,
        keep_output: str | None = None,
        root: str = "/proc",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.info = strace or probe_strace()
        self.pid = pid
        self.argv = tuple(argv) if argv is not None else None
        self.stacks = stacks and self.info.stacks
        self.root = root
        self._clock = clock
        self._tmp = tempfile.TemporaryDirectory(prefix="fdguard-trace-")
        self.output = keep_output or os.path.join(self._tmp.name, "strace.out")
        self._errfile = open(os.path.join(self._tmp.name, "strace.err"), "w+b")  # noqa: SIM115
        self.command = strace_command(
            self.info, self.output, pid=pid, argv=argv, stacks=stacks, follow=follow
        )
        self.follow = follow or Follow.everything()
        self._streams = (stdin, stdout, stderr)
        self._env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.target: int | None = pid
        self.started_at: float | None = None  # wall clock
        self.stopped_at: float | None = None

    # -- lifecycle --------------------------------------------------------------

    def __enter__(self) -> StraceRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 20.0) -> None:
        """Start strace; return once it traces the target.

        Raises:
            TraceRefused: ptrace was refused (the reason says why and what to do).
            NoSuchProcess: the target does not exist.
        """
        stdin, stdout, stderr = self._streams
        launch = self.argv is not None
        self.proc = subprocess.Popen(
            self.command,
            stdin=stdin if launch else subprocess.DEVNULL,
            stdout=stdout if launch else subprocess.DEVNULL,
            stderr=(stderr if stderr is not None else self._errfile) if launch else self._errfile,
            start_new_session=True,
            env=self._env,
        )
        self.started_at = time.time()
        try:
            if launch:
                self._wait_launched(timeout)
            else:
                self._wait_attached(timeout)
        except BaseException:
            self.stop()
            raise

    def _stderr_text(self) -> str:
        self._errfile.flush()
        self._errfile.seek(0)
        return self._errfile.read().decode("utf-8", "replace")

    def _wait_attached(self, timeout: float) -> None:
        assert self.proc is not None
        assert self.pid is not None
        deadline = self._clock() + timeout
        delay = 0.005
        while True:
            if self.proc.poll() is not None:
                err = self._stderr_text()
                if not pid_alive(self.pid, root=self.root):
                    raise NoSuchProcess(self.pid, "strace could not attach")
                raise TraceRefused(self.pid, explain_refusal(self.pid, err, root=self.root))
            tracers = read_task_tracers(self.pid, root=self.root)
            if tracers and all(t == self.proc.pid for t in tracers.values()):
                return
            if self._clock() > deadline:
                raise TraceRefused(self.pid, f"strace did not attach within {timeout:.0f}s")
            # Polling /proc is the only readiness signal strace gives with -o.
            select.select([], [], [], delay)
            delay = min(delay * 2, 0.05)

    def _wait_launched(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = self._clock() + timeout
        delay = 0.002
        while True:
            try:
                kids = read_children(self.proc.pid, root=self.root)
            except NoSuchProcess:
                kids = []
            # strace forks short-lived probe children of its own (ptrace and
            # seccomp feature checks) before the command: the command is the
            # child that has exec'd something other than strace.
            own = read_exe(self.proc.pid, root=self.root)
            for kid in kids:
                exe = read_exe(kid, root=self.root)
                if exe is not None and exe != own:
                    self.target = kid
                    return
            if self.proc.poll() is not None:
                raise TraceRefused(None, explain_refusal(None, self._stderr_text(), root=self.root))
            if self._clock() > deadline:
                raise TraceRefused(None, f"strace started no command within {timeout:.0f}s")
            select.select([], [], [], delay)
            delay = min(delay * 2, 0.05)

    def wait(self, timeout: float | None) -> bool:
        """Wait for strace to exit (nothing left to trace) or `timeout`; True if it exited."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """End the window and reap strace. Idempotent.

        Attach mode: SIGINT makes strace detach; the target runs on untouched.
        Launch mode: strace blocks fatal signals while it runs a command (-I3,
        its default with -o FILE PROG), so the command itself is asked to end
        (SIGINT, then SIGTERM, then SIGKILL, `grace` seconds apart) and strace
        exits after its last tracee.
        """
        if self.proc is None:
            return
        if self.stopped_at is None:
            self.stopped_at = time.time()
        if self.argv is not None and self.target is not None:
            _end_command(self.target, grace, root=self.root)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=grace)

    def close(self) -> None:
        """Stop strace if needed and remove its files (unless `keep_output` was given)."""
        try:
            self.stop()
        finally:
            if self.proc is not None:
                for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                    if stream is not None:
                        stream.close()
            self._errfile.close()
            self._tmp.cleanup()

    def stderr_text(self) -> str:
        """What strace said on stderr (attach mode)."""
        return self._stderr_text()


def _end_command(pid: int, grace: float, *, root: str) -> None:
    """Ask a launched command to end: SIGINT (as ^C would), SIGTERM, SIGKILL.

    It is strace's child, not ours, so there is no wait(): a pidfd pins the
    process (a reused PID is never signalled) and becomes readable when it exits.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if not pid_alive(pid, root=root):
                return
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                return
            ready, _, _ = select.select([pidfd], [], [], grace)
            if ready:
                return
    finally:
        os.close(pidfd)
