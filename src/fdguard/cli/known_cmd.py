"""`fdguard known`: the known libuv fd bugs a process or a libuv/Node/uvloop version can have."""

from __future__ import annotations

import dataclasses

import click

from fdguard.cli.render import console, echo_json
from fdguard.errors import UsageError
from fdguard.known.base import KnownBug, load_bugs
from fdguard.known.facade import (
    KnownReport,
    known_for_pid,
    known_for_version,
    known_from_store,
    resolve_version,
)
from fdguard.known.versions import Version

_PLATFORMS = ["linux", "mac", "bsd", "win"]


def _bug_line(report: KnownReport) -> list[str]:
    lines = []
    for b in report.carried:
        src = b.source
        ref = f"#{src.pr}" if src.pr else src.commit[:9]
        lines.append(
            f"  {b.id}  [{b.bug_class}, {b.likelihood}]  fixed in {b.fixed_in} ({ref})\n"
            f"      {b.title}\n      looks like: {_shape(b)}"
        )
    return lines


def _shape(b: KnownBug) -> str:
    sig = b.signature
    if sig.observable == "counts":
        grows = " + ".join(f"{n} {'fd of any kind' if k == 'any' else k}" for k, n in sig.grows)
        extra = f", without {', '.join(sig.not_with)}" if sig.not_with else ""
        return f"{grows} per {sig.per}{extra}"
    if sig.observable == "cloexec":
        return f"fds without O_CLOEXEC ({sig.per})"
    return f"two close() of one fd number in a trace ({sig.per})"


def render_human(report: KnownReport) -> None:
    out = console()
    if report.pid is not None:
        name = (report.runtime or {}).get("name") or "no libuv runtime found"
        out.print(f"pid {report.pid}  runtime: {name}", markup=False)
    version = str(report.version) if report.version is not None else "unknown"
    out.print(f"libuv {version} on {report.platform}  ({report.version_source})", markup=False)
    if report.version is not None:
        if report.carried:
            out.print(
                f"carries {len(report.carried)} known fd bug(s); "
                f"{report.upgrade_to} or later fixes all of them:",
                markup=False,
            )
            for line in _bug_line(report):
                out.print(line, markup=False)
        else:
            out.print("carries none of the known fd bugs in fdguard's base", markup=False)
    for note in report.notes:
        out.print(f"note: {note}", markup=False)
    if report.observation is None:
        return
    out.print(f"\nseen: {report.observation.window}", markup=False)
    grown = {k: n for k, n in report.observation.growth if n > 0 and ":" not in k}
    if grown:
        out.print("grew: " + ", ".join(f"{k} +{n}" for k, n in grown.items()), markup=False)
    if not report.candidates:
        out.print("no known bug of this platform and version to weigh", markup=False)
        return
    out.print("candidates (hypotheses, best first; a version alone proves nothing):", markup=False)
    for c in report.candidates:
        out.print(
            f"  {c.score:.2f}  {c.bug.id}  fixed in {c.bug.fixed_in}  - {c.assessment}",
            markup=False,
        )
        for e in c.evidence_for:
            out.print(f"        + {e}", markup=False)
        for e in c.evidence_against:
            out.print(f"        - {e}", markup=False)


@click.command("known")
@click.argument("pid", type=int, required=False)
@click.option("--libuv", "libuv", metavar="VERSION", help="The libuv version to check.")
@click.option("--node", "node", metavar="VERSION", help="A Node.js release (its bundled libuv).")
@click.option("--uvloop", "uvloop", metavar="VERSION", help="A uvloop release (vendored libuv).")
@click.option(
    "--interval",
    type=float,
    default=0.0,
    show_default=True,
    help="With PID: seconds between two looks, to measure growth per kind.",
)
@click.option(
    "--platform",
    type=click.Choice(_PLATFORMS),
    default=None,
    help="Platform to check bugs for (default: this host's).",
)
@click.option(
    "--store",
    "store_path",
    metavar="PATH",
    default=None,
    help="With PID: weigh the kind counts the store recorded for it instead of looking now.",
)
@click.option("--all", "show_all", is_flag=True, help="List the whole base, every platform.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--proc-root", default="/proc", show_default=True, hidden=True)
def known(
    pid: int | None,
    libuv: str | None,
    node: str | None,
    uvloop: str | None,
    interval: float,
    platform: str | None,
    store_path: str | None,
    show_all: bool,
    as_json: bool,
    proc_root: str,
) -> None:
    """Known libuv fd bugs that PID (or a given version) can have, ranked by fit.

    With PID: detects the process's libuv, looks at its fds (twice, --interval
    apart) and ranks the bugs its version carries by how well their signature fits
    what grows. With --libuv/--node/--uvloop: lists what that version carries.
    """
    if show_all:
        bugs = load_bugs()
        if as_json:
            echo_json({"bugs": [b.to_json() for b in bugs]})
        else:
            for b in bugs:
                click.echo(
                    f"{b.id}\t{b.bug_class}\t{','.join(b.platforms)}\t"
                    f"{b.affected}\t{b.source.commit[:9]}\t{b.source.date}"
                )
        return
    if interval < 0:
        raise UsageError("--interval must be >= 0")
    version: Version | None = None
    source = ""
    if libuv or node or uvloop:
        version, source = resolve_version(libuv=libuv, node=node, uvloop=uvloop)
    if pid is None:
        if version is None:
            raise UsageError("give a PID or one of --libuv, --node, --uvloop (or --all)")
        report = known_for_version(version, source, platform=platform)
    else:
        if pid <= 0:
            raise UsageError(f"PID must be a positive number, not {pid}")
        if store_path is not None:
            report = known_from_store(
                store_path, pid, version=version, platform=platform, root=proc_root
            )
        else:
            report = known_for_pid(
                pid, interval=interval, platform=platform, version=version, root=proc_root
            )
        if version is not None:
            report = _with_source(report, source)
    if as_json:
        echo_json(report.to_json())
    else:
        render_human(report)


def _with_source(report: KnownReport, source: str) -> KnownReport:
    return dataclasses.replace(report, version_source=source)

