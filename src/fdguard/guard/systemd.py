"""Render systemd units for a guard: a .socket unit owning the sockets, a .service running it.

For people who want systemd to own the process: systemd binds the sockets
(the .socket unit) and passes them to `fdguard guard`, which adopts them
(LISTEN_FDS/LISTEN_PID addressed to it) and hands them on to its workers the
same way. So systemd can restart the guard itself without refusing a
connection too. The service has the fd limit (LimitNOFILE, inherited by the
workers), a restart policy, and a stop timeout longer than the drain grace.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from fdguard.guard.spec import GuardConfig


@dataclass(frozen=True, slots=True)
class Units:
    """File name -> content of each unit."""

    files: tuple[tuple[str, str], ...]

    def render(self) -> str:
        return "\n".join(f"# --- {name}\n{text}" for name, text in self.files)


def _listen_line(addr: str) -> str:
    return f"ListenStream={addr[5:] if addr.startswith('unix:') else addr}"


def render_units(
    config: GuardConfig,
    guard_argv: Sequence[str],
    *,
    nofile: int | None = None,
    restart_sec: float = 2.0,
) -> Units:
    """The units for `config`, whose guard is started as `guard_argv`.

    Args:
        guard_argv: the full `fdguard guard ...` command (ExecStart=).
        nofile: LimitNOFILE= for the service (and so for every worker); by
            default the largest `nofile` of the programs, else unset.
    """
    unit = f"fdguard-{config.name}"
    listen = [ls for p in config.programs for ls in p.listen]
    grace = max(p.grace for p in config.programs)
    if nofile is None:
        limits = [p.nofile for p in config.programs if p.nofile is not None]
        nofile = max(limits) if limits else None
    progs = ", ".join(p.name for p in config.programs)
    svc = [
        "[Unit]",
        f"Description=fdguard guard {config.name} ({progs})",
        "After=network.target",
    ]
    if listen:
        svc += [f"Requires={unit}.socket", f"After={unit}.socket"]
    svc += [
        "",
        "[Service]",
        # The guard tells systemd READY=1 once every program is ready, and
        # STOPPING=1 when it drains (sd_notify to $NOTIFY_SOCKET).
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={shlex.join(guard_argv)}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        # The guard drains its workers on SIGTERM; only it is signalled (mixed),
        # then everything left in the cgroup gets SIGKILL at the timeout.
        "KillMode=mixed",
        f"TimeoutStopSec={int(grace) + 10}",
        "Restart=on-failure",
        f"RestartSec={restart_sec:g}",
        "StartLimitBurst=5",
    ]
    if nofile is not None:
        svc.append(f"LimitNOFILE={nofile}")
    svc += ["", "[Install]", "WantedBy=multi-user.target", ""]
    files = [(f"{unit}.service", "\n".join(svc))]
    if listen:
        sock = ["[Unit]", f"Description=sockets of fdguard guard {config.name}", "", "[Socket]"]
        sock += [_listen_line(str(ls)) for ls in listen]
        names = {ls.name for ls in listen}
        if len(names) == 1:
            sock.append(f"FileDescriptorName={listen[0].name}")
        sock += ["ReusePort=no", "Backlog=1024", "", "[Install]", "WantedBy=sockets.target", ""]
        files.insert(0, (f"{unit}.socket", "\n".join(sock)))
    return Units(files=tuple(files))
