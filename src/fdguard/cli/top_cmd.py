"""`fdguard top`: the processes nearest their fd limit on this host, and the host's table."""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import click
from rich.live import Live
from rich.text import Text

from fdguard.cli.render import console, echo_json
from fdguard.errors import UsageError
from fdguard.survey import FdUsage, HostSurvey, SortKey, growth, rank_key, survey

NEAR = 0.8
"""A process at this share of its soft limit or more is flagged (the usual alert level)."""


def _lim(v: int | None) -> str:
    return "unlimited" if v is None else str(v)


@dataclasses.dataclass(frozen=True)
class _Round:
    """One survey, with each process's change since the last one and since the first
    (None for a one-shot survey)."""

    survey: HostSurvey
    last: dict[int, int] | None = None
    start: dict[int, int] | None = None
    elapsed: float = 0.0
    new: frozenset[int] = frozenset()
    """PIDs the first survey did not list (started since, or held no fd then)."""


def _row(p: FdUsage, r: _Round) -> str:
    share = p.share
    use = "-" if share is None else f"{share:.1%}"
    flag = "  near the limit" if share is not None and share >= NEAR else ""
    name = p.name if len(p.name) <= 16 else p.name[:15] + "~"
    row = f"{p.pid:>8}  {name:<16} {p.count:>7} {_lim(p.soft):>9} {use:>7} {_lim(p.hard):>9}"
    if r.last is not None and r.start is not None:
        since = "new" if p.pid in r.new else f"{r.start.get(p.pid, 0):+d}"
        row += f" {r.last.get(p.pid, 0):>+7} {since:>7}"
    return row + flag


def render(r: _Round, top: int | None, sort: SortKey) -> list[str]:
    s = r.survey
    lines = []
    if s.file_nr is not None:
        allocated, unused, file_max = s.file_nr
        share = s.file_share
        pct = "" if share is None else f", {share:.1%}"
        lines.append(
            f"host file table: {allocated - unused:,} of {file_max:,} handles in use{pct}"
            " (fs.file-nr: ENFILE for every process at the maximum)"
        )
    unread = (
        f", {s.unreadable} unreadable (another user's: run as root to see them)"
        if s.unreadable
        else ""
    )
    order = {
        "usage": "nearest their soft limit first",
        "count": "most fds first",
        "growth": "most fds opened since the start first",
    }[sort]
    lines.append(f"{len(s.processes)} processes hold fds{unread}; {order}:")
    head = f"{'PID':>8}  {'NAME':<16} {'FDS':>7} {'SOFT':>9} {'USE':>7} {'HARD':>9}"
    if r.last is not None:
        head += f" {'CHANGE':>7} {'SINCE':>7}"
    lines.append(head)
    shown = s.processes if top is None else s.processes[:top]
    lines.extend(_row(p, r) for p in shown)
    if len(shown) < len(s.processes):
        lines.append(f"... and {len(s.processes) - len(shown)} more (-n 0 shows all)")
    if r.last is not None:
        lines.append(
            f"CHANGE: since the last refresh; SINCE: over {r.elapsed:.1f} s"
            " (new: not there at the start)"
        )
    return lines


def _json(r: _Round, top: int | None) -> dict[str, Any]:
    doc = r.survey.to_json(top)
    if r.last is not None and r.start is not None:
        for p in doc["processes"]:
            p["change"] = r.last.get(p["pid"], 0)
            p["since_start"] = r.start.get(p["pid"], 0)
            p["new"] = p["pid"] in r.new
        doc["elapsed"] = round(r.elapsed, 3)
    return doc


def _rounds(
    pattern: re.Pattern[str] | None, sort: SortKey, interval: float, rounds: int | None
) -> Iterator[_Round]:
    """Yield a `_Round` every `interval` seconds, `rounds` times (None: until Ctrl-C)."""
    t0 = time.monotonic()
    first = prev = survey(name=pattern, sort=sort)
    at_start = {p.pid for p in first.processes}
    yield _Round(first, {}, {}, 0.0)
    n = 1
    while rounds is None or n < rounds:
        time.sleep(max(0.0, t0 + n * interval - time.monotonic()))  # a steady cadence
        cur = survey(name=pattern, sort=sort)
        since = growth(first, cur)
        if sort == "growth":
            ranked = sorted(cur.processes, key=lambda p: rank_key(p, sort, since))
            cur = dataclasses.replace(cur, processes=tuple(ranked))
        new = frozenset(p.pid for p in cur.processes if p.pid not in at_start)
        yield _Round(cur, growth(prev, cur), since, time.monotonic() - t0, new)
        prev = cur
        n += 1


@click.command("top")
@click.option(
    "-n",
    "--top",
    "top",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Show this many processes (0: all).",
)
@click.option(
    "--sort",
    type=click.Choice(["usage", "count", "growth"]),
    default="usage",
    show_default=True,
    help="usage: share of the soft limit in use (unlimited last); count: open fds; "
    "growth (with --interval): fds opened since the start.",
)
@click.option("--name", metavar="REGEX", help="Only processes whose name (comm) matches.")
@click.option(
    "-d",
    "--interval",
    type=click.FloatRange(min=0.1),
    help="Refresh every this many seconds (until Ctrl-C), with each process's change "
    "since the last refresh and since the start.",
)
@click.option(
    "--rounds", type=click.IntRange(min=1), help="With --interval: stop after this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per refresh).")
def top_cmd(
    top: int,
    sort: SortKey,
    name: str | None,
    interval: float | None,
    rounds: int | None,
    as_json: bool,
) -> None:
    """The processes nearest their fd limit on this host, and the host's file table.

    One O(1) fd count, name and limit read per process (nothing is listed or
    classified): for the first minute of an EMFILE incident, before `fdguard
    inspect PID` on the one that matters. Rows at 80% of the soft limit or more
    are flagged. With --interval it refreshes, and --sort growth puts the
    processes opening fds fastest first: leak suspects, for `fdguard watch`.
    """
    try:
        pattern = re.compile(name) if name is not None else None
    except re.error as err:
        raise UsageError(f"--name {name!r} is not a regular expression: {err}") from err
    if interval is None and (rounds is not None or sort == "growth"):
        raise UsageError(
            ("--rounds" if rounds is not None else "--sort growth") + " needs --interval"
        )
    shown = None if top == 0 else top
    if interval is None:
        r = _Round(survey(name=pattern, sort=sort))
        if as_json:
            echo_json(_json(r, shown))
        else:
            for line in render(r, shown, sort):
                click.echo(line)
        return
    live_view = not as_json and sys.stdout.isatty()
    try:
        if live_view:
            with Live(Text(""), console=console(), auto_refresh=False) as live:
                for r in _rounds(pattern, sort, interval, rounds):
                    live.update(Text("\n".join(render(r, shown, sort))), refresh=True)
            return
        for i, r in enumerate(_rounds(pattern, sort, interval, rounds)):
            if as_json:
                echo_json(_json(r, shown))
                continue
            if i:
                click.echo("")
            stamp = time.strftime("%H:%M:%S", time.localtime(r.survey.t))
            click.echo(f"--- {stamp}")
            for line in render(r, shown, sort):
                click.echo(line)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return  # Ctrl-C is how a refreshing top ends: not an error
