"""`fdguard guard`: run a service under a supervisor that restarts it gracefully on fd triggers.

    fdguard guard [OPTIONS] -- CMD ARGS     run (the default sub-command)
    fdguard guard --config guard.toml       several named programs
    fdguard guard restart [PROGRAM]         rolling restart, on demand
    fdguard guard status | stop
    fdguard guard throttle ...              admission-control proxy
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

from fdguard.cli.render import echo_json
from fdguard.errors import FdguardError, StoreError, UsageError
from fdguard.guard.control import GuardNotRunning, control_path, runtime_dir, send_command
from fdguard.guard.notify import sd_notify
from fdguard.guard.sockets import Listener, adopt_systemd, bind, close_all
from fdguard.guard.spec import (
    GuardConfig,
    ProgramSpec,
    Readiness,
    Triggers,
    load_config,
    parse_listen,
)
from fdguard.guard.supervisor import GuardEvent, Supervisor
from fdguard.guard.systemd import render_units
from fdguard.guard.throttle import ThrottleProxy, ThrottleSpec, run_proxy
from fdguard.procfs.process import ProcessDir
from fdguard.store import Store


class GuardGroup(click.Group):
    """A group whose first argument, when it names no sub-command, means `run`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] != "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=GuardGroup)
def guard() -> None:
    """Run a service and restart it gracefully before it runs out of fds.

    \b
    fdguard guard [OPTIONS] -- CMD ARGS   run CMD under the guard (see `guard run --help`)
    fdguard guard restart [PROGRAM]       rolling restart of a running guard
    fdguard guard status                  workers, fd counts, restarts
    fdguard guard stop                    drain and stop
    fdguard guard throttle ...            connection rate/concurrency cap proxy
    """


def _config_from_options(
    command: tuple[str, ...],
    *,
    name: str | None,
    listen: tuple[str, ...],
    workers: int,
    ready: str,
    ready_timeout: float,
    grace: float,
    max_fd_share: float | None,
    eta_below: float | None,
    max_lifetime: float | None,
    lifetime_jitter: float,
    nofile: int | None,
    env: tuple[str, ...],
    interval: float,
    max_start_failures: int,
    backoff: float,
) -> GuardConfig:
    if not command:
        raise UsageError("give a command after --, or --config FILE")
    prog_name = name or os.path.basename(command[0]) or "app"
    prog_name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in prog_name)[:64]
    env_pairs = []
    for item in env:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"--env takes KEY=VALUE, not {item!r}")
        env_pairs.append((k, v))
    specs = tuple(
        parse_listen(x, default_name="http" if i == 0 else f"s{i}") for i, x in enumerate(listen)
    )
    readiness = Readiness(ready) if ready != "auto" else (
        Readiness.ACCEPTING if specs else Readiness.NONE
    )
    prog = ProgramSpec(
        name=prog_name,
        argv=command,
        workers=workers,
        listen=specs,
        readiness=readiness,
        ready_timeout=ready_timeout,
        grace=grace,
        triggers=Triggers(
            max_fd_share=max_fd_share,
            eta_below=eta_below,
            max_lifetime=max_lifetime,
            lifetime_jitter=lifetime_jitter,
        ),
        nofile=nofile,
        env=tuple(env_pairs),
        max_start_failures=max_start_failures,
        backoff=backoff,
    )
    return GuardConfig(name=prog_name, programs=(prog,), interval=interval)


def _bind_all(config: GuardConfig) -> dict[str, list[Listener]]:
    specs = [ls for p in config.programs for ls in p.listen]
    adopted = adopt_systemd(specs)
    out: dict[str, list[Listener]] = {}
    done: list[Listener] = []
    try:
        it = iter(adopted) if adopted is not None else None
        for p in config.programs:
            lst = []
            for spec in p.listen:
                ls = next(it) if it is not None else bind(spec)
                done.append(ls)
                lst.append(ls)
            out[p.name] = lst
    except BaseException:
        close_all(done)
        raise
    return out


class _EventPrinter:
    """Render guard events: one log line each on stderr (or JSON lines on stdout).

    Also tells a service manager (systemd, $NOTIFY_SOCKET of the guard itself)
    READY=1 when every program is up and STOPPING=1 on stop, and records
    worker lifecycles in the store when one is given.
    """

    def __init__(self, as_json: bool, listeners: dict[str, list[Listener]],
                 notify_path: str | None, store: Store | None, guard_name: str) -> None:
        self.as_json = as_json
        self.listeners = listeners
        self.notify_path = notify_path
        self.store = store
        self.guard_name = guard_name
        self.store_failed = False

    def _record(self, ev: GuardEvent) -> None:
        if self.store is None or self.store_failed or ev.pid is None:
            return
        if ev.kind not in ("ready", "restarted"):
            return
        try:
            refs = {}
            for pid in (ev.pid, ev.old_pid):
                if pid is None:
                    continue
                with contextlib.suppress(FdguardError), ProcessDir(pid) as proc:
                    refs[pid] = (proc.ref, proc.read_cmdline())
            if ev.pid not in refs:
                return
            label = f"guard:{self.guard_name}/{ev.program}/{ev.slot}"
            ref, cmd = refs[ev.pid]
            tid = self.store.target_id(ref, cmd, ev.t, label)
            data = {"program": ev.program, "slot": ev.slot, "reason": ev.reason}
            if ev.kind == "restarted" and ev.old_pid in refs:
                old_ref, old_cmd = refs[ev.old_pid]
                data["old_target_id"] = self.store.target_id(old_ref, old_cmd, ev.t, label)
                data["old_pid"] = ev.old_pid
            self.store.add_event(tid, ev.t, "restart" if ev.kind == "restarted" else "start",
                                 data)
        except StoreError as err:
            # The guard keeps the service up whatever happens to its records.
            self.store_failed = True
            click.echo(f"fdguard guard: warning: recording stopped: {err}", err=True)

    def __call__(self, ev: GuardEvent) -> None:
        self._record(ev)
        if ev.kind == "up":
            sd_notify(b"READY=1\nSTATUS=all programs ready", self.notify_path)
        elif ev.kind == "stop":
            sd_notify(b"STOPPING=1", self.notify_path)
        if self.as_json:
            click.echo(json.dumps(ev.to_json()))
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ev.t))
            click.echo(f"{stamp}.{int(ev.t * 1000) % 1000:03d}Z fdguard guard: {ev.message()}",
                       err=True)
        if ev.kind == "up" and not self.as_json:
            # One machine-readable line on stdout once every program is ready.
            listen = {n: [ls.address for ls in lst] for n, lst in self.listeners.items()}
            click.echo(json.dumps({"event": "up", "listen": listen, **dict(ev.data)}))
        sys.stdout.flush()


@guard.command("run", context_settings={"ignore_unknown_options": False})
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML file with several [programs.NAME] (instead of -- CMD).")
@click.option("--name", help="Name of the program/guard (default: the command's name).")
@click.option("--listen", multiple=True, metavar="[NAME=]ADDR",
              help="A socket the guard owns and passes as fd 3, 4...: host:port or unix:/path.")
@click.option("--workers", "-w", type=int, default=1, show_default=True)
@click.option("--ready", type=click.Choice(["auto", "accepting", "notify", "none"]),
              default="auto", show_default=True,
              help="How a new worker shows it is ready: its event loop watches the socket "
              "(accepting), READY=1 on $NOTIFY_SOCKET (notify), or at once (none).")
@click.option("--ready-timeout", type=float, default=30.0, show_default=True)
@click.option("--grace", type=float, default=30.0, show_default=True,
              help="Seconds an old worker may drain after SIGTERM before SIGKILL.")
@click.option("--max-fd-share", type=float,
              help="Restart a worker whose open fds reach this share of its soft limit (0-1).")
@click.option("--eta-below", type=float,
              help="Restart a worker whose leak ETA to the limit is below this (seconds).")
@click.option("--max-lifetime", type=float, help="Restart workers after this many seconds.")
@click.option("--lifetime-jitter", type=float, default=0.0,
              help="Add up to this many seconds to each worker's max lifetime.")
@click.option("--nofile", type=int, help="RLIMIT_NOFILE (soft and hard) of the workers.")
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="Extra environment.")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="Seconds between trigger checks.")
@click.option("--max-start-failures", type=int, default=5, show_default=True)
@click.option("--backoff", type=float, default=0.5, show_default=True,
              help="First delay after a failed start; doubles each time.")
@click.option("--runtime-dir", type=click.Path(file_okay=False),
              help="Base directory for the control socket (default $XDG_RUNTIME_DIR/fdguard).")
@click.option("--log-json", is_flag=True, help="Every event as one JSON line on stdout.")
@click.option("--store", "store_path", type=click.Path(dir_okay=False),
              help="Record worker starts and restarts (linking old and new) in this store.")
@click.option("--print-systemd", is_flag=True,
              help="Print a .socket and .service unit running this guard, and exit.")
def run(
    command: tuple[str, ...],
    config_path: str | None,
    name: str | None,
    listen: tuple[str, ...],
    workers: int,
    ready: str,
    ready_timeout: float,
    grace: float,
    max_fd_share: float | None,
    eta_below: float | None,
    max_lifetime: float | None,
    lifetime_jitter: float,
    nofile: int | None,
    env: tuple[str, ...],
    interval: float,
    max_start_failures: int,
    backoff: float,
    runtime_dir: str | None,
    log_json: bool,
    store_path: str | None,
    print_systemd: bool,
) -> None:
    """Run CMD (or the programs of --config) and restart workers gracefully on triggers.

    The guard owns the listening sockets and passes them to each worker as fds
    3, 4, ... with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES (systemd's convention):
    Node.js takes them with `server.listen({fd: 3})`, asyncio/uvloop with
    `loop.create_server(..., sock=socket.socket(fileno=3))`. A restart starts
    the new worker, waits until it is ready, then sends SIGTERM to the old one
    (SIGKILL after --grace). SIGHUP or `fdguard guard restart` restarts on demand.
    """
    if config_path is not None:
        if command:
            raise UsageError("give either --config FILE or -- CMD, not both")
        config = load_config(config_path)
    else:
        # Keywords, not positions: a dozen neighbouring floats and Nones swap silently.
        config = _config_from_options(
            command, name=name, listen=listen, workers=workers, ready=ready,
            ready_timeout=ready_timeout, grace=grace, max_fd_share=max_fd_share,
            eta_below=eta_below, max_lifetime=max_lifetime, lifetime_jitter=lifetime_jitter,
            nofile=nofile, env=env, interval=interval, max_start_failures=max_start_failures,
            backoff=backoff,
        )
    if print_systemd:
        argv = _guard_argv(config, config_path)
        click.echo(render_units(config, argv, nofile=nofile).render(), nl=False)
        return
    rdir = runtime_dir_for(config.name, runtime_dir)
    ctl = rdir / "control.sock"
    if ctl.exists():
        try:
            send_command(ctl, {"cmd": "status"}, timeout=2.0)
        except GuardNotRunning:
            pass
        else:
            raise UsageError(f"a guard named {config.name} is already running ({ctl})")
    # systemd's NOTIFY_SOCKET is for the guard itself (the workers get the guard's own).
    notify_path = os.environ.get("NOTIFY_SOCKET")
    listeners = _bind_all(config)
    store = Store(store_path) if store_path else None
    try:
        logging.getLogger("fdguard.guard").propagate = False
        sup = Supervisor(
            config,
            listeners,
            runtime_dir=rdir,
            on_event=_EventPrinter(log_json, listeners, notify_path, store, config.name),
            reap_all=True,
        )
        status = sup.run()
    finally:
        close_all([ls for lst in listeners.values() for ls in lst])
        if store is not None:
            store.close()
    if status:
        raise click.exceptions.Exit(status)


def _guard_argv(config: GuardConfig, config_path: str | None) -> list[str]:
    """The `fdguard guard ...` command line that runs `config` (for ExecStart=)."""
    exe = shutil.which("fdguard") or "/usr/local/bin/fdguard"
    if config_path is not None:
        return [exe, "guard", "--config", os.path.abspath(config_path)]
    (p,) = config.programs
    t = p.triggers
    argv = [exe, "guard", "--name", p.name, "--workers", str(p.workers),
            "--ready", p.readiness.value, "--ready-timeout", f"{p.ready_timeout:g}",
            "--grace", f"{p.grace:g}", "--interval", f"{config.interval:g}"]
    for ls in p.listen:
        argv += ["--listen", f"{ls.name}={ls}"]
    for flag, val in (("--max-fd-share", t.max_fd_share), ("--eta-below", t.eta_below),
                      ("--max-lifetime", t.max_lifetime)):
        if val is not None:
            argv += [flag, f"{val:g}"]
    if t.lifetime_jitter:
        argv += ["--lifetime-jitter", f"{t.lifetime_jitter:g}"]
    if p.nofile is not None:
        argv += ["--nofile", str(p.nofile)]
    for k, v in p.env:
        argv += ["--env", f"{k}={v}"]
    return [*argv, "--", *p.argv]


def runtime_dir_for(name: str, base: str | None) -> Path:
    return runtime_dir(name, base)


def _ask(name: str | None, base: str | None, request: dict[str, Any]) -> dict[str, Any]:
    if name is None:
        root = Path(base) if base else runtime_dir("_probe", base).parent
        running = sorted(p.parent.name for p in root.glob("*/control.sock"))
        if len(running) != 1:
            raise UsageError(
                f"{len(running)} guards found under {root}: name one with --name "
                f"({', '.join(running) or 'none running'})"
            )
        name = running[0]
    answer = send_command(control_path(name, base), request)
    if not answer.get("ok"):
        raise UsageError(str(answer.get("error", "the guard refused")))
    return answer


_name_opt = click.option("--name", help="Which guard (default: the only one running).")
_rdir_opt = click.option("--runtime-dir", type=click.Path(file_okay=False), hidden=False,
                         help="Base directory of the control sockets.")


@guard.command("restart")
@click.argument("program", required=False)
@_name_opt
@_rdir_opt
@click.option("--json", "as_json", is_flag=True)
def restart_cmd(program: str | None, name: str | None, runtime_dir: str | None,
                as_json: bool) -> None:
    """Rolling restart of PROGRAM's workers (all programs by default), one at a time."""
    ans = _ask(name, runtime_dir, {"cmd": "restart", "program": program})
    if as_json:
        echo_json(ans)
        return
    queued = ans.get("queued", [])
    if not queued:
        click.echo("nothing queued (restarts already pending, or stopping)")
    for q in queued:
        click.echo(f"restart queued: {q['program']} worker {q['slot']}")


@guard.command("status")
@_name_opt
@_rdir_opt
@click.option("--json", "as_json", is_flag=True)
def status_cmd(name: str | None, runtime_dir: str | None, as_json: bool) -> None:
    """Workers of a running guard with their fd counts and limits."""
    st = _ask(name, runtime_dir, {"cmd": "status"})["status"]
    if as_json:
        echo_json(st)
        return
    click.echo(f"guard {st['name']}{' (stopping)' if st['stopping'] else ''}")
    for pname, p in st["programs"].items():
        click.echo(f"  {pname}: {p['state']}, {p['restarts']} restarts, listen "
                   f"{', '.join(p['listen']) or '-'}")
        for w in p["workers"]:
            lim = w["soft_limit"] if w["soft_limit"] is not None else "?"
            fds = w["fds"] if w["fds"] is not None else "?"
            click.echo(f"    worker {w['slot']} pid {w['pid']} {w['state']} "
                       f"up {w['age']:.0f}s fds {fds}/{lim}")


@guard.command("stop")
@_name_opt
@_rdir_opt
def stop_cmd(name: str | None, runtime_dir: str | None) -> None:
    """Drain every worker and stop the guard."""
    _ask(name, runtime_dir, {"cmd": "stop"})
    click.echo("stopping")


@guard.command("throttle")
@click.option("--listen", required=True, metavar="ADDR",
              help="Where clients connect (host:port or unix:/path).")
@click.option("--upstream", required=True, metavar="ADDR",
              help="The service behind (host:port or unix:/path).")
@click.option("--rate", type=float, help="New connections admitted per second.")
@click.option("--burst", type=int, default=1, show_default=True,
              help="Connections admitted at once above the rate.")
@click.option("--max-conns", type=int, help="Open connections to the upstream at most.")
@click.option("--queue", type=int, default=0, show_default=True,
              help="Connections that may wait for admission; beyond, they are refused.")
@click.option("--queue-timeout", type=float, default=5.0, show_default=True,
              help="Seconds a queued connection waits before it is refused.")
@click.option("--refuse", type=click.Choice(["reset", "http503"]), default="reset",
              show_default=True, help="How to refuse: TCP reset, or an HTTP 503.")
def throttle_cmd(listen: str, upstream: str, rate: float | None, burst: int,
                 max_conns: int | None, queue: int, queue_timeout: float, refuse: str) -> None:
    """A loopback proxy capping new connections/s and concurrency in front of a service.

    Prints one JSON line when it listens, and its counters as JSON on SIGTERM/SIGINT.
    Takes its listening socket from LISTEN_FDS when run under `fdguard guard`
    (a program of its own in the guard's TOML) or systemd.
    """
    spec = ThrottleSpec(rate=rate, burst=burst, max_conns=max_conns, queue=queue,
                        queue_timeout=queue_timeout, refuse=refuse)
    if rate is None and max_conns is None:
        raise UsageError("give --rate and/or --max-conns: without a cap there is nothing to do")
    lspec = parse_listen(listen, default_name="throttle")
    # Under a guard (or systemd) the listening socket is inherited: the proxy
    # itself can then be restarted without refusing a connection.
    adopted = adopt_systemd([lspec])
    ls = adopted[0] if adopted else bind(lspec)
    try:
        proxy = ThrottleProxy(ls.sock, parse_listen(upstream, default_name="upstream"), spec)

        def ready() -> None:
            click.echo(json.dumps({"event": "up", "listen": ls.address, "upstream": upstream}))
            sys.stdout.flush()

        stats = run_proxy(proxy, ready)
    finally:
        close_all([ls])
    click.echo(json.dumps({"event": "stop", **stats.to_json()}))
