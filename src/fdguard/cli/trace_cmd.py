"""`fdguard trace PID --for 60s` / `fdguard trace -- CMD ARGS`: birth certificates of leaked fds."""

from __future__ import annotations

import time
from collections import Counter

import click

from fdguard.cli.durations import parse_duration
from fdguard.cli.render import console, echo_json
from fdguard.errors import ExitStatus, UsageError
from fdguard.model import FdKind
from fdguard.trace import TraceReport, trace_command, trace_pid
from fdguard.trace.report import Group, describe_after, short_frames
from fdguard.trace.syscalls import Follow

_POLLED = frozenset({FdKind.PIPE, FdKind.FIFO, FdKind.EVENTFD, FdKind.INOTIFY, FdKind.TIMERFD})
def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def _group_lines(n: int, g: Group) -> list[str]:
    head = g.head
    kinds = Counter(o.kind.value if o.kind else "?" for o in g.fds)
    kind_text = ", ".join(f"{k}" if c == g.count else f"{k} {c}" for k, c in kinds.items())
    syscall = head.birth.syscall if head.birth else "an unseen syscall"
    ages = [o.age_s for o in g.fds if o.age_s is not None]
    age = ""
    if ages:
        lo, hi = min(ages), max(ages)
        age = f", age {hi:.1f}s" if g.count == 1 else f", ages {lo:.1f}s-{hi:.1f}s"
    states = Counter(o.now.state.value for o in g.fds if o.now is not None and o.now.state)
    lines = [f"{n}) {g.count} x {kind_text} from {syscall}{age}"]
    facts = []
    if states:
        facts.append("state " + ", ".join(f"{s} {c}" for s, c in states.most_common()))
    epolled = sum(1 for o in g.fds if o.birth and o.birth.epoll_added)
    if head.birth is not None and head.epoll_followed:
        facts.append(f"registered with epoll: {epolled} of {g.count}")
    # Only sockets, pipes and the like are polled; a file is never in an epoll set.
    in_epoll = [
        o.in_epoll
        for o in g.fds
        if o.in_epoll is not None and o.kind is not None and (o.kind.is_socket or o.kind in _POLLED)
    ]
    if in_epoll:
        facts.append(f"in an epoll set at the end: {sum(in_epoll)}")
    if facts:
        lines.append("   " + "; ".join(facts))
    lines.append(f"   verdict: {g.verdict.text}")
    errors = Counter(describe_after(a) for o in g.fds if o.birth for a in o.birth.after if a.error)
    if errors:
        lines.append(
            "   then: " + ", ".join(f"{e}" + (f" x{c}" if c > 1 else "") for e, c in errors.items())
        )
    if head.birth is not None and head.birth.dup_of:
        lines.append(f"   duplicate of {head.birth.dup_of}")
    frames = short_frames(head.frames, limit=10)
    if frames:
        lines.append("   created at (innermost first):")
        lines += [f"     {f}" for f in frames]
    elif head.birth is None:
        lines.append("   born while not traced (no syscall seen): first seen open at the end")
    fds = " ".join(str(o.fd) for o in g.fds[:40])
    if g.count > 40:
        fds += f" ... (+{g.count - 40})"
    lines.append(f"   fds: {fds}")
    return lines


def render_human(rep: TraceReport) -> None:
    out = console()
    cmd = " ".join(rep.command)
    if len(cmd) > 70:
        cmd = cmd[:67] + "..."
    method = {
        "attach": "attached with strace",
        "launch": "launched under strace --seccomp-bpf",
        "poll": "polling snapshots (no ptrace)",
    }[rep.mode]
    stacks = "with creation stacks (strace -k)" if rep.stacks else "WITHOUT creation stacks"
    out.print(f"trace of pid {rep.target}  {cmd}", markup=False)
    out.print(f"{method}, {rep.window_s:.1f}s window, {stacks}", markup=False)
    if rep.mode != "poll":
        closed = (
            f"{rep.closed} closed"
            if "closes" in rep.followed
            else f"{rep.closed} seen replaced (closes not followed)"
        )
        out.print(
            f"{rep.created} fds created in the window, {closed}, "
            f"{len(rep.open_at_end)} still open at the end"
            + (" (checked against the live process)" if rep.checked else ""),
            markup=False,
        )
    else:
        n = len(rep.open_at_end)
        out.print(f"{n} fds appeared during the window and are still open", markup=False)
    if rep.exhaustion:
        first = rep.exhaustion[0]
        kinds = Counter(e.errno for e in rep.exhaustion)
        out.print(
            f"fd exhaustion: {len(rep.exhaustion)} syscalls failed with "
            + ", ".join(f"{k} x{c}" for k, c in kinds.items())
            + f"; first at {_clock(first.at)} in {first.syscall}",
            markup=False,
        )
    for w in rep.warnings:
        out.print(f"note: {w}", markup=False)
    if not rep.groups:
        out.print("\nno fd created in the window is still open: nothing leaked here", markup=False)
        return
    for n, g in enumerate(rep.groups, start=1):
        out.print()
        for line in _group_lines(n, g):
            out.print(line, markup=False)


@click.command(
    "trace",
    # Options may follow the PID (`trace 123 --for 60s`); everything after `--`
    # is the command, untouched.
    context_settings={"ignore_unknown_options": True},
)
@click.option("--for", "window", default=None, help="Window length: 60s, 2m, 500ms. [attach: 60s]")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object (target, window_s, open_at_end, groups, ...).",
)
@click.option("--stacks/--no-stacks", default=True, help="Creation stacks with strace -k.")
@click.option(
    "--closes/--no-closes",
    default=None,
    help="Follow close() (one more stop and stack per close). [attach: off, the end "
    "snapshot decides what is open; launch: on]",
)
@click.option("--epoll", is_flag=True, help="Follow epoll_ctl registrations (costly).")
@click.option("--scm-rights", is_flag=True, help="Follow fds received over unix sockets.")
@click.option("--full", is_flag=True, help="Follow closes, epoll and SCM_RIGHTS (slowest).")
@click.option("--raw", "raw", default=None, help="Keep strace's own output in this file.")
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit 10 when an fd created in the window is still open at its end.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def trace(
    window: str | None,
    as_json: bool,
    stacks: bool,
    closes: bool | None,
    epoll: bool,
    scm_rights: bool,
    full: bool,
    raw: str | None,
    exit_code: bool,
    args: tuple[str, ...],
) -> None:
    """Birth certificates of fds left open: who created each one, and what followed.

    \b
      fdguard trace PID --for 60s     attach to a running process (all threads)
      fdguard trace --for 30s -- CMD  run CMD under trace (stops it at the end)

    The window ends after --for, when the target exits, or on ^C; fds created
    in it and still open are grouped by creation stack, split into libuv,
    runtime and application frames, with a verdict per group.

    Cost: a diagnostic window, not always-on. Attaching stops the target on
    every syscall (launch mode only on traced ones), and with stacks each fd
    birth costs node 10-25 ms of unwinding (bench/trace_cost.py). By default
    only births are followed; --closes, --epoll, --full follow more, at more cost.
    """
    if not args:
        raise UsageError("give a PID to attach to, or -- CMD ARGS to launch")
    seconds = parse_duration(window) if window is not None else None
    launch = not (len(args) == 1 and args[0].isdigit())
    follow = Follow(
        closes=full or (closes if closes is not None else launch),
        epoll=full or epoll,
        scm_rights=full or scm_rights,
    )
    if not launch:
        pid = int(args[0])
        if pid <= 0:
            raise UsageError(f"PID must be a positive number, not {pid}")
        rep = trace_pid(pid, seconds or 60.0, stacks=stacks, follow=follow, keep_output=raw)
    else:
        cmd = list(args[1:] if args[0] == "--" else args)
        rep = trace_command(
            cmd,
            seconds if seconds is not None else 10**9,
            stacks=stacks,
            follow=follow,
            keep_output=raw,
        )
    if as_json:
        echo_json(rep.to_json())
    else:
        render_human(rep)
    if exit_code and rep.open_at_end:
        raise click.exceptions.Exit(int(ExitStatus.LEAK_FOUND))
