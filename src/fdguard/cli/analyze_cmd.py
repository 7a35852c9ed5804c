"""`fdguard analyze SERIES.csv`: judge an fd-count series from any monitoring offline."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

from fdguard.cli.durations import parse_duration
from fdguard.cli.render import echo_json
from fdguard.detect import DetectorConfig, LeakVerdict, analyze, analyze_by_kind, eta_against
from fdguard.errors import ExitStatus, UsageError
from fdguard.promsource import (
    PromSeries,
    check_url,
    judge_all,
    limit_query_for,
    load_range_json,
    match_limits,
    parse_headers,
    query_range,
    shown_url,
    step_for,
)

HELP_EPILOG = """\b
SERIES.csv: one sample per line, `timestamp,count[,KIND...]`, with or without a
header line. timestamp is epoch seconds or ISO 8601 (naive times are UTC); count
is the process's open fds; further columns are per-kind counts (e.g. tcp,
close_wait), named by the header, each judged on its own, so a leak of one kind
under a flat total is still found. Rows must be in time order.

\b
Or from Prometheus, one verdict per series (per process):
  fdguard analyze --prometheus http://127.0.0.1:9090 \\
      --query 'process_open_fds{job="api"}' --since 7d
judges every series of the range query at once, each against its own soft
limit (process_max_fds with the same labels, or --limit-query, or --limit).
SERIES may also be a saved range query: the JSON of /api/v1/query_range or of
`promtool query range -o json` (with process_max_fds series in it for limits).
--json then adds `series`, one verdict each; the top-level verdict is the
first series to leak (else the first series).

\b
Exit statuses:
  0   no leak found, or too early to tell (less than one --period of
      history: the output says so, and --json's warmup_left is not null)
  10  a leak was found (in the total or in one kind)
  2   unusable input: unreadable file, bad CSV (the message names the line),
      a Prometheus that cannot be reached or rejects the query, a query that
      matches no series, or bad options
  1   any other error
"""


@dataclass(frozen=True)
class SeriesTable:
    """A parsed series: timestamps, total counts, and per-kind counts by column name."""

    times: list[float]
    counts: list[float]
    kinds: dict[str, list[float]]


def _number(cell: str) -> float | None:
    try:
        x = float(cell)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _timestamp(cell: str) -> float | None:
    x = _number(cell)
    if x is not None:
        return x
    try:
        dt = datetime.fromisoformat(cell.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_series_csv(lines: Iterable[str], source: str = "SERIES.csv") -> SeriesTable:
    """Parse `timestamp,count[,kind...]` rows; a non-numeric first row is the header.

    Raises:
        UsageError: naming `source:line` for the first malformed row.
    """
    reader = csv.reader(lines)
    header: list[str] | None = None
    times: list[float] = []
    counts: list[float] = []
    columns: list[list[float]] = []
    width = 0
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if header is None and not times and _number(cells[1] if len(cells) > 1 else "") is None:
            header = cells
            if len(header) < 2:
                raise UsageError(f"{source}:{line}: the header needs timestamp,count columns")
            width = len(header)
            columns = [[] for _ in header[2:]]
            continue
        if not width:
            width = len(cells)
            columns = [[] for _ in cells[2:]]
        if len(cells) != width or width < 2:
            raise UsageError(
                f"{source}:{line}: expected {max(width, 2)} columns "
                f"(timestamp,count[,kind...]), got {len(cells)}"
            )
        t = _timestamp(cells[0])
        if t is None:
            raise UsageError(f"{source}:{line}: timestamp {cells[0]!r} is not a number or ISO 8601")
        if times and t < times[-1]:
            raise UsageError(f"{source}:{line}: timestamp {cells[0]} goes back in time")
        values = [_number(c) for c in cells[1:]]
        for name, v, raw in zip(
            (header or ["timestamp", "count", *[f"column{i}" for i in range(3, width + 1)]])[1:],
            values,
            cells[1:],
            strict=True,
        ):
            if v is None or v < 0:
                raise UsageError(f"{source}:{line}: {name} {raw!r} is not a non-negative number")
        times.append(t)
        counts.append(values[0])  # type: ignore[arg-type]  # checked above
        for col, v in zip(columns, values[1:], strict=True):
            col.append(v)  # type: ignore[arg-type]  # checked above
    if not times:
        raise UsageError(f"{source}: no samples")
    names = header[2:] if header else [f"column{i}" for i in range(3, width + 1)]
    return SeriesTable(times, counts, dict(zip(names, columns, strict=True)))


def config_for_period(hours: float) -> DetectorConfig:
    """The default tuning with every duration rescaled to a `hours`-long period."""
    base = DetectorConfig()
    factor = hours * 3600 / base.period_seconds
    scaled = {
        f.name: getattr(base, f.name) * factor
        for f in dataclasses.fields(DetectorConfig)
        if f.name.endswith("_seconds")
    }
    return DetectorConfig(**scaled)


def judge(
    table: SeriesTable, limit: int | None, config: DetectorConfig
) -> tuple[LeakVerdict, str | None, dict[str, LeakVerdict]]:
    """The verdict to report: the total's, unless only a kind leaks (then that kind's)."""
    total = analyze(table.times, table.counts, limit=limit, config=config)
    kinds = analyze_by_kind(table.times, table.kinds, limit, config=config)
    if total.leak:
        return total, None, kinds
    leaking = [(v.detected_at or math.inf, k) for k, v in kinds.items() if v.leak]
    if not leaking:
        return total, None, kinds
    _, kind = min(leaking)
    v = kinds[kind]
    level = total.level if total.level is not None else table.counts[-1]
    return dataclasses.replace(v, eta_seconds=eta_against(v, level, limit)), kind, kinds


def _human(v: LeakVerdict, kind: str | None, kinds: dict[str, LeakVerdict]) -> list[str]:
    what = f"{kind} fds" if kind else "fds"
    lines = []
    if v.leak:
        at = datetime.fromtimestamp(v.detected_at or 0, tz=UTC).isoformat(sep=" ")
        lines.append(f"LEAK of {what}, detected at {v.detected_at:.0f} ({at})")
    elif v.warmup_left is not None:
        lines.append(
            f"too early to tell: {v.warmup_left / 3600:.1f} h more history needed"
            " (one --period, to tell a leak from a daily cycle)"
        )
    elif v.confirming:
        lines.append("no leak yet: a rise is being confirmed")
    else:
        lines.append("no leak found")
    if v.rate_per_hour is not None:
        lines.append(f"rate: {v.rate_per_hour:+.2f} fds/hour")
    if v.eta_seconds is not None:
        lines.append(f"time to the soft limit: {v.eta_seconds / 3600:.1f} h")
    lines.append(f"confidence: {v.confidence:.2f}")
    lines.append(f"why: {v.reason}")
    for name, kv in kinds.items():
        tag = "LEAK" if kv.leak else "learning" if kv.warmup_left is not None else "ok"
        rate = "" if kv.rate_per_hour is None else f" {kv.rate_per_hour:+.2f}/h"
        lines.append(f"  {name}: {tag}{rate}")
    return lines


def _read(series: str) -> tuple[str, str]:
    """(text, name) of the SERIES argument (`-` is stdin)."""
    try:
        if series == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(series, "rb") as fh:
                data = fh.read()
        text = data.decode("utf-8-sig")
    except OSError as err:
        raise UsageError(f"cannot read {series}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise UsageError(f"{series}: not UTF-8 text") from err
    return text, "<stdin>" if series == "-" else series


@dataclass(frozen=True)
class _Judged:
    """One Prometheus series and its verdict."""

    series: PromSeries
    limit: int | None
    verdict: LeakVerdict

    def to_json(self) -> dict[str, Any]:
        return {"series": self.series.name, "labels": self.series.labels,
                "limit": self.limit, **self.verdict.to_json()}


def _judge_all(
    series: list[PromSeries], limits: list[int | None], config: DetectorConfig, jobs: int
) -> list[_Judged]:
    verdicts = judge_all(series, limits, config, jobs=jobs)
    return [_Judged(*row) for row in zip(series, limits, verdicts, strict=True)]


def _reported(judged: list[_Judged]) -> _Judged:
    """The series the headline is about: the first to leak, else the first."""
    leaking = [j for j in judged if j.verdict.leak]
    if not leaking:
        return judged[0]
    return min(leaking, key=lambda j: j.verdict.detected_at or math.inf)


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _prom_line(j: _Judged) -> str:
    v = j.verdict
    if v.leak:
        head = f"LEAK, detected at {_utc(v.detected_at or 0)} UTC"
    elif v.warmup_left is not None:
        head = f"too early to tell ({v.warmup_left / 3600:.1f} h more history needed)"
    elif v.confirming:
        head = "no leak yet: a rise is being confirmed"
    else:
        head = "no leak found"
    parts = [head]
    if v.rate_per_hour is not None and v.leak:
        parts.append(f"{v.rate_per_hour:+.2f} fds/hour")
    if v.eta_seconds is not None and v.leak:
        parts.append(f"soft limit {j.limit} in {v.eta_seconds / 3600:.1f} h")
    return f"{j.series.name}: " + "; ".join(parts)


def _prom_report(judged: list[_Judged], source: str, as_json: bool, query: str | None) -> bool:
    """Print the verdicts of Prometheus series; True if one leaks."""
    top = _reported(judged)
    if as_json:
        doc: dict[str, Any] = top.verdict.to_json()
        doc.update(kind=None, limit=top.limit, labels=top.series.labels, source=source,
                   query=query, series=[j.to_json() for j in judged])
        echo_json(doc)
    else:
        n = len(judged)
        leaks = sum(j.verdict.leak for j in judged)
        times = [t for j in judged for t in (j.series.times[:1] + j.series.times[-1:])]
        # ETAs count from each series' last sample: say when the data ends.
        span = (
            f" ({_utc(min(times))} to {_utc(max(times))} UTC)" if times else " (no samples)"
        )
        click.echo(f"{n} series from {source}{span}: {leaks} leaking")
        for j in sorted(judged, key=lambda j: (not j.verdict.leak, j.series.name)):
            click.echo(_prom_line(j))
            if j.verdict.leak:
                click.echo(f"  why: {j.verdict.reason}")
    return top.verdict.leak


def _split_limits(series: list[PromSeries]) -> tuple[list[PromSeries], list[PromSeries]]:
    """A saved answer may hold process_max_fds beside the counts: those are the limits."""
    limits = [s for s in series if s.labels.get("__name__") == "process_max_fds"]
    counts = [s for s in series if s.labels.get("__name__") != "process_max_fds"]
    return counts, limits


@click.command("analyze", epilog=HELP_EPILOG)
@click.argument("series", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Soft fd limit, for the ETA. A leak whose limit is more than 3 days away must "
    "hold a day, not 3 hours, before it is declared (all durations scale with --period).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--period",
    type=click.FloatRange(min=0.1),
    default=24.0,
    show_default=True,
    help="Longest healthy cycle, in hours; the detector needs this much history. "
    "Lower it only for series known to have no daily cycle.",
)
@click.option(
    "--prometheus",
    "prom_url",
    metavar="URL",
    help="Judge the series of --query on this Prometheus server (its HTTP API), instead "
    "of a file: days of history judged at once.",
)
@click.option(
    "--query",
    metavar="PROMQL",
    help="With --prometheus: the fd counts, one series per process  [default: "
    "process_open_fds]",
)
@click.option(
    "--limit-query",
    metavar="PROMQL",
    help="With --prometheus: each series' soft limit, matched by labels  [default: "
    "process_max_fds with --query's selector, when that is one of process_open_fds]",
)
@click.option("--since", metavar="DURATION", help="With --prometheus: how far back  [default: 7d]")
@click.option(
    "--step",
    metavar="DURATION",
    help="With --prometheus: one sample per step (raised to stay under Prometheus' "
    "11,000 points)  [default: 60s]",
)
@click.option(
    "--header",
    "headers",
    metavar="NAME:VALUE",
    multiple=True,
    help="With --prometheus: an HTTP header to send, e.g. 'Authorization: Bearer ...' "
    "(repeatable).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=lambda: os.cpu_count() or 1,
    show_default="the number of CPUs",
    help="Judge many series (Prometheus) over this many processes.",
)
def analyze_cmd(
    series: str | None,
    limit: int | None,
    as_json: bool,
    period: float,
    prom_url: str | None,
    query: str | None,
    limit_query: str | None,
    since: str | None,
    step: str | None,
    headers: tuple[str, ...],
    jobs: int,
) -> None:
    """Say whether an fd-count series leaks, how fast, and when it hits the limit.

    The verdict is causal: detected_at is the first sample at which fdguard's
    online detector, seeing only the data up to then, would have fired.
    """
    config = config_for_period(period)
    if prom_url is None:
        given = [o for o, v in (("--query", query), ("--limit-query", limit_query),
                                ("--since", since), ("--step", step),
                                ("--header", headers or None)) if v is not None]
        if given:
            raise UsageError(f"{given[0]} needs --prometheus URL")
        if series is None:
            raise UsageError(
                "give a SERIES file (CSV, or a saved Prometheus range query as JSON), "
                "or --prometheus URL"
            )
    elif series is not None:
        raise UsageError("give either a SERIES file or --prometheus URL, not both")
    if prom_url is not None:
        check_url(prom_url, "--prometheus")
        q = query or "process_open_fds"
        span = parse_duration(since or "7d")
        end = time.time()
        res = step_for(span, parse_duration(step or "60s"))
        sent = parse_headers(headers)
        found = query_range(prom_url, q, start=end - span, end=end, step=res, headers=sent)
        if not found:
            raise UsageError(
                f"{q!r} matched no series on {shown_url(prom_url)} over the last"
                f" {since or '7d'}"
            )
        lq = limit_query or limit_query_for(q)
        limits: list[int | None] = [limit] * len(found)
        if limit is None and lq is not None:
            limits = match_limits(found, query_range(prom_url, lq, start=end - span,
                                                     end=end, step=res, headers=sent))
        source = shown_url(prom_url)
        if _prom_report(_judge_all(found, limits, config, jobs), source, as_json, q):
            raise click.exceptions.Exit(int(ExitStatus.LEAK_FOUND))
        return
    assert series is not None
    text, name = _read(series)
    if text.lstrip()[:1] in ("{", "["):  # a saved Prometheus answer, not CSV
        counts, limit_series = _split_limits(load_range_json(text, name))
        if not counts:
            raise UsageError(f"{name}: no series of fd counts in it")
        lims: list[int | None] = (
            [limit] * len(counts) if limit else match_limits(counts, limit_series)
        )
        if _prom_report(_judge_all(counts, lims, config, jobs), name, as_json, None):
            raise click.exceptions.Exit(int(ExitStatus.LEAK_FOUND))
        return
    table = parse_series_csv(io.StringIO(text), source=name)
    verdict, kind, kinds = judge(table, limit, config)
    if as_json:
        doc: dict[str, Any] = verdict.to_json()
        doc["kind"] = kind
        doc["limit"] = limit
        doc["by_kind"] = {k: v.to_json() for k, v in kinds.items()}
        echo_json(doc)
    else:
        for line in _human(verdict, kind, kinds):
            click.echo(line)
    if verdict.leak:
        raise click.exceptions.Exit(int(ExitStatus.LEAK_FOUND))
