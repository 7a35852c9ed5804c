"""Run the whole fdguard lab catalogue across libuv versions and print the verdict table.

Versions: Debian's libuv ("system"), the libuv inside the installed uvloop wheel
("uvloop") and every release build in the lab cache; `--build` first fetches the
uvloop sdists of `fdguard.lab.sources.UVLOOP_VENDORED_LIBUV` from PyPI and
builds their vendored libuv (cached, so a second run builds nothing).

Besides the table it prints, measured in this run:
- the cost of a lab run against its floor: one scenario in the Python child
  against the same scenario as the compiled C reproducer on the same libuv;
- a cache hit against a build: `build()` of an already built tree against the
  time that tree's build took.

Usage: python3 bench/lab_catalogue.py [--build] [--iterations 6] [--scenarios a,b]
       [--libuv system --libuv uvloop ...] [--cache-dir DIR] [--markdown]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fdguard.lab.build import build, cached_builds
from fdguard.lab.repro import write
from fdguard.lab.runner import ScenarioResult, Verdict, run_scenario
from fdguard.lab.runtime import RUNTIME_CATALOGUE
from fdguard.lab.scenarios import CATALOGUE
from fdguard.lab.sources import UVLOOP_VENDORED_LIBUV, fetch_uvloop_sdist
from fdguard.lab.versions import LibuvTarget, resolve

SHORT = {Verdict.LEAK: "LEAK", Verdict.NO_LEAK: "ok", Verdict.CRASH: "crash",
         Verdict.TIMEOUT: "hang", Verdict.UNSUPPORTED: "n/a", Verdict.ERROR: "error"}


def _cell(r: ScenarioResult) -> str:
    if r.verdict is Verdict.LEAK:
        kinds = ",".join(f"{k}+{v}" for k, v in r.growth_by_kind) or f"+{r.growth}"
        return f"LEAK {kinds}"
    if r.verdict is Verdict.CRASH:
        return f"crash {r.signal}"
    return SHORT[r.verdict]


def _targets(args: argparse.Namespace) -> list[LibuvTarget]:
    specs = list(args.libuv) or ["system", "uvloop"]
    targets = [resolve(s, cache_dir=args.cache_dir) for s in specs]
    if not args.libuv:
        seen = set()
        for b in cached_builds(args.cache_dir):
            # Releases only: commit builds left by `lab bisect --git` are "-dev".
            if b.version not in seen and "-" not in b.version:
                seen.add(b.version)
                targets.append(LibuvTarget(b.version, b.library, "build"))
    return targets


def _time_repro(scenario: str, target: LibuvTarget, n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        r = write(scenario, tmp)
        subprocess.run(r.build_command.split(), cwd=tmp, check=True, capture_output=True)
        c_times, lab_times = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([f"{tmp}/repro", str(target.path), str(n)], capture_output=True,
                           check=False)
            c_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run_scenario(scenario, target, iterations=n)
            lab_times.append(time.perf_counter() - t0)
    return statistics.median(lab_times), statistics.median(c_times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", action="store_true", help="fetch and build the uvloop sdists")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--scenarios", default="", help="comma-separated subset")
    ap.add_argument("--libuv", action="append", default=[])
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = ap.parse_args()

    build_times: list[tuple[str, float, float]] = []
    if args.build:
        with tempfile.TemporaryDirectory() as tmp:
            for uvloop_version in UVLOOP_VENDORED_LIBUV:
                sdist = fetch_uvloop_sdist(uvloop_version, Path(tmp))
                b = build(sdist, cache_dir=args.cache_dir)
                t0 = time.perf_counter()
                hit = build(sdist, cache_dir=args.cache_dir)
                build_times.append((b.version, hit.seconds, time.perf_counter() - t0))
                print(f"libuv {b.version} from uvloop {uvloop_version}: {b.method}, "
                      f"{'cached' if b.cached else 'built'} ({b.seconds:.1f}s to build)",
                      file=sys.stderr)

    names = [s for s in args.scenarios.split(",") if s] or list(CATALOGUE)
    targets = _targets(args)
    table: dict[str, dict[str, str]] = {}
    labels = []
    for t in targets:
        results = [run_scenario(n, t, iterations=args.iterations) for n in names]
        label = results[0].version or t.label
        label += {"system": " (debian)", "uvloop-wheel": " (uvloop)"}.get(t.origin, "")
        labels.append(label)
        for r in results:
            table.setdefault(r.scenario, {})[label] = _cell(r)
        print(f"ran {len(names)} scenarios on {label}", file=sys.stderr)

    width = max(len(n) for n in names)
    if args.markdown:
        print("| scenario | " + " | ".join(labels) + " |")
        print("|---" * (len(labels) + 1) + "|")
        for n in names:
            print(f"| {n} | " + " | ".join(table[n].get(lb, "") for lb in labels) + " |")
    else:
        colw = max(12, *(len(lb) for lb in labels))
        print(f"{'scenario':<{width}}  " + "  ".join(f"{lb:<{colw}}" for lb in labels))
        for n in names:
            print(f"{n:<{width}}  " + "  ".join(f"{table[n].get(lb, ''):<{colw}}"
                                                  for lb in labels))

    runtime = [run_scenario(n, targets[0], iterations=args.iterations)
               for n in RUNTIME_CATALOGUE if not args.scenarios]
    if runtime:
        print("\nruntime scenarios (on the runtime's own libuv):")
        for r in runtime:
            print(f"  {r.scenario:<26} {r.libuv} (libuv {r.version}): {_cell(r)}")

    leaks = sorted({(n, lb) for n in names for lb, c in table[n].items() if c.startswith("LEAK")})
    print(f"\nleaks: {len(leaks)} (scenario, version) pairs")

    system = resolve("system")
    if shutil.which("cc") and "loop-init-emfile" in CATALOGUE:
        lab_s, c_s = _time_repro("loop-init-emfile", system, args.iterations)
        print(f"lab run / C reproducer run (loop-init-emfile, {args.iterations} iterations, "
              f"median of 5): {lab_s * 1000:.0f} ms / {c_s * 1000:.1f} ms = {lab_s / c_s:.0f}x")
    for version, built_s, hit_s in build_times:
        print(f"build cache hit / build, libuv {version}: {hit_s:.2f}s / {built_s:.1f}s "
              f"= {hit_s / built_s:.3f}")


if __name__ == "__main__":
    main()
