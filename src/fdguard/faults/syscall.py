"""Build the command lines that inject syscall faults into an unmodified binary.

Two mechanisms, with different reach:

- strace `--inject` (ptrace): any syscall, any errno, or a delay, on the Nth
  call (`when=N`), from the Nth on (`N+`) or every step-th from the Nth
  (`N+step`). It sees raw syscalls, so it catches libuv's `accept4`, `pipe2`,
  `epoll_create1`, `eventfd2`, `openat` too. Cost: every traced syscall stops
  the tracee; `--seccomp-bpf` keeps untraced syscalls free.
- libfiu (`fiu-run -x`, LD_PRELOAD): no ptrace, cheap, but only the libc
  *functions* it wraps fail. It does NOT wrap accept4, pipe2, epoll_create1,
  eventfd, openat, socketpair or dup3 -- exactly the calls libuv uses for
  accepting, its async wakeup, its loop fd and its signal pipe -- and it cannot
  see syscalls a program makes without libc (Go, static binaries). `open` is
  wrapped, `openat` is not (glibc's `open` is a separate symbol, so calls
  through `open` still fail). Use strace for the rest.

Counting: strace counts calls per tracee (thread), libfiu per process.
"""

from __future__ import annotations

import errno
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from fdguard.errors import ToolMissing, UsageError

_WHEN = re.compile(r"^[1-9][0-9]*(\+([1-9][0-9]*)?)?$")
_SYSCALL = re.compile(r"^[a-z_][a-z0-9_]*$")
_DELAY = re.compile(r"^[0-9]+(us|ms|s)?$")

# libc function -> libfiu failure point (fiu-utils' function_list).
LIBFIU_POINTS: dict[str, str] = {
    "open": "posix/io/oc/open",
    "close": "posix/io/oc/close",
    "read": "posix/io/rw/read",
    "write": "posix/io/rw/write",
    "readv": "posix/io/rw/readv",
    "writev": "posix/io/rw/writev",
    "socket": "posix/io/net/socket",
    "bind": "posix/io/net/bind",
    "listen": "posix/io/net/listen",
    "accept": "posix/io/net/accept",
    "connect": "posix/io/net/connect",
    "recv": "posix/io/net/recv",
    "recvfrom": "posix/io/net/recvfrom",
    "recvmsg": "posix/io/net/recvmsg",
    "send": "posix/io/net/send",
    "sendto": "posix/io/net/sendto",
    "sendmsg": "posix/io/net/sendmsg",
    "shutdown": "posix/io/net/shutdown",
    "opendir": "posix/io/dir/opendir",
    "fopen": "posix/stdio/oc/fopen",
    "fork": "posix/proc/fork",
    "malloc": "libc/mm/malloc",
}

# Calls libuv makes that libfiu does not wrap: a fault on them needs strace.
LIBFIU_UNWRAPPED: frozenset[str] = frozenset(
    {"accept4", "pipe2", "epoll_create1", "epoll_create", "eventfd", "eventfd2",
     "openat", "openat2", "socketpair", "dup3", "io_uring_setup", "signalfd4",
     "timerfd_create", "inotify_init1"}
)


def _errno_value(name: str) -> int:
    value = getattr(errno, name, None)
    if not isinstance(value, int) or not name.startswith("E"):
        raise UsageError(f"unknown errno name: {name!r} (use names such as EMFILE, ECONNREFUSED)")
    return value


@dataclass(frozen=True, slots=True)
class SyscallFault:
    """One strace injection: make `syscall` fail with `error` and/or delay it.

    `when` is strace's syntax: "N" (only the Nth call), "N+" (the Nth and every
    later one), "N+S" (the Nth, then every S-th).
    """

    syscall: str
    error: str | None = None
    delay_ms: int | None = None
    when: str = "1+"

    def __post_init__(self) -> None:
        if not _SYSCALL.match(self.syscall):
            raise UsageError(f"not a syscall name: {self.syscall!r}")
        if self.error is None and self.delay_ms is None:
            raise UsageError(f"fault on {self.syscall}: give an error, a delay, or both")
        if self.error is not None:
            _errno_value(self.error)
        if self.delay_ms is not None and self.delay_ms < 0:
            raise UsageError("delay must be >= 0 ms")
        if not _WHEN.match(self.when):
            raise UsageError(f"when={self.when!r}: expected N, N+ or N+STEP (N, STEP >= 1)")

    @property
    def label(self) -> str:
        what = []
        if self.error:
            what.append(self.error)
        if self.delay_ms is not None:
            what.append(f"+{self.delay_ms}ms")
        return f"{self.syscall}:{'/'.join(what)}@{self.when}"

    def strace_expr(self) -> str:
        """The `-e inject=` expression for this fault."""
        parts = [f"inject={self.syscall}"]
        if self.error is not None:
            parts.append(f"error={self.error}")
        if self.delay_ms is not None:
            # A delay on entry holds the call before the kernel sees it.
            parts.append(f"delay_enter={self.delay_ms * 1000}")
        parts.append(f"when={self.when}")
        return ":".join(parts)

    @classmethod
    def parse(cls, spec: str) -> SyscallFault:
        """Parse "SYSCALL:error=ERRNO[:delay=MS][:when=EXPR]"."""
        name, _, rest = spec.partition(":")
        fields: dict[str, str] = {}
        for item in filter(None, rest.split(":")):
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"syscall fault {spec!r}: expected key=value, got {item!r}")
            fields[key] = value
        unknown = set(fields) - {"error", "delay", "when"}
        if unknown:
            raise UsageError(f"syscall fault {spec!r}: unknown keys {sorted(unknown)}")
        delay = fields.get("delay")
        if delay is not None and not delay.isdigit():
            raise UsageError(f"syscall fault {spec!r}: delay is whole milliseconds")
        return cls(
            syscall=name,
            error=fields.get("error"),
            delay_ms=int(delay) if delay is not None else None,
            when=fields.get("when", "1+"),
        )


@dataclass(frozen=True, slots=True)
class FiuFault:
    """One libfiu failure: make the libc function `function` fail with `error`.

    `probability` < 1 uses libfiu's enable_random.
    """

    function: str
    error: str
    probability: float = 1.0

    def __post_init__(self) -> None:
        if self.function in LIBFIU_UNWRAPPED:
            raise UsageError(
                f"libfiu does not wrap {self.function}(): inject it with strace instead "
                f"(syscall fault {self.function}:error={self.error})"
            )
        if self.function not in LIBFIU_POINTS:
            raise UsageError(
                f"no libfiu failure point known for {self.function}(); known: "
                + ", ".join(sorted(LIBFIU_POINTS))
            )
        _errno_value(self.error)
        if not 0.0 < self.probability <= 1.0:
            raise UsageError("probability must be in (0, 1]")

    @property
    def label(self) -> str:
        p = "" if self.probability == 1.0 else f"~{self.probability:g}"
        return f"fiu:{self.function}:{self.error}{p}"

    def fiu_command(self) -> str:
        """The fiu-run `-c` control command; failinfo carries the errno to set."""
        point = LIBFIU_POINTS[self.function]
        info = _errno_value(self.error)
        if self.probability == 1.0:
            return f"enable name={point},failinfo={info}"
        return f"enable_random name={point},probability={self.probability},failinfo={info}"


def _which(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(tool, hint)
    return path


def strace_argv(
    argv: Sequence[str], faults: Sequence[SyscallFault], *, log_path: str | None = None
) -> list[str]:
    """`argv` run under strace with `faults` injected, following forks and threads.

    Only the faulted syscalls are traced (and, with --seccomp-bpf, only they stop
    the tracee), so the run stays close to native speed. The trace of those
    calls goes to `log_path` (or nowhere), never to the target's stderr.

    Raises:
        ToolMissing: strace is not installed.
        UsageError: no faults given.
    """
    return [*_strace_inject(faults, "strace_argv", seccomp=True),
            "-o", log_path or "/dev/null", "--", *argv]


def strace_attach_argv(
    pid: int, faults: Sequence[SyscallFault], *, log_path: str | None = None
) -> list[str]:
    """strace attaching to the running `pid` (all its threads and later children)
    with `faults` injected from now on.

    Attaching after the service is ready keeps the faults out of its start-up
    (a `socket` or `read` fault would otherwise break the listener or the
    interpreter's imports) and starts `when=N` counting at the workload. The
    price: no --seccomp-bpf in attach mode, so every syscall of the target
    stops for strace, not only the faulted ones.

    Raises:
        ToolMissing: strace is not installed.
        UsageError: no faults given.
    """
    return [*_strace_inject(faults, "strace_attach_argv", seccomp=False),
            "-o", log_path or "/dev/null", "-p", str(pid)]


def _strace_inject(faults: Sequence[SyscallFault], caller: str, *, seccomp: bool) -> list[str]:
    """strace -f tracing only the faulted syscalls, with `faults` injected (no output options)."""
    if not faults:
        raise UsageError(f"{caller} needs at least one fault")
    strace = _which("strace", "apt-get install strace")
    names = sorted({f.syscall for f in faults})
    cmd = [strace, "-f", "-qq", *(["--seccomp-bpf"] if seccomp else []),
           "-e", "trace=" + ",".join(names)]
    for fault in faults:
        cmd += ["-e", fault.strace_expr()]
    return cmd


def fiu_argv(argv: Sequence[str], faults: Sequence[FiuFault]) -> list[str]:
    """`argv` run under fiu-run with the POSIX preload library and `faults` enabled.

    fiu-run execs the program, so the target keeps the PID that is started.
    Remote control over named pipes is turned off (-f ""): nothing is left in /tmp.

    Raises:
        ToolMissing: fiu-run (Debian fiu-utils) is not installed.
        UsageError: no faults given.
    """
    if not faults:
        raise UsageError("fiu_argv needs at least one fault")
    fiu_run = _which("fiu-run", "apt-get install fiu-utils")
    cmd = [fiu_run, "-x", "-f", ""]
    for fault in faults:
        cmd += ["-c", fault.fiu_command()]
    return [*cmd, *argv]
