"""`fdguard watch`: follow processes' fd counts live, detect leaks, alert, record history."""

from __future__ import annotations

import contextlib
import math
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.live import Live
from rich.table import Table

from fdguard.alerts import (
    AlertEngine,
    CommandSink,
    EtaRule,
    LogSink,
    RateRule,
    Sink,
    StreamSink,
    ThresholdRule,
    TrendRule,
    WebhookSink,
)
from fdguard.cli.render import console, echo_json
from fdguard.detect import DetectorConfig
from fdguard.errors import FdguardError, LeakDetected, NoSuchProcess, UsageError
from fdguard.promsource import (
    DEFAULT_HISTORY_QUERY,
    check_url,
    history_source,
    parse_headers,
)
from fdguard.store import Store, default_path
from fdguard.targets import LaunchedProcess, SpecKind, TargetSet, TargetSpec
from fdguard.watch import (
    HistorySource,
    TargetView,
    WatchConfig,
    Watcher,
    WatchEvent,
    detector_config_for,
)

F = TypeVar("F", bound=Callable[..., Any])


def history_from(
    url: str | None, query: str | None, headers: tuple[str, ...]
) -> HistorySource | None:
    """The watcher's history source for the --history-* options (None without a URL)."""
    if url is None:
        if query is not None or headers:
            opt = "--history-query" if query is not None else "--history-header"
            raise UsageError(f"{opt} needs --history-from URL")
        return None
    check_url(url, "--history-from")  # now, not once per process followed
    return history_source(
        url, query or DEFAULT_HISTORY_QUERY, headers=parse_headers(headers, "--history-header")
    )


def target_options(f: F) -> F:
    """The options that say which processes to follow (shared by watch and export)."""
    opts = [
        click.option("--pid", "pids", multiple=True, type=int, help="Follow this PID."),
        click.option(
            "--name", "names", multiple=True, help="Follow processes whose comm matches REGEX."
        ),
        click.option(
            "--cmdline",
            "cmdlines",
            multiple=True,
            help="Follow processes whose command line matches REGEX.",
        ),
        click.option(
            "--pidfile",
            "pidfiles",
            multiple=True,
            help="Follow the PID in this file (re-read: restarts are followed).",
        ),
        click.option(
            "--cgroup",
            "cgroups",
            multiple=True,
            help="Follow every process of this cgroup (v2 path).",
        ),
        click.option(
            "-t",
            "--target",
            "specs",
            multiple=True,
            help="A target spec: pid:N, name:RE, cmdline:RE, pidfile:P, cgroup:P.",
        ),
        click.option(
            "--store",
            "store_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="SQLite store [default: $XDG_DATA_HOME/fdguard/fdguard.db].",
        ),
        click.option("--no-store", is_flag=True, help="Record nothing on disk."),
        click.option(
            "--no-resume",
            is_flag=True,
            help="Judge from live samples only; by default a process the store already "
            "holds (same PID and start time) goes on from its saved detector state.",
        ),
        click.option(
            "--store-max-mb",
            type=click.IntRange(min=1),
            default=256,
            show_default=True,
            help="Bound the store's size; the oldest samples go first.",
        ),
        click.option(
            "--interval",
            type=click.FloatRange(min=0.01),
            default=1.0,
            show_default=True,
            help="Seconds between counts.",
        ),
        click.option(
            "--snapshot-every",
            type=click.FloatRange(min=0.01),
            default=60.0,
            show_default=True,
            help="Seconds between full classified snapshots.",
        ),
        click.option(
            "--rescan-every",
            type=click.FloatRange(min=0.01),
            default=5.0,
            show_default=True,
            help="Seconds between re-resolving name/cmdline/pidfile/cgroup targets.",
        ),
        click.option(
            "--period",
            type=click.FloatRange(min=1.0),
            default=86400.0,
            show_default=True,
            help="Longest healthy cycle (s) the leak detector tolerates; it needs this much "
            "history before it judges.",
        ),
        click.option(
            "--history-from",
            "history_url",
            metavar="URL",
            help="Read each new process's past counts from this Prometheus, so the leak "
            "detector judges at once instead of learning for a day (only samples since "
            "the process started: a restart is a new series).",
        ),
        click.option(
            "--history-query",
            metavar="PROMQL",
            help="With --history-from: the one series of a process's count; {pid} and "
            "{comm} are filled in  [default: process_open_fds{pid=\"{pid}\"}, as fdguard "
            "export publishes it]",
        ),
        click.option(
            "--history-header",
            "history_headers",
            metavar="NAME:VALUE",
            multiple=True,
            help="With --history-from: an HTTP header to send (repeatable).",
        ),
        click.option(
            "--duration",
            type=click.FloatRange(min=0),
            default=None,
            help="Stop after this many seconds.",
        ),
        click.option(
            "--rounds",
            type=click.IntRange(min=1),
            default=None,
            help="Stop after this many sampling rounds.",
        ),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_specs(
    pids: tuple[int, ...],
    names: tuple[str, ...],
    cmdlines: tuple[str, ...],
    pidfiles: tuple[str, ...],
    cgroups: tuple[str, ...],
    specs: tuple[str, ...],
) -> list[TargetSpec]:
    out = [TargetSpec.parse(s) for s in specs]
    out += [TargetSpec.parse(f"pid:{p}") for p in pids]
    out += [TargetSpec.parse(f"name:{n}") for n in names]
    out += [TargetSpec.parse(f"cmdline:{c}") for c in cmdlines]
    out += [TargetSpec(SpecKind.PIDFILE, p) for p in pidfiles]
    out += [TargetSpec(SpecKind.CGROUP, c) for c in cgroups]
    return out


def resolve_targets(
    pids: tuple[int, ...],
    names: tuple[str, ...],
    cmdlines: tuple[str, ...],
    pidfiles: tuple[str, ...],
    cgroups: tuple[str, ...],
    specs: tuple[str, ...],
    command: tuple[str, ...],
    *,
    verb: str,
) -> tuple[list[TargetSpec], LaunchedProcess | None]:
    """The specs `target_options` name, plus `-- CMD` (launched now) if given.

    Raises:
        UsageError: no target at all ("nothing to `verb`").
    """
    target_specs = build_specs(pids, names, cmdlines, pidfiles, cgroups, specs)
    if not target_specs and not command:
        raise UsageError(
            f"nothing to {verb}: give --pid, --name, --cmdline, --pidfile, --cgroup or -- CMD"
        )
    launched = LaunchedProcess(command) if command else None
    if launched is not None:
        target_specs.append(launched.spec)
    return target_specs, launched


@contextlib.contextmanager
def stop_on_sigterm(watcher: Watcher) -> Iterator[None]:
    """SIGTERM (how systemd stops a service) ends the watch the clean way: the loop
    returns and the detectors' state is saved for the next watch. The previous
    handler is put back after; off the main thread, where Python cannot handle
    signals, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: watcher.stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exited(launched: LaunchedProcess | None) -> Callable[[], bool] | None:
    """A `Watcher.run(until=...)` that stops once the launched command exits."""
    if launched is None:
        return None
    return lambda: launched.poll() is not None


def watch_config(
    interval: float,
    snapshot_every: float,
    rescan_every: float,
    period: float,
    *,
    resume: bool = True,
) -> WatchConfig:
    """The loop's cadences from `target_options`."""
    return WatchConfig(
        interval=interval,
        snapshot_every=snapshot_every,
        rescan_every=rescan_every,
        detector=detector_config(period, interval),
        resume=resume,
    )


def detector_config(period: float, interval: float) -> DetectorConfig | None:
    """The detector's defaults, or its tuning rescaled to `period` with at least two
    samples per bucket."""
    if period == 86400.0:
        return None
    cfg = detector_config_for(period)
    return detector_config_for(period, bucket=max(cfg.bucket_seconds, 2 * interval))


def open_store(store_path: Path | None, no_store: bool, max_mb: int = 256) -> Store | None:
    if no_store:
        return None
    return Store(store_path or default_path(), max_bytes=max_mb * 1024 * 1024)


def close_store(store: Store | None, watcher: Watcher | None) -> None:
    """Save the watcher's detector states in the store, then close it. Losing the
    states costs a restarted watch a day of history, not a sample, so a failing save
    never masks the error that ended the watch."""
    if store is None:
        return
    if watcher is not None:
        with contextlib.suppress(FdguardError):
            watcher.save_states()
    store.close()


def _eta(v: TargetView) -> str:
    if v.verdict is None or not v.verdict.leak or v.verdict.eta_seconds is None:
        return "-"
    s = v.verdict.eta_seconds
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def live_table(views: tuple[TargetView, ...]) -> Table:
    """The table a person keeps open during an incident."""
    table = Table(title="fdguard watch", title_justify="left", expand=False)
    for col in (
        "PID",
        "NAME",
        "FDS",
        "LIMIT",
        "USE",
        "LEAK",
        "RATE/h",
        "ETA",
        "TOP KINDS",
        "ALERTS",
    ):
        table.add_column(
            col, justify="right" if col in ("PID", "FDS", "LIMIT", "USE", "RATE/h") else "left"
        )
    for v in views:
        share = f"{v.count / v.soft_limit:.0%}" if v.count is not None and v.soft_limit else "-"
        verdict = v.verdict
        if verdict is None:
            leak = "-"
        elif verdict.leak:
            leak = f"YES {verdict.confidence:.0%}"
        elif getattr(verdict, "confirming", False):  # a rise that must hold a while yet
            leak = "confirming"
        elif (left := getattr(verdict, "warmup_left", None)) is not None:
            leak = f"learning {math.ceil(left / 3600)}h"  # the first period: too early to tell
        else:
            leak = f"no {verdict.confidence:.0%}"
        rate = (
            f"{verdict.rate_per_hour:.0f}"
            if verdict and verdict.leak and verdict.rate_per_hour
            else "-"
        )
        kinds = ", ".join(f"{k} {n}" for k, n in list(v.by_kind.items())[:3])
        leaking_kinds = [k for k, kv in v.kind_verdicts.items() if kv.leak]
        if leaking_kinds:
            kinds += "  leaking: " + ", ".join(leaking_kinds)
        table.add_row(
            str(v.target.pid),
            v.target.comm,
            "-" if v.count is None else str(v.count),
            "-" if v.soft_limit is None else str(v.soft_limit),
            share,
            leak,
            rate,
            _eta(v),
            kinds,
            ", ".join(v.firing),
        )
    return table


def build_alerts(threshold: float, rate: float, eta_horizon: float) -> AlertEngine:
    return AlertEngine(
        [
            ThresholdRule(fire_at=threshold, clear_at=max(0.0, threshold - 0.1)),
            RateRule(fire_per_hour=rate, clear_per_hour=rate / 2),
            TrendRule(),
            EtaRule(fire_below=eta_horizon, clear_above=eta_horizon * 1.5),
        ]
    )


def _human_event(ev: WatchEvent) -> str | None:
    d = ev.data
    who = f"pid {ev.ref.pid} ({ev.name})" if ev.ref is not None else ev.label
    if ev.type == "alert":
        return f"[{d['severity']}] {d['rule']} {d['state']}: {who}: {d['message']}"
    if ev.type in ("start", "restart"):
        extra = f" (was pid {d['previous_pid']})" if ev.type == "restart" else ""
        past = d.get("history")
        if past is not None and past.get("error"):
            extra += f"; no history: {past['error']}"
        elif past is not None and past.get("samples"):
            since = time.strftime("%Y-%m-%d %H:%M", time.localtime(past["since"]))
            extra += f"; judged with {past['samples']} past samples since {since}"
        elif past is not None:
            extra += "; no history since it started"
        return f"{ev.type}: {who}{extra}, soft limit {d.get('soft_limit')}"
    if ev.type == "exit":
        return f"exit: {who}"
    if ev.type == "limit_change":
        return f"limit change: {who}: soft {d['old_soft']} -> {d['soft_limit']}"
    if ev.type == "verdict" and d.get("leak"):
        what = f" of {d['kind']}" if d.get("kind") else ""
        return f"leak{what}: {who}: {d.get('reason')}"
    if ev.type == "error":
        return f"error: {who}: {d.get('message')}"
    return None


@click.command()
@target_options
@click.option("--json", "as_json", is_flag=True, help="Stream events as JSON lines (no table).")
@click.option("--samples", is_flag=True, help="With --json, also stream every sample.")
@click.option("--webhook", "webhooks", multiple=True, help="POST alert JSON to this URL.")
@click.option(
    "--alert-command",
    "alert_commands",
    multiple=True,
    help="Run this command per alert (JSON on stdin, FDGUARD_ALERT_* in env).",
)
@click.option("--alert-log", is_flag=True, help="Also log alerts (logging, to stderr).")
@click.option(
    "--threshold",
    type=click.FloatRange(0.01, 1.0),
    default=0.8,
    show_default=True,
    help="Alert at this share of the soft limit.",
)
@click.option(
    "--rate",
    "rate_alert",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Alert when a leak grows faster than this many fds/hour.",
)
@click.option(
    "--eta-horizon",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Alert when the limit is reached in under this many seconds.",
)
@click.option("--fail-on-leak", is_flag=True, help="Exit with status 10 if a leak was found.")
def watch(
    pids: tuple[int, ...],
    names: tuple[str, ...],
    cmdlines: tuple[str, ...],
    pidfiles: tuple[str, ...],
    cgroups: tuple[str, ...],
    specs: tuple[str, ...],
    store_path: Path | None,
    no_store: bool,
    no_resume: bool,
    store_max_mb: int,
    interval: float,
    snapshot_every: float,
    rescan_every: float,
    period: float,
    history_url: str | None,
    history_query: str | None,
    history_headers: tuple[str, ...],
    duration: float | None,
    rounds: int | None,
    command: tuple[str, ...],
    as_json: bool,
    samples: bool,
    webhooks: tuple[str, ...],
    alert_commands: tuple[str, ...],
    alert_log: bool,
    threshold: float,
    rate_alert: float,
    eta_horizon: float,
    fail_on_leak: bool,
) -> None:
    """Follow processes' fds live: leak verdict, rate, ETA to the limit, alerts.

    \b
    Examples:
      fdguard watch --pid 1234
      fdguard watch --name '^node$' --webhook http://127.0.0.1:9000/hook
      fdguard watch --json -- node server.js
    """
    target_specs, launched = resolve_targets(
        pids, names, cmdlines, pidfiles, cgroups, specs, command, verb="watch"
    )
    history = history_from(history_url, history_query, history_headers)
    store = None
    watcher: Watcher | None = None
    try:
        store = open_store(store_path, no_store, store_max_mb)
        sinks: list[Sink] = [WebhookSink(u) for u in webhooks]
        sinks += [CommandSink(shlex.split(c)) for c in alert_commands]
        if alert_log:
            sinks.append(LogSink())
        out = sys.stdout
        live_view = not as_json and out.isatty()
        if not as_json and not live_view:
            sinks.append(StreamSink(out, as_json=False))
        found_leak = False

        def on_event(ev: WatchEvent) -> None:
            nonlocal found_leak
            if ev.type == "verdict" and ev.data.get("leak"):
                found_leak = True
            if as_json:
                if ev.type != "sample" or samples:
                    echo_json(ev.to_json())
            elif not live_view and ev.type not in ("alert", "sample", "snapshot"):
                line = _human_event(ev)
                if line:
                    click.echo(line)

        watcher = Watcher(
            TargetSet(target_specs),
            config=watch_config(
                interval, snapshot_every, rescan_every, period, resume=not no_resume
            ),
            store=store,
            alerts=build_alerts(threshold, rate_alert, eta_horizon),
            sinks=sinks,
            on_event=on_event,
            history=history,
        )
        if live_view:
            with (
                Live(live_table(()), console=console(), auto_refresh=False) as live,
                stop_on_sigterm(watcher),
            ):

                def refresh() -> bool:
                    live.update(live_table(watcher.views()), refresh=True)
                    return launched is not None and launched.poll() is not None

                watcher.run(max_rounds=rounds, duration=duration, until=refresh)
        else:
            with stop_on_sigterm(watcher):
                watcher.run(max_rounds=rounds, duration=duration, until=exited(launched))
        if watcher.samples == 0 and watcher.finished and launched is None:
            # Only PID targets can be "finished" before a single sample: they were gone.
            raise NoSuchProcess(int(target_specs[0].value), "nothing to watch")
        if fail_on_leak and found_leak:
            raise LeakDetected("an fd leak was found")
    finally:
        if launched is not None:
            launched.stop()
        close_store(store, watcher)
        sys.stdout.flush()
