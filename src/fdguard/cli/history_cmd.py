"""`fdguard history` and `fdguard plot`: read back what `fdguard watch` recorded."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from fdguard.cli.render import console, echo_json
from fdguard.errors import UsageError
from fdguard.plot import plot_history
from fdguard.store import Store, StoredTarget, default_path

_store_option = click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite store [default: $XDG_DATA_HOME/fdguard/fdguard.db].",
)
_select = [
    click.option("--id", "target_id", type=int, default=None, help="One target by store id."),
    click.option("--pid", type=int, default=None, help="Targets with this PID."),
    click.option(
        "--target",
        "label",
        default=None,
        help="Every process found by this target spec (e.g. name:^node$), across restarts.",
    ),
    click.option(
        "--since", type=click.FloatRange(min=0), default=None, help="Only the last SECONDS."
    ),
]


def _open(store_path: Path | None) -> Store:
    path = store_path or default_path()
    if not path.exists():
        raise UsageError(f"no store at {path}: run `fdguard watch` first (or pass --store)")
    return Store(path)


def _selected(
    store: Store, target_id: int | None, pid: int | None, label: str | None
) -> list[StoredTarget]:
    targets = store.targets()
    if target_id is not None:
        targets = [t for t in targets if t.id == target_id]
    if pid is not None:
        targets = [t for t in targets if t.ref.pid == pid]
    if label is not None:
        targets = [t for t in targets if t.label == label]
    return targets


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _target_detail(store: Store, t: StoredTarget, since: float | None) -> dict[str, Any]:
    samples = store.samples(t.id, since=since)
    return {
        **t.to_json(),
        "samples": [
            {"t": s.t, "count": s.count, "soft_limit": s.soft_limit, "step": s.step}
            for s in samples
        ],
        "kinds": [
            {"t": k.t, "dim": k.dim, "name": k.name, "n": k.n}
            for k in store.kind_counts(t.id)
            if since is None or k.t >= since
        ],
        "alerts": [
            {
                "t": a.t,
                "rule": a.rule,
                "state": a.state,
                "severity": a.severity,
                "message": a.message,
            }
            for a in store.alerts(t.id)
        ],
        "events": [{"t": e.t, "type": e.type, **e.data} for e in store.events(t.id)],
    }


def _csv_lines(store: Store, t: StoredTarget, since: float | None) -> list[str]:
    """`timestamp,count[,kind...]` rows, the input of `fdguard analyze`. Kind columns
    are forward-filled from the snapshots (taken at the start and on a slower cadence
    than the counts); without any snapshot there are none. A downsampled row's count is
    its bucket's highest."""
    samples = store.samples(t.id, since=since)
    snaps: dict[float, dict[str, int]] = {}
    for k in store.kind_counts(t.id):
        name = k.name if k.dim == "kind" else f"tcp:{k.name}"
        snaps.setdefault(k.t, {})[name] = k.n
    names = sorted({n for row in snaps.values() for n in row})
    lines = [",".join(["timestamp", "count", *names])]
    times = sorted(snaps)
    i, current = 0, None
    for s in samples:
        while i < len(times) and times[i] <= s.t:
            current = snaps[times[i]]
            i += 1
        if names and current is None:
            continue  # before the first snapshot: kinds unknown
        kinds = [str(current.get(n, 0)) for n in names] if current is not None else []
        lines.append(",".join([f"{s.t:.3f}", str(s.count), *kinds]))
    return lines


@click.command()
@_store_option
@_select[0]
@_select[1]
@_select[2]
@_select[3]
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Print one process's series as CSV for `fdguard analyze`: timestamp,count, "
    "then its count of each kind and TCP state (as of the last snapshot before each "
    "sample).",
)
def history(
    store_path: Path | None,
    target_id: int | None,
    pid: int | None,
    label: str | None,
    since: float | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """List recorded processes, or show one's samples, alerts and events."""
    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    store = _open(store_path)
    try:
        after = time.time() - since if since is not None else None
        targets = _selected(store, target_id, pid, label)
        detail = target_id is not None or pid is not None or label is not None
        if detail and not targets:
            raise UsageError("no recorded target matches")
        if as_csv:
            if len(targets) != 1 or not detail:
                ids = ", ".join(str(t.id) for t in targets[:10])
                raise UsageError(
                    f"--csv prints one process's series; {len(targets)} recorded processes "
                    f"match (ids {ids}; a restart is another process): pick one with --id"
                    if detail
                    else "--csv needs --id, --pid or --target"
                )
            for line in _csv_lines(store, targets[0], after):
                click.echo(line)
            return
        if as_json:
            if detail:
                echo_json({"targets": [_target_detail(store, t, after) for t in targets]})
            else:
                echo_json(
                    {
                        "targets": [
                            {**t.to_json(), "samples": len(store.samples(t.id))} for t in targets
                        ]
                    }
                )
            return
        out = console()
        if not detail:
            table = Table(box=None)
            for col in (
                "ID",
                "PID",
                "TARGET",
                "COMMAND",
                "FIRST SEEN",
                "LAST SEEN",
                "SAMPLES",
                "LAST",
                "MAX",
                "ALERTS",
            ):
                table.add_column(col)
            for t in targets:
                s = store.samples(t.id)
                table.add_row(
                    str(t.id),
                    str(t.ref.pid),
                    t.label,
                    " ".join(t.command)[:50],
                    _iso(t.first_seen),
                    _iso(t.last_seen),
                    str(len(s)),
                    str(s[-1].count) if s else "-",
                    str(max(x.count for x in s)) if s else "-",
                    str(sum(1 for a in store.alerts(t.id) if a.state == "firing")),
                )
            out.print(table)
            return
        for t in targets:
            d = _target_detail(store, t, after)
            out.print(f"target {t.id}: pid {t.ref.pid} {' '.join(t.command)} [{t.label}]")
            for e in d["events"]:
                out.print(f"  {_iso(e['t'])} event {e['type']}")
            for a in d["alerts"]:
                out.print(f"  {_iso(a['t'])} alert {a['rule']} {a['state']}: {a['message']}")
            for s in d["samples"]:
                out.print(f"  {_iso(s['t'])} {s['count']:>7} / {s['soft_limit']}")
    finally:
        store.close()


@click.command()
@_store_option
@_select[0]
@_select[1]
@_select[2]
@_select[3]
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="PNG file to write.",
)
@click.option("--title", default=None, help="Chart title.")
def plot(
    store_path: Path | None,
    target_id: int | None,
    pid: int | None,
    label: str | None,
    since: float | None,
    output: Path,
    title: str | None,
) -> None:
    """Chart recorded fd counts by kind against the limit, alerts and restarts marked (PNG)."""
    if target_id is None and pid is None and label is None:
        raise UsageError("say what to plot: --id, --pid or --target")
    store = _open(store_path)
    try:
        targets = _selected(store, target_id, pid, label)
        if not targets:
            raise UsageError("no recorded target matches")
        after = time.time() - since if since is not None else None
        path = plot_history(store, [t.id for t in targets], output, title=title, since=after)
    finally:
        store.close()
    click.echo(str(path))
