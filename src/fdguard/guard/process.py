"""Start a worker: fork, set it up so it can never outlive the guard, exec.

Design (why not subprocess.Popen): the inherited sockets must land exactly at
fds 3, 4, ... and LISTEN_PID must be the worker's own pid, which is only known
after fork; Popen can do neither without a shell in between. So this is a
small fork/exec in the style of gunicorn's, with subprocess's error pipe:

- the child makes its own process group (the guard signals the whole group,
  so a worker's own children go with it);
- PR_SET_PDEATHSIG(SIGKILL) via prctl: if the guard dies, even by kill -9, the
  kernel kills the worker; the parent pid is checked right after, to close the
  race where the guard died before prctl;
- signals: mask cleared, SIGPIPE/SIGXFSZ back to default (Python ignores them
  and ignored signals survive exec);
- stdin from /dev/null; stdout/stderr shared with the guard;
- the sockets are moved to 3.. (via high duplicates, so no dup2 overwrites a
  socket not yet moved); everything else above them is closed (close_range);
- optional RLIMIT_NOFILE for the worker (soft and hard, like LimitNOFILE=);
- an exec failure is written to a CLOEXEC pipe, so the parent learns of it
  synchronously (a successful exec closes the pipe: EOF).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import signal
from collections.abc import Mapping, Sequence

from fdguard.errors import FdguardError

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class WorkerStartError(FdguardError):
    """A worker could not be started (exec failed: no such command, permission...)."""


def _child(
    argv: Sequence[str],
    env: Mapping[str, str],
    fds: Sequence[int],
    nofile: int | None,
    cwd: str | None,
    parent: int,
    err_pipe: list[int],
) -> None:
    os.setpgid(0, 0)
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_PDEATHSIG): {os.strerror(e)}")
    if os.getppid() != parent:
        os._exit(1)  # the guard is already gone: do not start an orphan
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    n = len(fds)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + n) for fd in fds]
    for i, h in enumerate(high):
        os.dup2(h, 3 + i, inheritable=True)
    err = fcntl.fcntl(err_pipe[0], fcntl.F_DUPFD_CLOEXEC, 3 + n)
    err_pipe[0] = err
    # Close everything above the sockets except the error pipe (close_range).
    os.closerange(3 + n, err)
    os.closerange(err + 1, 1 << 20)
    if nofile is not None:
        # Both limits, as systemd's LimitNOFILE=N does: Node.js raises its soft
        # limit to the hard one at startup, so a soft-only limit would not hold.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lim = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))
    if cwd is not None:
        os.chdir(cwd)
    full = dict(env)
    if n:
        full["LISTEN_PID"] = str(os.getpid())
    os.execvpe(argv[0], list(argv), full)


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    fds: Sequence[int] = (),
    *,
    nofile: int | None = None,
    cwd: str | None = None,
) -> int:
    """Fork and exec `argv` as a worker (see the module comment); return its pid.

    Must be called from a single-threaded process (it forks and runs Python in
    the child until exec).

    Raises:
        WorkerStartError: the exec (or the setup before it) failed; the child is reaped.
    """
    parent = os.getpid()
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child until exec
        err_pipe = [w]
        try:
            os.close(r)
            _child(argv, env, fds, nofile, cwd, parent, err_pipe)
        except BaseException as exc:  # report anything, then die without cleanup
            e = exc.errno if isinstance(exc, OSError) and exc.errno else 0
            msg = f"{e}:{type(exc).__name__}: {exc}".encode(errors="replace")
            try:
                os.write(err_pipe[0], msg)
            finally:
                os._exit(127)
        os._exit(127)
    os.close(w)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(r, 4096)
            except InterruptedError:
                continue
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    if chunks:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
        text = b"".join(chunks).decode(errors="replace")
        num, _, detail = text.partition(":")
        hint = ""
        if num.isdigit() and int(num) == errno.ENOENT:
            hint = " (command not found)"
        raise WorkerStartError(f"cannot start {argv[0]}{hint}: {detail}")
    return pid


class OrphanReaper:
    """A helper process that kills the workers' process groups when the guard dies.

    PR_SET_PDEATHSIG only reaches a worker itself. A worker that is a wrapper
    (`npm start`, `sh -c ...`) leaves its real server behind when the guard is
    killed with SIGKILL. So the guard forks this helper at start, in its own
    session (a signal to the guard's process group spares it), holding the read
    end of a pipe; the guard writes `+PGID` / `-PGID` as worker groups come and
    go. When the pipe reaches EOF -- the guard exited, however it died -- the
    helper SIGKILLs every group still listed and exits. A group is removed
    only once its leader was reaped and its leftovers killed, so a number the
    kernel could reuse is never signalled.
    """

    def __init__(self) -> None:
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the helper
            try:
                os.close(w)
                os.setsid()
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                    signal.signal(sig, signal.SIG_IGN)
                keep = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 3)
                os.closerange(3, keep)
                os.closerange(keep + 1, 1 << 20)
                _reaper_loop(keep)
            finally:
                os._exit(0)
        os.close(r)
        self.pid = pid
        self._w: int | None = w

    def _send(self, line: str) -> None:
        if self._w is None:
            return
        try:
            os.write(self._w, line.encode())
        except OSError:
            self._w = None  # the helper is gone; PDEATHSIG still covers the workers

    def add(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """Close the pipe (the helper kills what is still listed, then exits) and reap it."""
        if self._w is not None:
            os.close(self._w)
            self._w = None
        while True:
            try:
                os.waitpid(self.pid, 0)
                return
            except InterruptedError:
                continue
            except ChildProcessError:
                return  # already reaped by a waitpid(-1) loop


def _reaper_loop(fd: int) -> None:  # pragma: no cover - runs in the helper
    groups: set[int] = set()
    buf = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            continue
