"""`fdguard inspect PID` and `fdguard count PID`: see every fd of a process."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from fdguard import fddiff
from fdguard.cli.durations import parse_duration
from fdguard.cli.render import console, echo_json
from fdguard.errors import UsageError
from fdguard.inspect import count, snapshot
from fdguard.model import TROUBLE_STATES, FdKind, Snapshot, TcpState
from fdguard.runtimes import detect_json

_KINDS = [k.value for k in FdKind]
_STATES = [s.value for s in TcpState]


def _keeper(kinds: tuple[str, ...], states: tuple[str, ...]) -> Callable[[str, str | None], bool]:
    """The --kind/--state test on an fd's kind and TCP state (names as in the JSON)."""
    wanted = set(kinds)
    # "tcp" asks for both families, as `ss -t` does; "tcp6" only v6.
    if "tcp" in wanted:
        wanted.add("tcp6")
    if "udp" in wanted:
        wanted.add("udp6")

    def keep(kind: str, state: str | None) -> bool:
        return (not kinds or kind in wanted) and (not states or state in states)

    return keep


def _filter(snap: Snapshot, kinds: tuple[str, ...], states: tuple[str, ...]) -> Snapshot:
    keep = _keeper(kinds, states)
    fds = tuple(f for f in snap.fds if keep(f.kind.value, f.state.value if f.state else None))
    return dataclasses.replace(snap, fds=fds)


def _summary_line(snap: Snapshot, total: int) -> str:
    soft = snap.limits.soft
    limit = "unlimited" if soft is None else f"{soft}"
    share = snap.share_of_soft_limit
    pct = f" ({share:.1%} of the soft limit)" if share is not None else ""
    hard = "unlimited" if snap.limits.hard is None else str(snap.limits.hard)
    cmd = " ".join(snap.command)
    if len(cmd) > 80:
        cmd = cmd[:77] + "..."
    return f"pid {snap.pid}  {cmd}\n{total} fds open, soft limit {limit}{pct}, hard {hard}"


def render_human(full: Snapshot, shown: Snapshot) -> None:
    out = console()
    out.print(_summary_line(full, full.count), markup=False)
    kinds = ", ".join(f"{k} {n}" for k, n in full.by_kind.items())
    out.print(f"by kind: {kinds or 'none'}", markup=False)
    states = full.by_tcp_state
    if states:
        parts = []
        for name, n in states.items():
            flag = " (!)" if TcpState(name) in TROUBLE_STATES else ""
            parts.append(f"{name} {n}{flag}")
        out.print("tcp states: " + ", ".join(parts), markup=False)
        trouble = {s: n for s, n in states.items() if TcpState(s) in TROUBLE_STATES}
        if trouble.get("CLOSE-WAIT"):
            out.print(
                f"  {trouble['CLOSE-WAIT']} in CLOSE-WAIT: the peer hung up and the "
                "process never closed these fds",
                markup=False,
            )
        if trouble.get("CLOSE"):
            out.print(
                f"  {trouble['CLOSE']} in CLOSE: never connected or connect failed, "
                "and never closed",
                markup=False,
            )
    for w in full.warnings:
        out.print(f"warning: {w}", markup=False)
    table = Table(box=None, pad_edge=False, show_edge=False)
    for col in ("FD", "KIND", "STATE", "LOCAL", "REMOTE", "TARGET / NOTE"):
        table.add_column(col, overflow="fold", no_wrap=col != "TARGET / NOTE")
    for f in shown.fds:
        target = f.target or ""
        if f.deleted:
            target += " (deleted)"
        if f.info is not None and f.info.epoll_targets is not None:
            target += f"  watches {len(f.info.epoll_targets)} fds"
        if f.info is not None and f.info.inotify_watches is not None:
            target += f"  {f.info.inotify_watches} watches"
        if f.note:
            target += f"  [{f.note}]"
        table.add_row(
            str(f.fd),
            f.kind.value,
            f.state.value if f.state else "",
            f.local or "",
            f.remote or "",
            target,
        )
    if shown.fds:
        out.print()
        out.print(table)
    elif shown.count != full.count:
        out.print("no fd matches the filter")


@click.command()
@click.argument("pid", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (DESIGN.md contract).")
@click.option(
    "--kind", "kinds", multiple=True, type=click.Choice(_KINDS), help="Only fds of this kind."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(_STATES, case_sensitive=False),
    help="Only sockets in this state (ss names, e.g. CLOSE-WAIT).",
)
@click.option(
    "--fdinfo/--no-fdinfo",
    default=False,
    help="Read flags (O_NONBLOCK, O_CLOEXEC) and position of every fd (slower).",
)
@click.option(
    "--diff",
    "before_file",
    metavar="BEFORE.json",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Show what changed since this snapshot (saved with --json): fds opened and "
    "closed, grouped by what they are, and sockets that changed state.",
)
@click.option(
    "--for",
    "for_",
    metavar="DURATION",
    help="Take a second snapshot this much later (30s, 5m; Ctrl-C takes it at once) "
    "and show what changed, as --diff does.",
)
@click.option("--proc-root", default="/proc", show_default=True, hidden=True)
def inspect(
    pid: int,
    as_json: bool,
    kinds: tuple[str, ...],
    states: tuple[str, ...],
    fdinfo: bool,
    before_file: str | None,
    for_: str | None,
    proc_root: str,
) -> None:
    """Show every fd of PID, classified, against its limits (like lsof -p, but faster).

    With --diff BEFORE.json or --for DURATION: what changed between two snapshots,
    the manual leak hunt (lsof twice and a diff by eye) done on classified fds.
    """
    if pid <= 0:
        raise UsageError(f"PID must be a positive number, not {pid}")
    states = tuple(s.upper() for s in states)
    if before_file is not None or for_ is not None:
        _diff(pid, before_file, for_, kinds, states, fdinfo, proc_root, as_json)
        return
    full = snapshot(pid, fdinfo=fdinfo, root=proc_root)
    shown = _filter(full, kinds, states)
    if as_json:
        doc = full.to_json()
        doc["runtime"] = detect_json(pid, root=proc_root)
        doc["fds"] = [f.to_json() for f in shown.fds]
        if kinds or states:
            doc["filter"] = {"kind": list(kinds), "state": list(states)}
        echo_json(doc)
    else:
        render_human(full, shown)


@click.command("count")
@click.argument("pids", type=int, nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print {pid: count} as JSON.")
def count_cmd(pids: tuple[int, ...], as_json: bool) -> None:
    """Count the open fds of each PID in O(1) (the size of /proc/PID/fd)."""
    counts = {pid: count(pid) for pid in pids}
    if as_json:
        echo_json({str(k): v for k, v in counts.items()})
    else:
        for pid, n in counts.items():
            click.echo(f"{pid}\t{n}")


def _diff(
    pid: int,
    before_file: str | None,
    for_: str | None,
    kinds: tuple[str, ...],
    states: tuple[str, ...],
    fdinfo: bool,
    root: str,
    as_json: bool,
) -> None:
    if before_file is not None and for_ is not None:
        raise UsageError("give --diff BEFORE.json or --for DURATION, not both")
    if for_ is not None:
        wait = parse_duration(for_)
        source = "the first snapshot"
        before: Any = snapshot(pid, fdinfo=fdinfo, root=root).to_json()
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: diff now
            time.sleep(wait)
    else:
        assert before_file is not None
        source = "<stdin>" if before_file == "-" else before_file
        try:
            with click.open_file(before_file, "r", encoding="utf-8") as fh:
                before = json.load(fh)
        except OSError as err:
            raise UsageError(f"cannot read {before_file}: {err.strerror or err}") from err
        except ValueError as err:
            raise UsageError(f"{source}: not JSON ({err}): save it with --json") from err
        if isinstance(before, dict) and before.get("filter"):
            raise UsageError(
                f"{source} was saved with --kind/--state: save it without them (filters "
                "apply to both sides here)"
            )
    now = snapshot(pid, fdinfo=fdinfo, root=root)
    keep = _keeper(kinds, states) if kinds or states else None
    d = fddiff.diff(before, now.to_json(), source=source, keep=keep)
    if as_json:
        echo_json(d.to_json())
        return
    for line in _diff_lines(d, now):
        click.echo(line)


def _diff_lines(d: fddiff.SnapshotDiff, now: Snapshot) -> list[str]:
    cmd = " ".join(" ".join(now.command).split())  # one line, whatever argv holds
    if len(cmd) > 60:
        cmd = cmd[:57] + "..."
    share = now.share_of_soft_limit
    limit = "" if share is None else f"; soft limit {now.limits.soft} ({share:.1%} now)"
    net = d.after_count - d.before_count
    lines = [
        f"pid {d.pid} ({cmd}): {d.before_count} -> {d.after_count} fds ({net:+d}) "
        f"in {d.seconds:.1f} s{limit}",
        f"opened {len(d.opened)}, closed {len(d.closed)}, "
        f"sockets that changed state {len(d.moved)}",
    ]
    for g in d.groups:
        both = f"  (opened {g.opened}, closed {g.closed})" if g.opened and g.closed else ""
        lines.append(f"  {g.net:>+6}  {g.kind:<8} {g.what}{both}".rstrip())
    for (a, b), n in d.moves().most_common():
        lines.append(f"  moved: {n} socket{'s' if n != 1 else ''} {a} -> {b}")
    if not d.groups and not d.moved:
        lines.append("  no change")
    return lines
