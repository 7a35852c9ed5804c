"""`fdguard lab`: run libuv scenarios in isolation, build libuv, bisect, emit C reproducers."""

from __future__ import annotations

from pathlib import Path

import click

from fdguard.cli.render import echo_json
from fdguard.errors import ExitStatus
from fdguard.lab import bisect as lab_bisect
from fdguard.lab import build as lab_build
from fdguard.lab import repro as lab_repro
from fdguard.lab.runner import DEFAULT_ITERATIONS, ScenarioResult, Verdict, run_scenario
from fdguard.lab.runtime import RUNTIME_CATALOGUE
from fdguard.lab.scenarios import CATALOGUE
from fdguard.lab.versions import resolve

_cache_opt = click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                          help="Build cache root (default $FDGUARD_CACHE or ~/.cache/fdguard).")


@click.group("lab")
def lab() -> None:
    """Reproduce libuv fd leaks in isolation, across libuv versions.

    --libuv takes a path to a libuv shared object, 'system' (Debian's libuv1),
    'uvloop' (the copy inside the installed uvloop wheel) or a version built
    with `fdguard lab build`.
    """


@lab.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(as_json: bool) -> None:
    """List the scenario catalogue."""
    repro = set(lab_repro.supported())
    rows = [{"name": s.name, "api": s.api, "path": s.path, "summary": s.summary,
             "expect": s.expect, "runtime": "ctypes", "c_reproducer": s.name in repro}
            for s in CATALOGUE.values()]
    rows += [{"name": s.name, "api": s.api, "path": s.path, "summary": s.summary,
              "expect": s.expect, "runtime": s.runtime, "c_reproducer": False}
             for s in RUNTIME_CATALOGUE.values()]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        mark = " [C]" if r["c_reproducer"] else ""
        where = "" if r["runtime"] == "ctypes" else f"({r['runtime']}) "
        click.echo(f"{r['name']:<28} {r['api']:<9} {r['path']:<7} {where}{r['summary']}{mark}")


def _render(r: ScenarioResult) -> None:
    sig = f" ({r.signal})" if r.signal else ""
    click.echo(f"{r.scenario} on libuv {r.version or '?'} [{r.libuv}]: {r.verdict}{sig}")
    if r.counts:
        click.echo("  fds per iteration: " + " ".join(str(c) for c in r.counts[1:])
                   + f"  (after setup: {r.counts[0]})")
    if r.outcomes:
        click.echo("  libuv said: " + "; ".join(r.outcomes))
    if r.verdict is Verdict.LEAK:
        kinds = ", ".join(f"{k} {v:+d}" for k, v in r.growth_by_kind)
        click.echo(f"  growth after warm-up: {r.growth:+d} ({kinds})")
        for f in r.leaked[:20]:
            click.echo(f"  leaked fd {f.fd}: {f.kind} {f.target or ''}")
    if r.detail:
        click.echo("  " + r.detail.replace("\n", "\n  "))


@lab.command("run")
@click.argument("scenarios", nargs=-1, required=True)
@click.option("--libuv", "libuvs", multiple=True, default=("system",), show_default=True,
              help="libuv to run against; repeat for several.")
@click.option("--iterations", "-n", default=DEFAULT_ITERATIONS, show_default=True)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds per run.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_cache_opt
@click.pass_context
def run_cmd(ctx: click.Context, scenarios: tuple[str, ...], libuvs: tuple[str, ...],
            iterations: int, timeout: float, as_json: bool, cache_dir: Path | None) -> None:
    """Run SCENARIOS ('all' for the catalogue) in a child process; exit 10 on a leak.

    Node.js and uvloop scenarios run on the runtime's own libuv, once, whatever --libuv says.
    """
    names = [*CATALOGUE, *RUNTIME_CATALOGUE] if scenarios == ("all",) else list(scenarios)
    targets = [resolve(spec, cache_dir=cache_dir) for spec in libuvs]
    runtime = [n for n in names if n in RUNTIME_CATALOGUE]
    results = [run_scenario(n, t, iterations=iterations, timeout=timeout)
               for t in targets for n in names if n not in RUNTIME_CATALOGUE]
    results += [run_scenario(n, targets[0], iterations=iterations, timeout=timeout)
                for n in runtime]
    if as_json:
        echo_json([r.to_json() for r in results])
    else:
        for r in results:
            _render(r)
    if any(r.verdict is Verdict.LEAK for r in results):
        ctx.exit(int(ExitStatus.LEAK_FOUND))


@lab.command("build")
@click.argument("sources", nargs=-1, required=True)
@click.option("--method", type=click.Choice(["auto", "cmake", "gcc"]), default="auto",
              show_default=True)
@click.option("--jobs", "-j", default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_cache_opt
def build_cmd(sources: tuple[str, ...], method: str, jobs: int, as_json: bool,
              cache_dir: Path | None) -> None:
    """Build libuv SOURCES (tree, tarball, uvloop sdist, git checkout) into cached libuv.so."""
    out = []
    for src in sources:
        b = lab_build.build(src, cache_dir=cache_dir, method=method, jobs=jobs)
        out.append({"version": b.version, "key": b.key, "library": str(b.library),
                    "include": str(b.include), "method": b.method, "cached": b.cached,
                    "seconds": b.seconds, "source": b.source, "commit": b.commit})
        if not as_json:
            hit = "cache hit" if b.cached else f"built with {b.method} in {b.seconds:.1f}s"
            click.echo(f"libuv {b.version}: {b.library} ({hit})")
    if as_json:
        echo_json(out)


@lab.command("bisect")
@click.argument("scenario")
@click.option("--libuv", "libuvs", multiple=True,
              help="A libuv to include (path, 'system', 'uvloop', cached version); repeat.")
@click.option("--all-cached", is_flag=True, help="Include every build in the cache.")
@click.option("--git", "repo", type=click.Path(exists=True, path_type=Path), default=None,
              help="A libuv git checkout (or bare mirror): bisect down to the commit.")
@click.option("--old", "old_ref", help="With --git: the older ref (e.g. v1.50.0).")
@click.option("--new", "new_ref", help="With --git: the newer ref (e.g. v1.51.0).")
@click.option("--iterations", "-n", default=DEFAULT_ITERATIONS, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_cache_opt
def bisect_cmd(scenario: str, libuvs: tuple[str, ...], all_cached: bool, repo: Path | None,
               old_ref: str | None, new_ref: str | None, iterations: int, as_json: bool,
               cache_dir: Path | None) -> None:
    """Find where SCENARIO's verdict changed: across libuv builds, or commits with --git."""
    if repo is not None:
        if not (old_ref and new_ref):
            raise click.UsageError("--git needs --old and --new")
        cb = lab_bisect.bisect_commits(scenario, repo, old_ref, new_ref,
                                       iterations=iterations, cache_dir=cache_dir)
        data = {
            "scenario": cb.scenario, "old": cb.old_ref, "new": cb.new_ref,
            "old_verdict": str(cb.old_verdict), "new_verdict": str(cb.new_verdict),
            "candidates": cb.candidates,
            "last_old": {"commit": cb.last_old.commit, "subject": cb.last_old.subject},
            "first_new": {"commit": cb.first_new.commit, "subject": cb.first_new.subject},
            "probes": [{"commit": p.commit, "version": p.version, "verdict": str(p.verdict),
                        "cached": p.cached} for p in cb.probes],
        }
        if as_json:
            echo_json(data)
            return
        click.echo(f"{scenario}: {cb.old_verdict} at {old_ref}, {cb.new_verdict} at {new_ref}; "
                   f"{cb.candidates} commits, {len(cb.probes)} probed")
        click.echo(f"  last {cb.old_verdict}: {cb.last_old.commit[:12]} {cb.last_old.subject}")
        click.echo(f"  first {cb.new_verdict}: {cb.first_new.commit[:12]} {cb.first_new.subject}")
        return
    specs = list(libuvs)
    if all_cached:
        specs += [str(b.library) for b in lab_build.cached_builds(cache_dir)]
    if len(specs) < 2:
        raise click.UsageError("give at least two --libuv (or --all-cached)")
    rb = lab_bisect.bisect_releases(scenario, [resolve(s, cache_dir=cache_dir) for s in specs],
                                    iterations=iterations)
    if as_json:
        echo_json({"scenario": scenario, "results": [r.to_json() for r in rb.results],
                   "transitions": [{"before": t.before.version, "before_verdict":
                                    str(t.before.verdict), "after": t.after.version,
                                    "after_verdict": str(t.after.verdict)}
                                   for t in rb.transitions]})
        return
    for r in rb.results:
        click.echo(f"  libuv {r.version or '?':<10} {r.verdict:<11} growth {r.growth:+d}"
                   f"  [{r.libuv}]")
    if not rb.transitions:
        click.echo("no change of verdict across these versions")
    for t in rb.transitions:
        click.echo(f"{scenario}: last {t.before.verdict} in {t.before.version}, "
                   f"first {t.after.verdict} in {t.after.version}")


@lab.command("repro")
@click.argument("scenario")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def repro_cmd(scenario: str, out_dir: Path) -> None:
    """Write SCENARIO as a standalone C program (repro.c + build.sh) into --out."""
    r = lab_repro.write(scenario, out_dir)
    click.echo(f"wrote {r.source}")
    click.echo(f"build: cd {out_dir} && {r.build_command}")
    click.echo(f"run:   {r.run_command}")
