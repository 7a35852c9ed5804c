"""`fdguard limits PID` and `fdguard limits raise PID --to N|hard`: the fd limit of a process."""

from __future__ import annotations

import time
from typing import Literal

import click

from fdguard.cli.render import echo_json
from fdguard.errors import UsageError
from fdguard.inspect import count
from fdguard.limits import LimitChange, LimitsReport, raise_limit, read_limits, record_change
from fdguard.store import Store, default_path


def _lim(v: int | None) -> str:
    return "unlimited" if v is None else str(v)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _observe_rate(pid: int, seconds: float, first: int) -> float:
    """Fds per hour over `seconds` of watching (a crude rate; `fdguard watch` does better)."""
    start = time.monotonic()
    time.sleep(seconds)
    last = count(pid)
    elapsed = time.monotonic() - start
    return (last - first) / elapsed * 3600.0


def _show(rep: LimitsReport) -> None:
    share = f" ({rep.share:.1%})" if rep.share is not None else ""
    click.echo(f"pid {rep.process.pid}  {' '.join(rep.command)[:80]}")
    click.echo(
        f"RLIMIT_NOFILE soft {_lim(rep.limits.soft)}  hard {_lim(rep.limits.hard)}  "
        f"in use {rep.count}{share}  headroom {_lim(rep.headroom)}"
    )


class LimitsGroup(click.Group):
    """`fdguard limits PID` shows; `fdguard limits raise PID` changes (a sub-command)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] != "--help":
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group(cls=LimitsGroup)
def limits() -> None:
    """Show or raise the fd limit (RLIMIT_NOFILE) of a running process.

    \b
    fdguard limits PID                  soft/hard limit and usage
    fdguard limits raise PID --to N     raise the soft limit (prlimit)
    """


@limits.command("show")
@click.argument("pid", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(pid: int, as_json: bool) -> None:
    """Soft and hard RLIMIT_NOFILE of PID and how many fds it uses."""
    rep = read_limits(pid)
    if as_json:
        echo_json(rep.to_json())
    else:
        _show(rep)


@limits.command("raise")
@click.argument("pid", type=int)
@click.option(
    "--to",
    "to",
    required=True,
    help="New soft limit: a number, or 'hard' for the current hard limit.",
)
@click.option(
    "--allow-hard",
    is_flag=True,
    help="Also raise the hard limit when --to is above it (needs CAP_SYS_RESOURCE).",
)
@click.option(
    "--observe",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to watch the fd count first, to say how much time the raise buys.",
)
@click.option("--store", "store_path", type=click.Path(dir_okay=False),
              help="Record the change in this store (default: the per-user store).")
@click.option("--no-store", is_flag=True, help="Record nothing on disk.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def raise_cmd(pid: int, to: str, allow_hard: bool, observe: float, store_path: str | None,
              no_store: bool, as_json: bool) -> None:
    """Raise the soft fd limit of the running process PID (this changes PID).

    Raising the limit only buys time: a leak still reaches the new limit.
    """
    target: int | Literal["hard"]
    if to == "hard":
        target = "hard"
    else:
        try:
            target = int(to)
        except ValueError as err:
            raise UsageError(f"--to takes a number or 'hard', not {to!r}") from err
    rate: float | None = None
    if observe > 0:
        rate = _observe_rate(pid, observe, count(pid))
    change = raise_limit(pid, target, allow_hard=allow_hard)
    if change.changed and not no_store:
        with Store(store_path or default_path()) as store:
            record_change(store, change, time.time())
    if as_json:
        doc = change.to_json()
        doc["rate_per_hour"] = rate
        if rate is not None:
            doc["eta_seconds_before"] = change.eta_seconds(rate, after=False)
            doc["eta_seconds_after"] = change.eta_seconds(rate)
        echo_json(doc)
        return
    _render_change(change, rate)


def _render_change(change: LimitChange, rate: float | None) -> None:
    b, a = change.before, change.after
    pid = change.process.pid
    if not change.changed:
        click.echo(f"pid {pid}: soft limit already {_lim(a.soft)} (hard {_lim(a.hard)}): no change")
        return
    click.echo(
        f"pid {pid}: RLIMIT_NOFILE soft {_lim(b.soft)} -> {_lim(a.soft)}, "
        f"hard {_lim(b.hard)} -> {_lim(a.hard)} ({change.count} fds in use)"
    )
    msg = "warning: raising the limit only buys time; a leak reaches the new limit too"
    if rate is not None and rate > 0:
        now = _duration(change.eta_seconds(rate))
        was = _duration(change.eta_seconds(rate, after=False))
        msg += f": at {rate:.0f} fds/h the limit is reached in {now} (was {was})"
    elif rate is not None:
        msg += "; no growth seen while observing"
    else:
        msg += " (use --observe SECONDS or `fdguard watch` for an ETA)"
    click.echo(msg, err=True)
