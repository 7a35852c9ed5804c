"""`fdguard export`: serve watched processes' fd metrics for Prometheus."""

from __future__ import annotations

from pathlib import Path

import click

from fdguard.cli.watch_cmd import (
    build_alerts,
    close_store,
    exited,
    history_from,
    open_store,
    resolve_targets,
    stop_on_sigterm,
    target_options,
    watch_config,
)
from fdguard.errors import UsageError
from fdguard.exporter import DEFAULT_HOST, DEFAULT_PORT, WatchCollector, serve
from fdguard.targets import TargetSet
from fdguard.watch import Watcher


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or PORT (loopback)."""
    if text.isdigit():
        return DEFAULT_HOST, int(text)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"bad --listen {text!r}: use HOST:PORT")
    return host.strip("[]") or DEFAULT_HOST, int(port)


@click.command()
@target_options
@click.option(
    "--listen",
    default=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
    show_default=True,
    help="Address of /metrics. Loopback unless you say otherwise.",
)
@click.option(
    "--max-targets",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Export at most this many processes (highest counts first).",
)
def export(
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
    listen: str,
    max_targets: int,
) -> None:
    """Serve Prometheus metrics for watched processes (process_open_fds, per kind, leak ETA).

    \b
    Example:
      fdguard export --name '^node$' --listen 127.0.0.1:9639
    """
    host, port = parse_listen(listen)
    target_specs, launched = resolve_targets(
        pids, names, cmdlines, pidfiles, cgroups, specs, command, verb="export"
    )
    history = history_from(history_url, history_query, history_headers)
    store = None
    watcher: Watcher | None = None
    server = None
    try:
        store = open_store(store_path, no_store, store_max_mb)
        watcher = Watcher(
            TargetSet(target_specs),
            config=watch_config(
                interval, snapshot_every, rescan_every, period, resume=not no_resume
            ),
            store=store,
            alerts=build_alerts(0.8, 60.0, 3600.0),
            history=history,
        )
        try:
            server = serve(
                WatchCollector(watcher.views, max_targets=max_targets), host=host, port=port
            )
        except OSError as err:
            raise UsageError(f"cannot listen on {host}:{port}: {err.strerror}") from err
        click.echo(f"serving http://{server.host}:{server.port}/metrics", err=True)
        with stop_on_sigterm(watcher):
            watcher.run(max_rounds=rounds, duration=duration, until=exited(launched))
    finally:
        if server is not None:
            server.close()
        if launched is not None:
            launched.stop()
        close_store(store, watcher)
