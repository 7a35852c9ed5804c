"""`fdguard report PID|--from-store TARGET --out DIR`: the bug report a libuv maintainer wants."""

from __future__ import annotations

import click

from fdguard.cli.durations import parse_duration
from fdguard.errors import UsageError
from fdguard.report import ReportInputs, build_report, load_json, write_report
from fdguard.store import default_path


@click.command("report")
@click.argument("pid", type=int, required=False)
@click.option("--from-store", "from_store", metavar="TARGET",
              help="Report on a target the store recorded: its PID, its label, or #ID.")
@click.option("--store", "store_path", type=click.Path(dir_okay=False), default=None,
              help="The fdguard store (default: the per-user store, when it exists).")
@click.option("--trace", "trace_file", type=click.Path(exists=True, dir_okay=False),
              help="A saved `fdguard trace --json` document.")
@click.option("--trace-for", "trace_for", metavar="DURATION",
              help="Attach `trace` to the live PID for this long (e.g. 30s) instead.")
@click.option("--explain", "explain_file", type=click.Path(exists=True, dir_okay=False),
              help="A saved `fdguard explain --json` document (default: explain the live PID).")
@click.option("--lab", "lab", type=click.Path(exists=True), multiple=True,
              help="A `lab repro` directory, a reproducer file, or `lab run --json` output. "
                   "Repeatable.")
@click.option("--stress", "stress_file", type=click.Path(exists=True, dir_okay=False),
              help="A saved `fdguard stress --json` document.")
@click.option("--log", "logs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A log of the service; its errors (EMFILE, ...) are picked out. Repeatable.")
@click.option("--gdb-stacks", is_flag=True,
              help="Attach gdb in batch mode for every thread's stack (pauses the target).")
@click.option("--gdb-timeout", type=float, default=20.0, show_default=True)
@click.option("--redact-extra", "redact_extra", multiple=True, metavar="PATTERN",
              help="Also redact what this regular expression matches. Repeatable.")
@click.option("--expected", help="Expected behaviour, in your words.")
@click.option("--title", help="The report's title (default: written from the facts).")
@click.option("--format", "fmt", type=click.Choice(["markdown", "github"]), default="markdown",
              show_default=True,
              help="github: also write issue.md within GitHub's size limit, with attachments.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write report.md, report.html and the charts into.")
@click.option("--no-explain", is_flag=True, help="Do not run explain on the live PID.")
@click.option("--proc-root", default="/proc", show_default=True, hidden=True)
def report(
    pid: int | None,
    from_store: str | None,
    store_path: str | None,
    trace_file: str | None,
    trace_for: str | None,
    explain_file: str | None,
    lab: tuple[str, ...],
    stress_file: str | None,
    logs: tuple[str, ...],
    gdb_stacks: bool,
    gdb_timeout: float,
    redact_extra: tuple[str, ...],
    expected: str | None,
    title: str | None,
    fmt: str,
    out_dir: str,
    no_explain: bool,
    proc_root: str,
) -> None:
    """Write a bug report for PID, or for a target recorded in the store.

    \b
    Sections: libuv version and runtime, platform, observed behaviour (charts of
    the fd series, growth rate and ETA, breakdown at the worst moment),
    attribution (explain verdicts, trace birth certificates), reproducer,
    expected behaviour, error logs, what is still missing, what was redacted.
    Environment variables are never included; everything from the target is
    redacted (keys, tokens, passwords, user names, hosts, addresses).
    """
    if pid is None and from_store is None:
        raise UsageError("give a PID or --from-store TARGET")
    if pid is not None and pid <= 0:
        raise UsageError(f"PID must be a positive number, not {pid}")
    if trace_file and trace_for:
        raise UsageError("give --trace or --trace-for, not both")
    store = store_path
    if store is None:
        default = default_path()
        if default.exists():
            store = str(default)
        elif from_store is not None:
            raise UsageError(f"no store at {default}: give --store PATH")
    inputs = ReportInputs(
        pid=pid,
        store=store,
        store_target=from_store,
        explain_doc=load_json(explain_file, "explain document") if explain_file else None,
        explain_live=not no_explain,
        trace_doc=load_json(trace_file, "trace document") if trace_file else None,
        trace_for=parse_duration(trace_for) if trace_for else None,
        lab=lab,
        stress_doc=load_json(stress_file, "stress document") if stress_file else None,
        logs=logs,
        gdb_stacks=gdb_stacks,
        gdb_timeout=gdb_timeout,
        redact_extra=redact_extra,
        expected=expected,
        title=title,
        root=proc_root,
    )
    rep = build_report(inputs)
    written = write_report(rep, out_dir, github=fmt == "github")
    click.echo(f"report: {written.markdown}")
    click.echo(f"html:   {written.html}")
    for c in written.charts:
        click.echo(f"chart:  {c.path}")
    if written.github is not None:
        size = len(written.github.read_text(encoding="utf-8"))
        click.echo(f"github: {written.github} ({size} characters"
                   + (f", {len(written.attachments)} attachments in "
                      f"{written.github.parent / 'attachments'}" if written.attachments else "")
                   + ")")
    missing = [c.what for c in rep.missing]
    if missing:
        click.echo("still missing: " + "; ".join(missing))
    red = rep.redactor.summary()
    if red.total:
        click.echo("redacted: " + ", ".join(f"{n} {k}" for k, n in red.counts.items()))
