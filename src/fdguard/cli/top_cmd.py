"""`fdguard top`: the processes nearest their fd limit on this host, and the host's table."""

from __future__ import annotations

import re

import click

from fdguard.cli.render import echo_json
from fdguard.errors import UsageError
from fdguard.survey import FdUsage, HostSurvey, SortKey, survey

NEAR = 0.8
"""A process at this share of its soft limit or more is flagged (the usual alert level)."""


def _lim(v: int | None) -> str:
    return "unlimited" if v is None else str(v)


def _row(p: FdUsage) -> str:
    share = p.share
    use = "-" if share is None else f"{share:.1%}"
    flag = "  near the limit" if share is not None and share >= NEAR else ""
    name = p.name if len(p.name) <= 16 else p.name[:15] + "~"
    return (
        f"{p.pid:>8}  {name:<16} {p.count:>7} {_lim(p.soft):>9} {use:>7} {_lim(p.hard):>9}{flag}"
    )


def render(s: HostSurvey, top: int | None, sort: SortKey) -> list[str]:
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
    order = "nearest their soft limit first" if sort == "usage" else "most fds first"
    lines.append(f"{len(s.processes)} processes hold fds{unread}; {order}:")
    lines.append(f"{'PID':>8}  {'NAME':<16} {'FDS':>7} {'SOFT':>9} {'USE':>7} {'HARD':>9}")
    shown = s.processes if top is None else s.processes[:top]
    lines.extend(_row(p) for p in shown)
    if len(shown) < len(s.processes):
        lines.append(f"... and {len(s.processes) - len(shown)} more (-n 0 shows all)")
    return lines


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
    type=click.Choice(["usage", "count"]),
    default="usage",
    show_default=True,
    help="usage: share of the soft limit in use (unlimited last); count: open fds.",
)
@click.option("--name", metavar="REGEX", help="Only processes whose name (comm) matches.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def top_cmd(top: int, sort: SortKey, name: str | None, as_json: bool) -> None:
    """The processes nearest their fd limit on this host, and the host's file table.

    One O(1) fd count and one limits read per process (nothing is listed or
    classified): for the first minute of an EMFILE incident, before `fdguard
    inspect PID` on the one that matters. Rows at 80% of the soft limit or more
    are flagged.
    """
    try:
        pattern = re.compile(name) if name is not None else None
    except re.error as err:
        raise UsageError(f"--name {name!r} is not a regular expression: {err}") from err
    s = survey(name=pattern, sort=sort)
    shown = None if top == 0 else top
    if as_json:
        echo_json(s.to_json(shown))
        return
    for line in render(s, shown, sort):
        click.echo(line)
