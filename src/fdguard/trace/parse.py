"""Parse strace output (-f -ttt -y [-k]) into syscall events with their stacks.

The runner asks strace for one file (-o) holding every thread, each line
prefixed with the thread id and an epoch timestamp. A syscall that another
thread interrupts is split across two lines:

    11186 1796061308.990635 openat(AT_FDCWD</tmp>, "/x", O_RDONLY <unfinished ...>
    11185 1796061308.990684 close(5</y>) = 0
    11186 1796061308.990727 <... openat resumed>) = 21</x>

The parser stitches them back, keeps the timestamp of the line that carries
the result (the syscall's exit, which is the order fds were handed out in),
and attaches the ` > frame` lines that follow a result line to it: strace
prints a stack after the result, never after an `<unfinished ...>` line.
Syscalls that never finished (the tracer detached) are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from fdguard.trace.frames import Frame, parse_frame

_PREFIX = re.compile(r"^(?:\[pid\s+)?(?P<tid>\d+)\]?\s+(?P<ts>\d+\.\d+)\s(?P<body>.*)$")
_NO_PID = re.compile(r"^(?P<ts>\d+\.\d+)\s(?P<body>.*)$")
_COMPLETE = re.compile(
    r"^(?P<name>[a-z_0-9]+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+|0x[0-9a-fA-F]+|\?)(?P<tail>.*)$"
)
_UNFINISHED = re.compile(r"^(?P<name>[a-z_0-9]+)\((?P<args>.*?)\s*<unfinished \.\.\.>$")
_RESUMED = re.compile(r"^<\.\.\. (?P<name>[a-z_0-9]+) resumed>(?P<rest>.*)$")
_EXIT = re.compile(r"^\+\+\+ (?:exited with (?P<code>-?\d+)|killed by (?P<sig>\S+).*) \+\+\+$")
_ERRNO = re.compile(r"^\s+(?P<errno>E[A-Z0-9]+)\b")


@dataclass(frozen=True, slots=True)
class SyscallEvent:
    """One finished syscall of one thread, with its stack (innermost frame first)."""

    tid: int
    ts: float
    name: str
    args: str
    retval: int | None  # None when strace printed "?"
    errno: str | None
    annotation: str | None  # the -y decoding of a returned fd: "socket:[123]", "/etc/x"
    frames: tuple[Frame, ...] = field(default=())
    line: int = 0

    @property
    def failed(self) -> bool:
        return self.errno is not None


@dataclass(frozen=True, slots=True)
class ExitEvent:
    """A thread or process ended (`+++ exited with N +++` / `+++ killed by SIG +++`)."""

    tid: int
    ts: float
    code: int | None
    signal: str | None
    line: int = 0


Event = SyscallEvent | ExitEvent


def _split_result(ret: str, tail: str) -> tuple[int | None, str | None, str | None]:
    if ret == "?":
        retval: int | None = None
    elif ret.startswith("0x"):
        retval = int(ret, 16)
    else:
        retval = int(ret)
    annotation = None
    errno = None
    if tail.startswith("<"):
        end = tail.rfind(">")
        if end > 0:
            annotation = tail[1:end]
    else:
        m = _ERRNO.match(tail)
        if m and retval is not None and retval < 0:
            errno = m.group("errno")
    return retval, errno, annotation


class _Builder:
    """A finished syscall waiting for the stack lines that follow it."""

    __slots__ = ("annotation", "args", "errno", "frames", "line", "name", "retval", "tid", "ts")

    def __init__(
        self,
        tid: int,
        ts: float,
        name: str,
        args: str,
        retval: int | None,
        errno: str | None,
        annotation: str | None,
        line: int,
    ) -> None:
        self.tid, self.ts, self.name, self.args = tid, ts, name, args
        self.retval, self.errno, self.annotation, self.line = retval, errno, annotation, line
        self.frames: list[Frame] = []

    def build(self) -> SyscallEvent:
        return SyscallEvent(
            tid=self.tid,
            ts=self.ts,
            name=self.name,
            args=self.args,
            retval=self.retval,
            errno=self.errno,
            annotation=self.annotation,
            frames=tuple(self.frames),
            line=self.line,
        )


def parse_lines(lines: Iterable[str], *, default_tid: int = 0) -> Iterator[Event]:
    """Yield events from strace output lines, in the order strace printed their results.

    Lines that are not syscalls, exits or stack frames (signals, strace's own
    messages, torn lines at the end of a file cut by a detach) are skipped.

    Args:
        lines: strace -o output, with or without trailing newlines.
        default_tid: the thread to blame when lines carry no pid prefix (no -f).
    """
    pending: dict[int, tuple[str, str]] = {}
    current: _Builder | None = None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n")
        if line.startswith(" > "):
            if current is not None:
                current.frames.append(parse_frame(line))
            continue
        if current is not None:
            yield current.build()
            current = None
        m = _PREFIX.match(line)
        if m:
            tid = int(m.group("tid"))
        else:
            m = _NO_PID.match(line)
            if not m:
                continue
            tid = default_tid
        ts = float(m.group("ts"))
        body = m.group("body")
        if body.startswith("<..."):
            r = _RESUMED.match(body)
            if not r:
                continue
            start = pending.pop(tid, None)
            if start is None or start[0] != r.group("name"):
                continue
            sep = " " if start[1].endswith(",") else ""
            body = f"{start[0]}({start[1]}{sep}{r.group('rest')}"
        elif body.endswith("<unfinished ...>"):
            u = _UNFINISHED.match(body)
            if u:
                pending[tid] = (u.group("name"), u.group("args"))
            continue
        elif body.startswith("+++"):
            e = _EXIT.match(body)
            if e:
                code = e.group("code")
                yield ExitEvent(
                    tid, ts, int(code) if code is not None else None, e.group("sig"), lineno
                )
            pending.pop(tid, None)
            continue
        c = _COMPLETE.match(body)
        if not c:
            continue
        retval, errno, annotation = _split_result(c.group("ret"), c.group("tail"))
        current = _Builder(
            tid, ts, c.group("name"), c.group("args"), retval, errno, annotation, lineno
        )
    if current is not None:
        yield current.build()


def split_args(text: str) -> list[str]:
    """Split a syscall's argument text at top-level commas.

    Brackets, braces, parentheses, quoted strings and -y annotations
    (`3<socket:[12]>`) nest; `=>` (strace's in/out marker) is not a bracket.
    """
    out: list[str] = []
    depth = 0
    angle = 0
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "<" and i > 0 and (text[i - 1].isdigit() or text[i - 1] == "D"):
            # "5<pipe:[1]>" or "AT_FDCWD</tmp>"
            angle += 1
        elif ch == ">" and angle and text[i - 1] != "=":
            angle -= 1
        elif ch == "," and depth == 0 and angle == 0:
            out.append(text[start:i].strip())
            start = i + 1
        i += 1
    tail = text[start:].strip()
    if tail or out:
        out.append(tail)
    return out


_FD_TOKEN = re.compile(r"^(?P<fd>-?\d+)(?:<(?P<ann>.*)>(?:\(deleted\))?)?$")


def fd_arg(token: str) -> tuple[int, str | None] | None:
    """`5<pipe:[12]>` -> (5, "pipe:[12]"); `50` -> (50, None); anything else -> None."""
    m = _FD_TOKEN.match(token.strip())
    if not m:
        return None
    return int(m.group("fd")), m.group("ann")


def fd_list(token: str) -> list[tuple[int, str | None]]:
    """The fds of an array argument: `[5<pipe:[1]>, 6<pipe:[1]>]` -> [(5, ...), (6, ...)]."""
    inner = token.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        return []
    out: list[tuple[int, str | None]] = []
    for part in split_args(inner[1:-1]):
        got = fd_arg(part)
        if got is not None:
            out.append(got)
    return out


_SCM_MARK = "cmsg_type=SCM_RIGHTS, cmsg_data="


def _bracketed(text: str, start: int) -> str:
    """The balanced `[...]` starting at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "[":
            depth += 1
        elif text[i] == "]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return text[start:]


def scm_rights_fds(args: str) -> list[tuple[int, str | None]]:
    """The fds received with SCM_RIGHTS in a recvmsg/recvmmsg argument text."""
    out: list[tuple[int, str | None]] = []
    pos = args.find(_SCM_MARK)
    while pos >= 0:
        start = pos + len(_SCM_MARK)
        if start < len(args) and args[start] == "[":
            out.extend(fd_list(_bracketed(args, start)))
        pos = args.find(_SCM_MARK, start)
    return out
