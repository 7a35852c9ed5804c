"""Charts of a recorded fd series for reports: count by kind against the soft limit, PNG and SVG.

Reads only what the store recorded (never /proc), like `fdguard.plot`, whose
shape it follows: one axis, the total in bold, the kinds (top six, the rest
summed) as steps, the soft limit dashed, alerts and restarts as vertical
lines. It differs where a report needs it: the time axis is relative to the
first sample (a reader compares durations, not wall clock), the title is given
by the caller (already redacted: the command line may carry secrets), both PNG
and SVG are written from one figure, and path simplification is off, so every
recorded sample is a vertex of the drawn line -- `Chart.points` are exactly
what was drawn, and tests check them against the store.

A long series (a day at 1 Hz is 86,400 samples) would make a 6 MB SVG and an
HTML report of megabytes for no visible gain: above MAX_POINTS samples per
process, each of MAX_POINTS / 2 time buckets contributes its lowest and its
highest sample, in time order. That envelope keeps every peak (what reaches
EMFILE) and every floor (what shows a leak) the eye could see at this width.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fdguard.errors import UsageError
from fdguard.plot import _release_fonts
from fdguard.store import AlertRecord, Store, StoredSample

_TOP_KINDS = 6
MAX_POINTS = 4000
TOTAL_GID = "fd-total"
LIMIT_GID = "fd-soft-limit"


@dataclass(frozen=True, slots=True)
class TargetSeries:
    """One process's recorded series: counts, kind breakdowns, alerts."""

    target_id: int
    pid: int
    samples: tuple[StoredSample, ...]
    kinds: dict[str, tuple[tuple[float, int], ...]]
    alerts: tuple[AlertRecord, ...]


@dataclass(frozen=True, slots=True)
class ChartData:
    """What one chart shows: the successive processes of one service, oldest first."""

    series: tuple[TargetSeries, ...]

    @property
    def t0(self) -> float:
        return min(s.samples[0].t for s in self.series if s.samples)

    @property
    def samples(self) -> tuple[StoredSample, ...]:
        return tuple(x for s in self.series for x in s.samples)


@dataclass(frozen=True, slots=True)
class Chart:
    """A written chart file and what it shows."""

    path: Path
    fmt: str
    width_px: int
    height_px: int
    points: tuple[tuple[float, int], ...] = field(repr=False)
    """(t, count) of every vertex of the total line, in wall-clock seconds."""


def chart_data(store: Store, target_ids: Sequence[int]) -> ChartData:
    """Read the series of `target_ids` (in that order) from the store.

    Raises:
        UsageError: none of them has a sample.
    """
    out: list[TargetSeries] = []
    known = {t.id: t for t in store.targets()}
    for tid in target_ids:
        kinds: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for k in store.kind_counts(tid):
            if k.dim == "kind":
                kinds[k.name].append((k.t, k.n))
        pid = known[tid].ref.pid if tid in known else 0
        out.append(
            TargetSeries(
                tid,
                pid,
                tuple(store.samples(tid)),
                {k: tuple(v) for k, v in kinds.items()},
                tuple(store.alerts(tid)),
            )
        )
    if not any(s.samples for s in out):
        raise UsageError("nothing to chart: the store has no samples for this target")
    return ChartData(tuple(out))


def envelope(samples: Sequence[StoredSample], max_points: int = MAX_POINTS
             ) -> list[StoredSample]:
    """`samples` when there are at most `max_points`; else the lowest and the highest
    sample of each of `max_points // 2` equal time buckets, in time order."""
    if len(samples) <= max_points:
        return list(samples)
    buckets = max(1, max_points // 2)
    t0, t1 = samples[0].t, samples[-1].t
    width = (t1 - t0) / buckets or 1.0
    out: list[StoredSample] = []
    lo = hi = samples[0]
    current = 0
    for s in samples:
        b = min(buckets - 1, int((s.t - t0) / width))
        if b != current:
            out.extend(sorted({id(lo): lo, id(hi): hi}.values(), key=lambda x: x.t))
            lo = hi = s
            current = b
            continue
        if s.count < lo.count:
            lo = s
        if s.count > hi.count:
            hi = s
    out.extend(sorted({id(lo): lo, id(hi): hi}.values(), key=lambda x: x.t))
    return out


def _changes(points: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """Only the points where a step line changes value (and the last one)."""
    out = [p for i, p in enumerate(points) if i == 0 or p[1] != points[i - 1][1]]
    if points and out[-1] != points[-1]:
        out.append(points[-1])
    return out


def _unit(span: float) -> tuple[float, str]:
    if span <= 300:
        return 1.0, "s"
    if span <= 3 * 3600:
        return 60.0, "min"
    if span <= 3 * 86400:
        return 3600.0, "h"
    return 86400.0, "days"


def draw(
    data: ChartData,
    paths: Sequence[str | os.PathLike[str]],
    *,
    title: str,
    width: float = 10.0,
    height: float = 5.0,
    dpi: int = 100,
) -> list[Chart]:
    """Draw `data` once and save it to each path (format from the suffix: .png or .svg)."""
    for p in paths:
        if Path(p).suffix.lower() not in (".png", ".svg"):
            raise UsageError(f"chart format must be .png or .svg, not {p}")
    t0 = data.t0
    span = max(s.t for s in data.samples) - t0
    scale, unit = _unit(span)

    def x(t: float) -> float:
        return (t - t0) / scale

    # No path simplification: every sample must be a vertex (see module comment).
    with matplotlib.rc_context({"path.simplify": False, "svg.hashsalt": "fdguard"}):
        fig = Figure(figsize=(width, height), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        peaks: dict[str, int] = defaultdict(int)
        for s in data.series:
            for k, rows in s.kinds.items():
                peaks[k] = max(peaks[k], *(n for _, n in rows))
        top = [k for k, _ in sorted(peaks.items(), key=lambda kv: (-kv[1], kv[0]))[:_TOP_KINDS]]
        # C0 is the total, C3 (red) the limit and firing alerts: kinds take the rest.
        palette = ("C1", "C2", "C4", "C5", "C6", "C9")
        colours = {k: palette[i] for i, k in enumerate(top)}
        points: list[tuple[float, int]] = []
        first = True
        for n, s in enumerate(data.series):
            if not s.samples:
                continue
            drawn = envelope(s.samples)
            xs = [x(p.t) for p in drawn]
            (line,) = ax.plot(
                xs,
                [p.count for p in drawn],
                color="C0",
                linewidth=2.0,
                label="all fds" if first else None,
                zorder=5,
            )
            line.set_gid(TOTAL_GID if n == 0 else f"{TOTAL_GID}-{n}")
            points += [(p.t, p.count) for p in drawn]
            lim = _changes([(x(p.t), p.soft_limit) for p in s.samples if p.soft_limit])
            if lim:
                (lline,) = ax.step(
                    [a for a, _ in lim],
                    [b for _, b in lim],
                    where="post",
                    color="C3",
                    linestyle="--",
                    linewidth=1.4,
                    label="soft limit (EMFILE)" if first else None,
                )
                lline.set_gid(LIMIT_GID if n == 0 else f"{LIMIT_GID}-{n}")
            times = sorted({t for rows in s.kinds.values() for t, _ in rows})
            if times:
                at = {k: dict(rows) for k, rows in s.kinds.items()}
                for kind in top:
                    ax.step(
                        [x(t) for t in times],
                        [at.get(kind, {}).get(t, 0) for t in times],
                        where="post",
                        color=colours[kind],
                        linewidth=1.1,
                        label=kind if first else None,
                    )
                rest = [
                    sum(at[k].get(t, 0) for k in at if k not in colours) for t in times
                ]
                if any(rest):
                    ax.step(
                        [x(t) for t in times],
                        rest,
                        where="post",
                        color="0.6",
                        linewidth=0.9,
                        label="other kinds" if first else None,
                    )
            if n > 0:
                ax.axvline(xs[0], color="0.3", linestyle=":", linewidth=1.3)
                ax.annotate(
                    f"restart: pid {s.pid}",
                    (xs[0], 0.98),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    va="top",
                    ha="right",
                    fontsize=9,
                )
            # Alerts of one moment (trend and eta usually fire together) share
            # one line and one label, so labels never print over each other.
            moments: dict[tuple[float, str], list[str]] = {}
            for al in s.alerts:
                key = (round(x(al.t) / max(span / scale, 1e-9), 2), al.state)
                moments.setdefault(key, []).append(al.rule)
            placed: dict[tuple[float, str], float] = {}
            for al in s.alerts:
                key = (round(x(al.t) / max(span / scale, 1e-9), 2), al.state)
                if key in placed:
                    continue
                placed[key] = x(al.t)
                firing = al.state == "firing"
                colour = "C3" if firing else "C2"
                ax.axvline(x(al.t), color=colour, alpha=0.8, linewidth=1.1,
                           linestyle="-" if firing else "-.")
                ax.annotate(
                    f"alert {', '.join(dict.fromkeys(moments[key]))} {al.state}",
                    (x(al.t), 0.03),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    va="bottom",
                    ha="right",
                    fontsize=9,
                    color=colour,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.85},
                )
            first = False
        ax.set_ylabel("open fds", fontsize=11)
        ax.set_xlabel(f"time since the first sample ({unit})", fontsize=11)
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
        ax.set_title(title, fontsize=11)
        fig.tight_layout()
        out: list[Chart] = []
        w_px, h_px = round(width * dpi), round(height * dpi)
        for p in paths:
            path = Path(p)
            fmt = path.suffix.lower().lstrip(".")
            fig.savefig(path, format=fmt, dpi=dpi)
            out.append(Chart(path, fmt, w_px, h_px, tuple(points)))
    _release_fonts()
    return out


__all__ = [
    "LIMIT_GID",
    "MAX_POINTS",
    "TOTAL_GID",
    "Chart",
    "ChartData",
    "TargetSeries",
    "chart_data",
    "draw",
    "envelope",
]
