"""Draw a store's fd history as a PNG: count by kind against the limit, alerts and restarts marked.

Reads only the store (never /proc), so charts can be drawn after the fact, on
another machine, or for a bug report. Uses matplotlib's object API with the Agg
canvas (no pyplot global state): safe in threads and leaves nothing open.

One chart covers one or more targets, usually the successive processes of one
service: their series are drawn one after the other in the same colours, with a
dashed vertical line at each restart, so the split is visible and the series
are never joined across it.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fdguard.errors import UsageError
from fdguard.store import Store

# Kinds drawn separately; the rest are summed as "other" so the legend stays readable.
_TOP_KINDS = 6


def _when(t: float) -> float:
    # matplotlib's date unit: days since its default epoch, 1970-01-01 UTC.
    return t / 86400.0


def plot_history(
    store: Store,
    target_ids: Sequence[int],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    since: float | None = None,
    until: float | None = None,
    width: float = 11.0,
    height: float = 5.5,
) -> Path:
    """Write a PNG of the targets' fd counts to `path` and return it.

    Raises:
        UsageError: no target ids, or no samples for them in the time range.
    """
    if not target_ids:
        raise UsageError("nothing to plot: no target selected")
    known = {t.id: t for t in store.targets()}
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    kind_totals: dict[str, int] = defaultdict(int)
    per_target_kinds = {}
    for tid in target_ids:
        rows = [k for k in store.kind_counts(tid) if k.dim == "kind"]
        if since is not None:
            rows = [k for k in rows if k.t >= since]
        if until is not None:
            rows = [k for k in rows if k.t <= until]
        per_target_kinds[tid] = rows
        for k in rows:
            kind_totals[k.name] = max(kind_totals[k.name], k.n)
    top = [k for k, _ in sorted(kind_totals.items(), key=lambda kv: -kv[1])[:_TOP_KINDS]]
    colours = {k: f"C{i + 2}" for i, k in enumerate(top)}

    drawn = 0
    for n_target, tid in enumerate(target_ids):
        samples = store.samples(tid, since=since, until=until)
        if not samples:
            continue
        drawn += 1
        xs = [_when(s.t) for s in samples]
        ax.plot(
            xs,
            [s.count for s in samples],
            color="C0",
            linewidth=1.4,
            label="total" if n_target == 0 else None,
        )
        limits = [(x, s.soft_limit) for x, s in zip(xs, samples, strict=True) if s.soft_limit]
        if limits:
            ax.step(
                [x for x, _ in limits],
                [v for _, v in limits],
                where="post",
                color="C3",
                linestyle="--",
                linewidth=1.2,
                label="soft limit" if n_target == 0 else None,
            )
        by_time: dict[float, dict[str, int]] = defaultdict(dict)
        for k in per_target_kinds[tid]:
            by_time[k.t][k.name] = k.n
        times = sorted(by_time)
        if times:
            for kind in top:
                ax.step(
                    [_when(t) for t in times],
                    [by_time[t].get(kind, 0) for t in times],
                    where="post",
                    color=colours[kind],
                    linewidth=1.0,
                    label=kind if n_target == 0 else None,
                )
            others = [sum(n for k, n in by_time[t].items() if k not in colours) for t in times]
            if any(others):
                ax.step(
                    [_when(t) for t in times],
                    others,
                    where="post",
                    color="0.6",
                    linewidth=0.8,
                    label="other kinds" if n_target == 0 else None,
                )
        if n_target > 0 and tid in known:
            ax.axvline(_when(samples[0].t), color="0.3", linestyle=":", linewidth=1.2)
            ax.annotate(
                f"restart (pid {known[tid].ref.pid})",
                (_when(samples[0].t), 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
            )
        for al in store.alerts(tid):
            if (since is not None and al.t < since) or (until is not None and al.t > until):
                continue
            firing = al.state == "firing"
            ax.axvline(
                _when(al.t),
                color="C3" if firing else "C2",
                alpha=0.7,
                linewidth=1.0,
                linestyle="-" if firing else "-.",
            )
            ax.annotate(
                f"{al.rule} {al.state}",
                (_when(al.t), 0.02),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="bottom",
                ha="left",
                fontsize=7,
                color="C3" if firing else "C2",
            )
    if drawn == 0:
        raise UsageError("nothing to plot: no samples for these targets in that time range")
    ax.set_ylabel("open fds")
    ax.set_xlabel("time (UTC)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    if title is None and target_ids[0] in known:
        t0 = known[target_ids[0]]
        title = f"{' '.join(t0.command)[:80]} (pid {t0.ref.pid})"
    if title:
        ax.set_title(title, fontsize=10)
    ax.xaxis_date(tz=dt.UTC)
    out = Path(path)
    fig.savefig(out, format="png")
    _release_fonts()
    return out


def _release_fonts() -> None:
    """Close the font files matplotlib keeps open in its font cache.

    matplotlib caches FT2Font objects (each holding its .ttf open) for the life
    of the process; a long-running fdguard (watch, export) must not carry fds it
    no longer needs, so the cache is dropped after each chart. The cache is
    private API: if it moves, charts still work and only the fds stay cached.
    """
    cached = getattr(font_manager, "_get_font", None)
    clear = getattr(cached, "cache_clear", None)
    if callable(clear):
        clear()
        gc.collect()
