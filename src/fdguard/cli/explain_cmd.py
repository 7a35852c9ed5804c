"""`fdguard explain PID`: whose is every fd -- libuv's, the application's, or nobody's."""

from __future__ import annotations

from collections import Counter

import click
from rich.table import Table

from fdguard.attribute import VIEW_MODES, Explanation, FdVerdict, Verdict, explain
from fdguard.cli.render import console, echo_json
from fdguard.errors import UsageError
from fdguard.model import TcpState

_ORDER = [Verdict.UNOWNED, Verdict.INHERITED, Verdict.FS, Verdict.HANDLE, Verdict.STDIO,
          Verdict.LOOP_INTERNAL]


def _runtime_line(ex: Explanation) -> str:
    rt = ex.runtime
    if rt is None:
        return "runtime: no libuv found"
    extra = ", ".join(f"{k} {v}" for k, v in rt.versions.items())
    text = f"runtime: {rt.name}, libuv {rt.libuv_version or 'unknown'}"
    if extra:
        text += f" ({extra})"
    return text + f"\n  from {rt.source}"


def _group_key(v: FdVerdict) -> tuple[str, str, str, str]:
    state = v.fd.state.value if v.fd.state else ""
    return v.verdict.value, v.fd.kind.value, state, v.role or ""


def headlines(ex: Explanation) -> list[str]:
    """What the engineer on call reads first: whose fds these are, in a few lines."""
    out = []
    unowned = [v for v in ex.fds if v.verdict is Verdict.UNOWNED]
    if unowned:
        sure = "" if all(v.certain for v in unowned) else " (heuristic)"
        out.append(f"{len(unowned)} fd(s) no handle owns{sure}: the suspects for a leak inside "
                   "libuv or native code (fds " + ", ".join(str(v.fd.fd) for v in unowned[:10])
                   + (" ..." if len(unowned) > 10 else "") + ")")
    closewait = sum(1 for v in ex.fds
                    if v.verdict is Verdict.HANDLE and v.fd.state is TcpState.CLOSE_WAIT)
    if closewait:
        out.append(f"{closewait} socket(s) in CLOSE-WAIT held by the application's handles: "
                   "peers hung up and the application never closed them")
    files = sum(1 for v in ex.fds if v.verdict is Verdict.FS)
    if files:
        out.append(f"{files} file(s) opened by path and still open (fs API or open()); "
                   "no handle tracks them")
    if not out:
        out.append("every fd is accounted for: libuv's own, handles, files or stdio")
    return out


def render_human(ex: Explanation, show_all: bool) -> None:
    out = console()
    snap = ex.snapshot
    cmd = " ".join(snap.command)
    out.print(f"pid {snap.pid}  {cmd[:100]}", markup=False)
    out.print(_runtime_line(ex), markup=False)
    if ex.view is not None:
        out.print(f"handle view: {ex.view.source} ({len(ex.view.handles)} handles)", markup=False)
    for lp in ex.loops.loops:
        roles = ", ".join(f"{i.fd} {i.role}" + ("" if i.certain else "?") for i in lp.internal)
        state = f"watches {len(lp.watched)} fds" if lp.polled else "not polled yet"
        out.print(f"loop epoll {lp.epoll_fd}: {state}; own fds: {roles}", markup=False)
    if ex.loops.process_wide:
        pw = ", ".join(f"{i.fd} {i.role}" for i in ex.loops.process_wide)
        out.print(f"process-wide libuv fds: {pw}", markup=False)
    s = ex.summary
    out.print(
        f"expected {s.expected} (libuv and the application say they hold), actual {s.actual}, "
        f"unexplained {s.unexplained}; confidence {s.confidence}",
        markup=False,
    )
    out.print("by verdict: " + ", ".join(f"{k} {n}" for k, n in s.by_verdict.items()),
              markup=False)
    for line in headlines(ex):
        out.print(f"=> {line}", markup=False)
    for b in s.basis:
        out.print(f"  basis: {b}", markup=False)
    for note in ex.notes:
        out.print(f"note: {note}", markup=False)

    table = Table(box=None, pad_edge=False, show_edge=False)
    for col in ("FD", "KIND", "STATE", "VERDICT", "EVIDENCE"):
        table.add_column(col, overflow="fold", no_wrap=col != "EVIDENCE")
    rows = sorted(ex.fds, key=lambda v: (_ORDER.index(v.verdict), v.fd.fd))
    if not show_all:
        # Many fds share one story (10,000 accepted sockets): print each story once
        # with its count, and every unowned or uncertain fd on its own.
        groups = Counter(_group_key(v) for v in rows if v.verdict is not Verdict.UNOWNED)
        shown = 0
        for v in rows:
            if v.verdict is Verdict.UNOWNED:
                table.add_row(str(v.fd.fd), v.fd.kind.value,
                              v.fd.state.value if v.fd.state else "", v.verdict.value,
                              v.evidence)
                shown += 1
        seen: set[tuple[str, str, str, str]] = set()
        for v in rows:
            key = _group_key(v)
            if v.verdict is Verdict.UNOWNED or key in seen:
                continue
            seen.add(key)
            n = groups[key]
            label = str(v.fd.fd) if n == 1 else f"{n} fds"
            table.add_row(label, v.fd.kind.value, key[2], v.verdict.value,
                          v.evidence + (f" (e.g. fd {v.fd.fd})" if n > 1 else ""))
    else:
        for v in rows:
            table.add_row(str(v.fd.fd), v.fd.kind.value, v.fd.state.value if v.fd.state else "",
                          v.verdict.value + ("" if v.certain else "?"), v.evidence)
    out.print()
    out.print(table)


@click.command("explain")
@click.argument("pid", type=int)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: runtime, loops, fds[].verdict, summary.")
@click.option("--view", type=click.Choice(VIEW_MODES), default="auto", show_default=True,
              help="Where the handle view comes from. auto: an fdguard agent if one answers, "
                   "else Node's diagnostic report when node was started with "
                   "--report-on-signal (fdguard sends the report signal and removes the "
                   "report file). none: heuristics only, nothing is sent to the process. "
                   "inspector: through the Node inspector (needs --open-inspector).")
@click.option("--open-inspector", is_flag=True,
              help="Allow --view inspector: send SIGUSR1 so node opens its inspector on "
                   "127.0.0.1, take a diagnostic report through it, close it again.")
@click.option("--all", "show_all", is_flag=True, help="List every fd instead of grouping.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds to wait for a report or an agent.")
@click.option("--proc-root", default="/proc", show_default=True, hidden=True)
def explain_cmd(pid: int, as_json: bool, view: str, open_inspector: bool, show_all: bool,
                timeout: float, proc_root: str) -> None:
    """Explain every fd of PID: libuv's own, held by a handle, a file, or unowned.

    Compares what libuv and the application say they hold (Node's diagnostic
    report, or fdguard's agent) with the fds the kernel shows. Without a handle
    view it says which heuristics the verdicts rest on.
    """
    if pid <= 0:
        raise UsageError(f"PID must be a positive number, not {pid}")
    if view == "inspector" and not open_inspector:
        raise UsageError("--view inspector opens the target's Node inspector for a moment "
                         "(SIGUSR1); add --open-inspector to allow it")
    ex = explain(pid, view=view, root=proc_root, timeout=timeout)
    if as_json:
        echo_json(ex.to_json())
    else:
        render_human(ex, show_all)
