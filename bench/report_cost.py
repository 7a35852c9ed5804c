"""What writing a bug report costs, against drawing the same series with `fdguard plot`.

A store holding one target with a day of 1 Hz samples (86,400) and a snapshot
breakdown every minute is built in a temporary directory; then, in the same run:

- baseline: `fdguard.plot.plot_history` (one PNG of the same series);
- `build_report` (gathering and redacting, no live process) alone;
- `build_report` + `write_report` (Markdown, HTML with inlined images, PNG+SVG,
  GitHub body).

Prints each median as a ratio to the baseline, and the sizes of what was written.

    python3 bench/report_cost.py [--samples 86400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/inspect.py would shadow the standard library's inspect (matplotlib imports
# it): drop this script's own directory from the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from fdguard.model import ProcessRef  # noqa: E402 -- after the path fix above
from fdguard.plot import plot_history  # noqa: E402
from fdguard.report import ReportInputs, build_report, write_report  # noqa: E402
from fdguard.store import Store  # noqa: E402

GONE_PID = 4_194_400  # above any pid_max: never a live process


def _fill(db: Path, samples: int) -> int:
    t0 = 1_790_000_000.0
    with Store(db) as st:
        tid = st.target_id(ProcessRef(GONE_PID, 1), ("node", "app.js"), t0, label="svc")
        with st.transaction():
            st.add_samples((tid, t0 + i, 40 + i // 600 + (i * 7919) % 13, 65536)
                           for i in range(samples))
            for i in range(0, samples, 60):
                st.add_kind_counts(tid, t0 + i, {"tcp": 20 + i // 600, "file": 12, "pipe": 8},
                                   {"ESTAB": 15, "CLOSE-WAIT": 5 + i // 600})
    return tid


def _time(fn: object, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=86_400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        db = d / "fd.db"
        tid = _fill(db, args.samples)

        def baseline() -> None:
            with Store(db) as st:
                plot_history(st, [tid], d / "plot.png")

        inputs = ReportInputs(store=str(db), store_target="svc")
        written = {}

        def build() -> None:
            build_report(inputs)

        def full() -> None:
            written["w"] = write_report(build_report(inputs), d / "out", github=True)

        base = _time(baseline, args.repeat)
        t_build = _time(build, args.repeat)
        t_full = _time(full, args.repeat)
        w = written["w"]
        print(f"{args.samples} samples, median of {args.repeat}")
        print(f"  fdguard plot (baseline)        {base * 1000:8.0f} ms  1.00x")
        print(f"  build_report                   {t_build * 1000:8.0f} ms  "
              f"{t_build / base:.2f}x")
        print(f"  build_report + write_report    {t_full * 1000:8.0f} ms  {t_full / base:.2f}x")
        for p in (w.markdown, w.html, *(c.path for c in w.charts), w.github):
            if p is not None:
                print(f"  {p.name:<14} {p.stat().st_size / 1024:8.0f} KiB")
        print(f"  chart vertices {len(w.charts[0].points)} of {args.samples} samples")


if __name__ == "__main__":
    main()
