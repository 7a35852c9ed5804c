"""Fixtures shared by every test: real child processes that are always reaped,
and an autouse guard that fails any test leaking an fd or a child process."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

PROCS = Path(__file__).parent / "procs"
T = TypeVar("T")


def _own_fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue
    return out


@pytest.fixture(autouse=True)
def no_fd_or_child_leaks() -> Iterator[None]:
    """Fail a test that leaves an fd open in the test process or a child behind."""
    before = _own_fds()
    yield
    me = psutil.Process()
    kids = [c for c in me.children(recursive=True) if c.is_running()]
    assert not kids, f"test left child processes behind: {[k.pid for k in kids]}"
    after = _own_fds()
    # listdir's own directory fd shows up in both listings at the same number.
    new = {fd: t for fd, t in after.items() if fd not in before or before[fd] != t}
    new = {fd: t for fd, t in new.items() if not t.startswith("/proc/")}
    assert not new, f"test leaked fds: {new}"


@dataclass
class Child:
    """A real process started by a test, with the line it printed when ready."""

    proc: subprocess.Popen[bytes]
    ready: str

    @property
    def pid(self) -> int:
        return self.proc.pid


def wait_until(
    what: str,
    check: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `check()` until it returns something truthy, and return that.

    For state another process reaches (a restart counted, a scrape landed), where
    there is no event to wait on: bounded by `timeout`, never a bare sleep. Errors
    of the `ignore` types count as "not yet". On timeout the test fails, naming
    `what` and the last value or error seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except ignore as err:
            last = err
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}: {last!r}")
        time.sleep(interval)


def wait_line(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    """Wait until the child prints one line on stdout (its readiness signal)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"child {proc.pid} printed no readiness line in {timeout}s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"child {proc.pid} exited before ready: {err[-2000:]}")
            buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """Start real processes that print one readiness line; kill and reap them after the test.

    Each child runs in its own process group so that its own children die with it.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], *, ready: bool = True, timeout: float = 20.0,
              env: dict[str, str] | None = None, cwd: str | None = None) -> Child:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
        started.append(proc)
        line = wait_line(proc, timeout) if ready else ""
        return Child(proc, line)

    yield start
    for proc in started:
        _reap(proc)


def installed(name: str, package: str) -> str:
    """The path of a program `.ci/run` installs: a test fails (not skips) without it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: .ci/run installs it (apt-get install {package})")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def python_proc(script: str, *args: str) -> list[str]:
    return [sys.executable, str(PROCS / script), *args]


@pytest.fixture
def node() -> str:
    path = shutil.which("node") or shutil.which("nodejs")
    if path is None:
        pytest.fail("node is not installed: .ci/run installs it (apt-get install nodejs)")
    return path
