"""Judge fdguard's leak detector against two baselines on the seeded traces of traces.py.

Methods, all run on the same traces in one run:
  fdguard   fdguard.detect.LeakDetector (default config), online; alarm = detected_at
  watch     what `fdguard watch` alerts on by default: the first alert of
            fdguard.alerts.AlertEngine with its default rules, fed the same detector's
            verdicts (the threshold rule, 80% of the soft limit on 3 samples in a
            row, beside the rules on the verdict: trend, rate, ETA)
  static80  count >= 80% of the soft limit at any sample (no `for`: the earliest it can be)
  predlin   the kube-prometheus FdExhaustionClose rule
              predict_linear(fd_utilization[1h], 3600 * 4) > 1   for: 10m
            computed as Prometheus does: ordinary least squares over the samples in
            (t - 1h, t], intercept taken at the evaluation time t, value extrapolated
            4 h ahead, divided by the limit; evaluated at every sample (every 2 min);
            the alert fires once the condition has held at every evaluation for 10 min.

Printed per class: on healthy traces the false-alarm rate (any alarm at all); on
leaking traces the detection rate (an alarm between the onset and EMFILE), alarms
raised before the onset (false alarms too), the median detection delay after the
onset (misses counted as never), and the median lead time left before EMFILE.
A leaking trace ends at its EMFILE (the count reaching the soft limit); the soft
limit is what the leak adds by then on top of the background's highest peak.

Usage: python3 bench/detect/run.py [--per-class 100] [--jobs 2] [--classes a,b] [--first-seed N]
       [--list] [--dt SECONDS]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import traces

from fdguard.alerts import AlertEngine, Observation
from fdguard.detect import LeakDetector
from fdguard.model import ProcessRef

METHODS = ("fdguard", "watch", "static80", "predlin")
_REF = ProcessRef(pid=1, start_time=0)


def fdguard_alarm(tr: traces.Trace) -> tuple[float | None, float | None, float | None]:
    """The detection time, the ETA the detector gave at that moment, and the time of
    the first alert `fdguard watch`'s default rules raise over the same verdicts."""
    det = LeakDetector(limit=tr.limit)
    engine = AlertEngine()
    detected = eta = alerted = None
    for t, c in zip(tr.times, tr.counts, strict=True):
        v = det.update(t, c)
        if alerted is None and engine.evaluate(Observation(_REF, "trace", t, c, tr.limit, v)):
            alerted = t
        if detected is None and v.detected_at is not None:
            detected, eta = v.detected_at, v.eta_seconds
        if detected is not None and alerted is not None:
            break
    return detected, eta, alerted


def static_alarm(tr: traces.Trace, share: float = 0.8) -> float | None:
    level = share * tr.limit
    for t, c in zip(tr.times, tr.counts, strict=True):
        if c >= level:
            return t
    return None


def predict_linear_alarm(
    tr: traces.Trace, rng: float = 3600.0, ahead: float = 4 * 3600.0, hold: float = 600.0
) -> float | None:
    win: deque[tuple[float, float]] = deque()
    sx = sy = sxx = sxy = 0.0
    t0 = tr.times[0]
    pending: float | None = None
    for t, c in zip(tr.times, tr.counts, strict=True):
        y = c / tr.limit  # fd_utilization = process_open_fds / process_max_fds
        x = t - t0
        win.append((x, y))
        sx, sy, sxx, sxy = sx + x, sy + y, sxx + x * x, sxy + x * y
        while win[0][0] <= x - rng:  # the range (t - 1h, t]
            ox, oy = win.popleft()
            sx, sy, sxx, sxy = sx - ox, sy - oy, sxx - ox * ox, sxy - ox * oy
        n = len(win)
        firing_cond = False
        if n >= 2:
            var = sxx - sx * sx / n
            if var > 0:
                slope = (sxy - sx * sy / n) / var
                at_now = sy / n + slope * (x - sx / n)  # intercept at the evaluation time
                firing_cond = at_now + slope * ahead > 1
        if firing_cond:
            if pending is None:
                pending = t
            if t - pending >= hold:
                return t
        else:
            pending = None
    return None


@dataclass(frozen=True)
class Outcome:
    cls: str
    seed: int
    leaking: bool
    onset: float | None
    emfile: float | None  # when the count reached the soft limit (leaking traces)
    alarms: dict[str, float | None]
    eta: float | None  # fdguard's ETA at its detection


def judge(job: tuple[str, int, float]) -> Outcome:
    cls, seed, traces.DT = job  # DT: the sampling interval of this run
    tr = traces.make(cls, seed)
    at, eta, alerted = fdguard_alarm(tr)
    alarms = {
        "fdguard": at,
        "watch": alerted,
        "static80": static_alarm(tr),
        "predlin": predict_linear_alarm(tr),
    }
    emfile = tr.times[-1] if tr.counts[-1] >= tr.limit else None
    return Outcome(cls, seed, tr.leaking, tr.onset, emfile, alarms, eta)


def _hours(x: float) -> str:
    return "never" if math.isinf(x) else f"{x / 3600:.1f}h"


def report(outcomes: list[Outcome], classes: list[str]) -> str:
    lines = []
    head = f"{'class':<12} {'n':>4} " + " ".join(f"{m:>29}" for m in METHODS)
    lines.append("HEALTHY: false-alarm rate (traces with any alarm)")
    lines.append(head)
    for cls in classes:
        rows = [o for o in outcomes if o.cls == cls and not o.leaking]
        if not rows:
            continue
        cells = []
        for m in METHODS:
            fa = sum(o.alarms[m] is not None for o in rows)
            cells.append(f"{fa / len(rows):>6.1%} ({fa:>3}/{len(rows)})".rjust(29))
        lines.append(f"{cls:<12} {len(rows):>4} " + " ".join(cells))
    lines.append("")
    lines.append(
        "LEAKING: detected (alarm after the onset) / e = alarms before the onset / d = median "
        "delay after the onset (misses and early alarms = never) / lead = median time left "
        "before EMFILE"
    )
    lines.append(head)
    for cls in classes:
        rows = [o for o in outcomes if o.cls == cls and o.leaking]
        if not rows:
            continue
        cells = []
        for m in METHODS:
            det, early, delays, leads = 0, 0, [], []
            for o in rows:
                a = o.alarms[m]
                assert o.onset is not None
                if a is not None and a < o.onset:
                    early += 1
                    delays.append(math.inf)
                elif a is not None:
                    det += 1
                    delays.append(a - o.onset)
                    if o.emfile is not None:
                        leads.append(o.emfile - a)
                else:
                    delays.append(math.inf)
            med = statistics.median(delays)
            lead = statistics.median(leads) if leads else 0.0
            cells.append(
                f"{det / len(rows):.0%} e{early} d={_hours(med)} lead={_hours(lead)}".rjust(29)
            )
        lines.append(f"{cls:<12} {len(rows):>4} " + " ".join(cells))
    lines.append("")
    lines.append(
        "fdguard's ETA at detection vs the real time left to EMFILE: median |error| "
        "(share within 25%, within 50%)"
    )
    for cls in classes:
        errs = []
        for o in outcomes:
            a = o.alarms["fdguard"]
            if o.cls != cls or not o.leaking or a is None or o.emfile is None or o.eta is None:
                continue
            assert o.onset is not None
            if a >= o.onset and o.emfile > a:
                errs.append(abs(o.eta - (o.emfile - a)) / (o.emfile - a))
        if errs:
            within25 = sum(e <= 0.25 for e in errs) / len(errs)
            within50 = sum(e <= 0.5 for e in errs) / len(errs)
            lines.append(
                f"{cls:<12} {len(errs):>4}  {statistics.median(errs):.0%}  "
                f"({within25:.0%}, {within50:.0%})"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--classes", default=",".join(traces.HEALTHY + traces.LEAKING))
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument(
        "--list", action="store_true", help="list fdguard's and watch's false alarms and misses"
    )
    ap.add_argument(
        "--dt",
        type=float,
        default=traces.DT,
        help="seconds between samples (default 120; the traces' parameters do not change)",
    )
    args = ap.parse_args()
    classes = args.classes.split(",")
    seeds = range(args.first_seed, args.first_seed + args.per_class)
    jobs = [(c, s, args.dt) for c in classes for s in seeds]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(judge, jobs, chunksize=8))
    else:
        outcomes = [judge(j) for j in jobs]
    print(report(outcomes, classes))
    if args.list:
        for m in ("fdguard", "watch"):
            print(f"\n{m}'s false alarms (healthy) and misses (leaking), as class/seed:")
            for o in outcomes:
                a = o.alarms[m]
                if (not o.leaking and a is not None) or (
                    o.leaking and (a is None or (o.onset is not None and a < o.onset))
                ):
                    at = "" if a is None else f" alarm at {a / 3600:.1f} h"
                    print(f"  {o.cls}/{o.seed}{at}")
    print(
        f"\n{len(jobs)} traces ({args.per_class} per class, seeds {args.first_seed}.."
        f"{args.first_seed + args.per_class - 1}, a sample every {args.dt:g} s), "
        f"{time.perf_counter() - t0:.0f}s"
    )


if __name__ == "__main__":
    main()
