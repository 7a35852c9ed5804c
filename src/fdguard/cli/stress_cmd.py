"""`fdguard stress`: run a service under faults, round by round, and say which fault leaks."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fdguard.cli.render import console, echo_json
from fdguard.errors import ExitStatus, UsageError
from fdguard.scenario import load_scenario, parse_fault_spec
from fdguard.stress import (
    WORKLOAD_MODES,
    ConfigResult,
    Scenario,
    Service,
    StressEvent,
    StressResult,
    Workload,
    run,
)


def _build_scenario(
    scenario_path: str | None,
    command: tuple[str, ...],
    faults: tuple[str, ...],
    overrides: dict[str, Any],
    workload_overrides: dict[str, Any],
    port: int | None,
) -> Scenario:
    if scenario_path is not None:
        sc = load_scenario(scenario_path, command=command or None)
    else:
        if not command:
            raise UsageError("give the service command after --, or --scenario FILE")
        sc = Scenario(name=" ".join(command), service=Service(argv=command))
    if port is not None:
        sc = dataclasses.replace(sc, service=dataclasses.replace(sc.service, port=port))
    if faults:
        extra = tuple(parse_fault_spec(f) for f in faults)
        names = [c.name for c in sc.faults + extra]
        if len(set(names)) != len(names):
            raise UsageError("fault names must be unique")
        sc = dataclasses.replace(sc, faults=sc.faults + extra)
    if overrides:
        sc = dataclasses.replace(sc, policy=dataclasses.replace(sc.policy, **overrides))
    if workload_overrides:
        sc = dataclasses.replace(sc, workload=dataclasses.replace(sc.workload,
                                                                  **workload_overrides))
    return sc


def _verdict(r: ConfigResult) -> str:
    if r.error is not None:
        return "ERROR"
    if r.squeeze is not None:
        return "recovered" if r.squeeze.recovered else "NOT RECOVERED"
    return "LEAK" if r.leak else "ok"


def _growth(r: ConfigResult) -> str:
    parts = [f"{k} {v:+g}" for k, v in r.growth_by_kind.items()]
    parts += [f"{k} {v:+g}" for k, v in r.growth_by_state.items()]
    return ", ".join(parts)


def _birth_line(cert: dict[str, Any]) -> str:
    """One birth-certificate group: how many, which syscall, who, the stack's top."""
    if "note" in cert:
        return f"birth certificates: {cert['note']}"
    # Collapse runs of frames from one module: "libpython3.11.so (_io_open) <
    # loop.cpython-311-x86_64-linux-gnu.so (...call_connection_made)" reads
    # better than twenty interpreter frames.
    frames: list[str] = []
    last_module = None
    for f in cert.get("frames", []):
        if f.get("origin") == "system":
            continue
        module = (f.get("module") or "?").rsplit("/", 1)[-1]
        if module != last_module:
            frames.append(f"{module}:{f.get('symbol') or '?'}")
            last_module = module
    frames = frames[:5]
    libuv = f" via {cert['libuv_function']}" if cert.get("libuv_function") else ""
    return (f"born: {cert.get('count')} fds by {cert.get('syscall')} ({cert.get('creator')}"
            f"{libuv}) at " + " < ".join(frames))


def render_human(result: StressResult, out: Console) -> None:
    table = Table(box=None, pad_edge=False, show_edge=False)
    for col in ("CONFIG", "FAULTS", "VERDICT", "FDS/ROUND", "DELTAS", "GROWTH PER ROUND"):
        table.add_column(col, overflow="fold")
    for r in result.results:
        table.add_row(r.config.name, r.config.label, _verdict(r), f"{r.growth_per_round:+.1f}",
                      " ".join(f"{d:+d}" for d in r.deltas), _growth(r))
    out.print(f"scenario: {result.scenario}", markup=False)
    out.print(table)
    for r in result.results:
        if r.error is not None:
            out.print(f"\n{r.config.name}: could not run: {r.error}", markup=False)
        if r.squeeze is not None:
            s = r.squeeze
            out.print(
                f"\n{r.config.name}: soft limit {s.original.soft} -> {s.squeezed_soft} and back; "
                f"{s.flood_connected} connections held; fds {s.baseline_fds} -> peak {s.peak_fds}"
                f" -> {s.fds_after}; CPU {s.cpu_during:.0%} squeezed, {s.cpu_after:.0%} after; "
                f"served again: {'yes' if s.served_after else 'no'}",
                markup=False,
            )
            for p in s.problems:
                out.print(f"  problem: {p}", markup=False)
        if r.leak:
            out.print(f"\n{r.config.name} ({r.config.label}): {r.reason}", markup=False)
            for f in r.leaked[:10]:
                where = " ".join(x for x in (f.local, f.remote and f"-> {f.remote}") if x)
                state = f" {f.state.value}" if f.state else ""
                deleted = " (deleted)" if f.deleted else ""
                out.print(f"  fd {f.fd}: {f.kind.value}{state} {f.target}{deleted} {where}"
                          .rstrip(), markup=False)
            if len(r.leaked) > 10:
                out.print(f"  ... and {len(r.leaked) - 10} more", markup=False)
            for cert in r.birth_certificates[:5]:
                out.print(f"  {_birth_line(cert)}", markup=False)
    if result.leak:
        out.print(f"\nFAILED: {', '.join(result.leaking)}", markup=False)
    else:
        out.print("\nno leak in any configuration", markup=False)


def _progress(enabled: bool) -> tuple[Progress | None, Callable[[StressEvent], None]]:
    if not enabled:
        return None, lambda _e: None
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[fds]}"),
        console=Console(file=sys.stderr),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def on_event(e: StressEvent) -> None:
        if e.kind == "start":
            tasks[e.config] = progress.add_task(e.config, total=e.total_rounds, fds="")
        elif e.kind == "round" and e.config in tasks:
            progress.update(tasks[e.config], completed=e.round, fds=f"{e.count} fds")
        elif e.kind == "done" and e.config in tasks and e.result is not None:
            progress.update(tasks[e.config], completed=e.total_rounds or e.round,
                            fds=_verdict(e.result))

    return progress, on_event


@click.command("stress", context_settings={"allow_interspersed_args": False})
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False),
              help="A TOML scenario file (see examples/scenarios/).")
@click.option("--fault", "faults", multiple=True, metavar="SPEC",
              help="Add a fault configuration: syscall:connect:error=ECONNREFUSED[:when=1+], "
                   "fiu:connect:error=ECONNREFUSED, proxy:reset_after=4,latency_ms=20, "
                   "squeeze[:headroom=2]; NAME=SPEC names it. Repeatable.")
@click.option("--only", multiple=True, metavar="NAME", help="Run only these configurations.")
@click.option("--rounds", type=int, help="Measured rounds per configuration.")
@click.option("--duration", type=float, metavar="SECONDS",
              help="Soak: keep running measured rounds (at least --rounds) this long.")
@click.option("--warmup", type=int, help="Warm-up rounds (growth forgiven).")
@click.option("--connections", type=int, help="Connections per round (built-in driver).")
@click.option("--mode", type=click.Choice(WORKLOAD_MODES), help="What each connection does.")
@click.option("--port", type=int, help="The service's port (default: first number it prints).")
@click.option("--no-baseline", is_flag=True, help="Do not run the fault-free baseline.")
@click.option("--birth-certificates", "certify", is_flag=True,
              help="For a leaking configuration, run it again under strace -k and show "
                   "where the leaked fds were created (slow).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def stress(
    scenario_path: str | None,
    faults: tuple[str, ...],
    only: tuple[str, ...],
    rounds: int | None,
    duration: float | None,
    warmup: int | None,
    connections: int | None,
    mode: str | None,
    port: int | None,
    no_baseline: bool,
    certify: bool,
    as_json: bool,
    progress: bool | None,
    command: tuple[str, ...],
) -> None:
    """Run CMD (a loopback service) under faults and judge fd leaks per fault.

    \b
    Each fault configuration runs on a fresh service: warm-up rounds, then
    measured rounds; it leaks when every measured round grew the fd count.
    Exit status 10 when any configuration leaks or does not recover.

    \b
    Example:
      fdguard stress --fault syscall:connect:error=ECONNREFUSED \\
          --fault proxy:reset_after=4 -- node server.js
    """
    overrides: dict[str, Any] = {}
    if rounds is not None:
        overrides["rounds"] = rounds
    if warmup is not None:
        overrides["warmup"] = warmup
    if duration is not None:
        overrides["duration_s"] = duration
    if no_baseline:
        overrides["baseline"] = False
    wl: dict[str, Any] = {}
    if connections is not None:
        wl["connections"] = connections
    if mode is not None:
        wl["mode"] = mode
    sc = _build_scenario(scenario_path, command, faults, overrides, wl, port)
    # Validate the merged workload (dataclasses.replace re-runs __post_init__).
    Workload.__post_init__(sc.workload)
    show = sys.stderr.isatty() if progress is None else progress
    bar, on_event = _progress(show)
    if bar is not None:
        with bar:
            result = run(sc, on_event=on_event, only=only or None, birth_certificates=certify)
    else:
        result = run(sc, on_event=on_event, only=only or None, birth_certificates=certify)
    if as_json:
        echo_json(result.to_json())
    else:
        render_human(result, console())
    if result.leak:
        click.get_current_context().exit(int(ExitStatus.LEAK_FOUND))
