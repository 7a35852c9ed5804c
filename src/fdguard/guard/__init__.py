"""fdguard guard: keep a leaking service up -- inherited sockets, graceful and rolling restarts.

Re-exports only. The parts: `spec` (what to run), `sockets` (the listening
sockets the guard owns and hands over the systemd way), `process` (fork/exec
of a worker that cannot outlive the guard), `notify` (sd_notify readiness),
`triggers` (pure restart rules), `supervisor` (the loop), `control` (the
control socket), `systemd` (unit files), `throttle` (admission control proxy).
"""

from fdguard.guard.control import GuardNotRunning, control_path, runtime_dir, send_command
from fdguard.guard.process import WorkerStartError
from fdguard.guard.sockets import Listener, bind
from fdguard.guard.spec import (
    GuardConfig,
    ListenSpec,
    ProgramSpec,
    Readiness,
    Triggers,
    load_config,
    parse_listen,
)
from fdguard.guard.supervisor import GuardEvent, Supervisor

__all__ = [
    "GuardConfig",
    "GuardEvent",
    "GuardNotRunning",
    "ListenSpec",
    "Listener",
    "ProgramSpec",
    "Readiness",
    "Supervisor",
    "Triggers",
    "WorkerStartError",
    "bind",
    "control_path",
    "load_config",
    "parse_listen",
    "runtime_dir",
    "send_command",
]
