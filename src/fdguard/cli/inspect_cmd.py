"""`fdguard inspect PID` and `fdguard count PID`: see every fd of a process."""

from __future__ import annotations

import dataclasses

import click
from rich.table import Table

from fdguard.cli.render import console, echo_json
from fdguard.errors import UsageError
from fdguard.inspect import count, snapshot
from fdguard.model import TROUBLE_STATES, FdKind, Snapshot, TcpState
from fdguard.runtimes import detect_json

_KINDS = [k.value for k in FdKind]
_STATES = [s.value for s in TcpState]


def _filter(snap: Snapshot, kinds: tuple[str, ...], states: tuple[str, ...]) -> Snapshot:
    fds = snap.fds
    if kinds:
        wanted = set(kinds)
        # "tcp" asks for both families, as `ss -t` does; "tcp6" only v6.
        if "tcp" in wanted:
            wanted.add("tcp6")
        if "udp" in wanted:
            wanted.add("udp6")
        fds = tuple(f for f in fds if f.kind.value in wanted)
    if states:
        fds = tuple(f for f in fds if f.state is not None and f.state.value in states)
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
@click.option("--proc-root", default="/proc", show_default=True, hidden=True)
def inspect(
    pid: int,
    as_json: bool,
    kinds: tuple[str, ...],
    states: tuple[str, ...],
    fdinfo: bool,
    proc_root: str,
) -> None:
    """Show every fd of PID, classified, against its limits (like lsof -p, but faster)."""
    if pid <= 0:
        raise UsageError(f"PID must be a positive number, not {pid}")
    full = snapshot(pid, fdinfo=fdinfo, root=proc_root)
    states = tuple(s.upper() for s in states)
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
