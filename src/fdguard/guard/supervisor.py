"""Run workers and replace them gracefully -- one at a time, ready before the old one drains.

Design, in the manner of gunicorn's arbiter:

- Signal handlers only `put_nowait` the signal number on a SimpleQueue; a
  wakeup fd (signal.set_wakeup_fd) interrupts the select, and the main loop
  dispatches `_on_<signal>`. Nothing else happens in a handler.
- One loop, one thread: reap, read readiness datagrams, serve the control
  socket, step each program's state machine, sleep in select until the next
  deadline. Every wait has a deadline; time is `clock()` (monotonic, injectable).
- Reaping is a waitpid(WNOHANG) loop until 0 or ECHILD (-1: every child, the
  unknown ones quietly, when the guard is its own process; only our own pids
  when embedded in another program that has children of its own).
- A replacement: spawn the new worker on the same inherited sockets; wait until
  it is ready (sd_notify READY=1, or its event loop watching the socket, see
  `spec.Readiness`); then SIGTERM the old one's process group, give it `grace`
  seconds to drain while reaping, then SIGKILL. With N workers the
  replacements roll one at a time, so N-1 workers always serve.
- A worker that cannot start (exec fails, exits or times out before ready)
  is retried with exponential backoff; after `max_start_failures` in a row the
  guard gives up on it: the old worker keeps serving if there is one, and a
  program with no worker left is FATAL (the guard exits 1 when all are).
- Workers die with the guard: own process group + PR_SET_PDEATHSIG (see
  `process`); a stop signal (TERM, INT, QUIT) is forwarded as a graceful drain
  to every worker, a second one kills them.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import random
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from fdguard.errors import FdguardError, UsageError
from fdguard.guard import triggers as trig
from fdguard.guard.control import ControlServer, reply
from fdguard.guard.notify import NotifySocket
from fdguard.guard.process import OrphanReaper, WorkerStartError, spawn
from fdguard.guard.sockets import Listener, listen_env
from fdguard.guard.spec import GuardConfig, ProgramSpec, Readiness
from fdguard.inspect import count, snapshot
from fdguard.limits import read_limits
from fdguard.procfs.process import ProcessDir
from fdguard.procfs.proctree import read_children

log = logging.getLogger("fdguard.guard")

# While a worker is starting, readiness is polled this often (seconds).
READY_POLL = 0.02
# A worker that exits this soon after becoming ready counts as a start failure,
# so a crash loop backs off instead of spinning.
MIN_UPTIME = 1.0


@dataclass(frozen=True, slots=True)
class GuardEvent:
    """Something the guard did or saw; every restart yields one with its reason.

    kind: start (a worker spawned), ready, restart (a replacement begins, with
    its reason), restarted (the new worker is ready and the old one drains),
    drain, kill, exit, start-failed, backoff, giveup, fatal, signal, stop, up
    (every program ready for the first time).
    """

    t: float
    kind: str
    program: str = ""
    slot: int | None = None
    pid: int | None = None
    old_pid: int | None = None
    reason: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        parts = [self.kind]
        if self.program:
            parts.append(f"program={self.program}")
        if self.slot is not None:
            parts.append(f"worker={self.slot}")
        if self.old_pid is not None:
            parts.append(f"old_pid={self.old_pid}")
        if self.pid is not None:
            parts.append(f"pid={self.pid}")
        parts.extend(f"{k}={v}" for k, v in self.data.items())
        if self.reason:
            parts.append(f"reason={self.reason!r}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "kind": self.kind,
            "program": self.program,
            "slot": self.slot,
            "pid": self.pid,
            "old_pid": self.old_pid,
            "reason": self.reason,
            **dict(self.data),
        }


class WorkerState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    ABANDONED = "abandoned"  # killed before it became ready; waiting to be reaped


@dataclass(eq=False)
class Worker:
    """One running worker process (mutable: the supervisor's own bookkeeping)."""

    program: str
    slot: int
    pid: int
    started: float
    reason: str
    state: WorkerState = WorkerState.STARTING
    ready_at: float | None = None
    term_at: float | None = None
    killed: bool = False
    deadline: float | None = None
    soft_limit: int | None = None
    fds: int | None = None
    detector: trig.Detector | None = None
    replacing: int | None = None
    # The process that serves: the worker itself, or the descendant that accepts
    # on the socket / that MAINPID= names when the worker is a wrapper.
    main_pid: int | None = None

    @property
    def serving_pid(self) -> int:
        return self.main_pid or self.pid


@dataclass(eq=False)
class _Program:
    spec: ProgramSpec
    listeners: list[Listener]
    slots: list[Worker | None]
    pending: deque[tuple[int, str]] = field(default_factory=deque)
    starting: Worker | None = None
    failures: int = 0
    next_try: float = 0.0
    cooldown_until: float = 0.0
    fatal: bool = False
    restarts: int = 0

    def busy(self, slot: int) -> bool:
        if self.starting is not None and self.starting.slot == slot:
            return True
        return any(s == slot for s, _ in self.pending)


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _tree(pid: int, limit: int = 32) -> list[int]:
    """`pid` and its descendants, breadth first (at most `limit`); gone ones are skipped."""
    out = [pid]
    i = 0
    while i < len(out) and len(out) < limit:
        with contextlib.suppress(FdguardError):
            out.extend(read_children(out[i]))
        i += 1
    return out[:limit]


DetectorFactory = Callable[[int | None], trig.Detector]


def default_detector_factory() -> DetectorFactory:
    """`fdguard.detect.LeakDetector(limit=...)`, or a UsageError if it is not installed."""
    try:
        from fdguard import detect  # noqa: PLC0415 - optional module, loaded on demand
    except ImportError as err:
        raise UsageError("the ETA trigger needs fdguard.detect (the leak detector)") from err

    def make(limit: int | None) -> trig.Detector:
        d: trig.Detector = detect.LeakDetector(limit=limit)
        return d

    return make


_HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


class Supervisor:
    """Supervise the programs of `config` on the already bound `listeners`.

    Args:
        config: the programs.
        listeners: program name -> its listening sockets (owned by the caller,
            who closes them after `run`).
        runtime_dir: a private (0700) directory for the notify and control sockets.
        on_event: called with every GuardEvent, from the loop (never from a handler).
        reap_all: reap every child (waitpid(-1)); only for a process of its own.
        clock, wall, rng: injectable time and randomness.
        detector_factory: builds a leak detector per worker for the ETA trigger.
        orphan_reaper: fork the helper that kills the workers' process groups
            if the guard dies (see `process.OrphanReaper`).
    """

    def __init__(
        self,
        config: GuardConfig,
        listeners: Mapping[str, Sequence[Listener]],
        *,
        runtime_dir: Path,
        on_event: Callable[[GuardEvent], None] | None = None,
        reap_all: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        detector_factory: DetectorFactory | None = None,
        base_env: Mapping[str, str] | None = None,
        orphan_reaper: bool = True,
    ) -> None:
        self.config = config
        self.runtime_dir = runtime_dir
        self.on_event = on_event
        self.reap_all = reap_all
        self.clock = clock
        self.wall = wall
        self.rng = rng or random.Random()
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.programs = {
            p.name: _Program(p, list(listeners.get(p.name, ())), [None] * p.workers)
            for p in config.programs
        }
        needs_detector = any(p.triggers.eta_below is not None for p in config.programs)
        if needs_detector and detector_factory is None:
            detector_factory = default_detector_factory()
        self.detector_factory = detector_factory
        self.workers: dict[int, Worker] = {}
        self.events: deque[GuardEvent] = deque(maxlen=1000)
        self.exit_status = 0
        self._sigq: SimpleQueue[int] = SimpleQueue()
        self._stopping = False
        self._stop_deadline_forced = False
        self._up = False
        self._next_check = 0.0
        # Process groups whose leader exited while draining: pgid -> (program, kill time).
        self._lingering: dict[int, tuple[str, float]] = {}
        self._use_reaper = orphan_reaper
        self._reaper: OrphanReaper | None = None
        self._notify: NotifySocket | None = None
        self._control: ControlServer | None = None
        self._inodes = {name: {ls.inode for ls in p.listeners} for name, p in self.programs.items()}

    # -- events -------------------------------------------------------------

    def _emit(self, kind: str, prog: str = "", **kw: Any) -> GuardEvent:
        ev = GuardEvent(t=self.wall(), kind=kind, program=prog, **kw)
        self.events.append(ev)
        log.info("%s", ev.message())
        if self.on_event is not None:
            self.on_event(ev)
        return ev

    # -- the loop -----------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the loop to stop gracefully (as SIGTERM does); safe from a handler."""
        self._sigq.put_nowait(signal.SIGTERM)

    def run(self) -> int:
        """Run until stopped (signal, control socket) or every program gave up.

        Returns:
            0 after a requested stop, 1 when every program became FATAL.
        """
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_handlers: dict[int, Any] = {}
        old_wakeup = -1
        sel = selectors.DefaultSelector()
        try:
            if self._use_reaper:
                self._reaper = OrphanReaper()
            self._notify = NotifySocket(str(self.runtime_dir / "notify.sock"))
            self._control = ControlServer(self.runtime_dir / "control.sock")
            for sig in _HANDLED:
                old_handlers[sig] = signal.signal(sig, self._handler)
            old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
            sel.register(wake_r, selectors.EVENT_READ)
            sel.register(self._notify.sock, selectors.EVENT_READ)
            sel.register(self._control.sock, selectors.EVENT_READ)
            for prog in self.programs.values():
                prog.pending.extend((i, "start") for i in range(prog.spec.workers))
            self._emit("guard", data={"control": str(self._control.path)})
            while True:
                self._tick()
                if self._stopping and not self.workers and not self._lingering:
                    break
                for _key, _ in sel.select(self._timeout()):
                    pass
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    while wake_r.recv(4096):
                        pass
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, h in old_handlers.items():
                signal.signal(signum, h)
            self._kill_all_now()
            if self._reaper is not None:
                self._reaper.close()
            sel.close()
            wake_r.close()
            wake_w.close()
            if self._notify is not None:
                self._notify.close()
            if self._control is not None:
                self._control.close()
        self._emit("exit-guard", data={"status": self.exit_status})
        return self.exit_status

    def _handler(self, sig: int, _frame: object) -> None:
        self._sigq.put_nowait(sig)

    def _tick(self) -> None:
        # Dispatch the signals queued so far; one enqueued while dispatching (a
        # callback calling request_stop) waits for the next tick, so no loop.
        pending = []
        while not self._sigq.empty():
            pending.append(self._sigq.get_nowait())
        for sig in pending:
            self._dispatch(sig)
        self._reap()
        self._read_notify()
        self._serve_control()
        now = self.clock()
        check = now >= self._next_check
        if check:
            self._next_check = now + self.config.interval
        for prog in self.programs.values():
            self._step(prog, now, check)
        self._reap_lingering(now)
        progs = self.programs.values()
        if (
            not self._up
            and not all(p.fatal for p in progs)
            and all(
                p.fatal or all(w is not None and w.state is WorkerState.READY for w in p.slots)
                for p in progs
            )
        ):
            self._up = True
            pids = {name: [w.pid for w in p.slots if w] for name, p in self.programs.items()}
            self._emit("up", data={"pids": pids})
        if not self._stopping and all(p.fatal for p in self.programs.values()):
            self.exit_status = 1
            self._begin_stop("every program gave up")

    def _timeout(self) -> float:
        now = self.clock()
        deadlines = [self._next_check]
        for prog in self.programs.values():
            if prog.starting is not None:
                deadlines.append(now + READY_POLL)
            elif prog.pending and not self._stopping:
                deadlines.append(max(prog.next_try, now))
        for w in self.workers.values():
            if w.state is WorkerState.DRAINING and not w.killed and w.term_at is not None:
                spec = self.programs[w.program].spec
                deadlines.append(w.term_at + spec.grace)
        if self._lingering:
            # Poll for the group to empty (no event tells us), up to its deadline.
            deadlines.append(now + 0.05)
        return max(0.0, min(deadlines) - now)

    # -- signals ------------------------------------------------------------

    def _dispatch(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            return  # reaping happens every tick
        name = signal.Signals(sig).name
        self._emit("signal", data={"signal": name})
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            if self._stopping:
                self._kill_all_now()
            else:
                self._begin_stop(f"{name} received")
        elif sig == signal.SIGHUP:
            self.restart(None, "SIGHUP (on demand)")
        else:
            for w in list(self.workers.values()):
                self._signal_group(w, sig)

    # -- public actions (loop thread only) -----------------------------------

    def restart(self, program: str | None, reason: str) -> list[tuple[str, int]]:
        """Queue a rolling restart of every worker of `program` (None: of all)."""
        if program is not None and program not in self.programs:
            raise UsageError(f"no program named {program!r}: {sorted(self.programs)}")
        queued = []
        for prog in self.programs.values():
            if program is not None and prog.spec.name != program:
                continue
            if prog.fatal or self._stopping:
                continue
            for slot in range(prog.spec.workers):
                if not prog.busy(slot):
                    prog.pending.append((slot, reason))
                    queued.append((prog.spec.name, slot))
        return queued

    def status(self) -> dict[str, Any]:
        now = self.clock()
        out: dict[str, Any] = {"name": self.config.name, "stopping": self._stopping, "programs": {}}
        for name, prog in self.programs.items():
            workers = []
            for w in self.workers.values():
                if w.program != name:
                    continue
                workers.append(
                    {
                        "slot": w.slot,
                        "pid": w.pid,
                        "main_pid": w.serving_pid,
                        "state": w.state.value,
                        "age": round(now - w.started, 3),
                        "fds": w.fds,
                        "soft_limit": w.soft_limit,
                    }
                )
            out["programs"][name] = {
                "state": "fatal" if prog.fatal else "running",
                "restarts": prog.restarts,
                "pending": [{"slot": s, "reason": r} for s, r in prog.pending],
                "listen": [ls.address for ls in prog.listeners],
                "workers": sorted(workers, key=lambda d: (d["slot"], d["age"])),
            }
        return out

    # -- the state machine of one program -----------------------------------

    def _step(self, prog: _Program, now: float, check: bool) -> None:
        spec = prog.spec
        w = prog.starting
        if w is not None:
            if w.state is WorkerState.STARTING and self._is_ready(prog, w):
                self._became_ready(prog, w, now)
            elif now - w.started >= spec.ready_timeout:
                self._abandon(w)
                prog.starting = None
                self._start_failed(prog, w.slot, w.reason, f"not ready after {spec.ready_timeout}s")
        idle = prog.starting is None and not self._stopping and not prog.fatal
        if idle and prog.pending and now >= prog.next_try:
            slot, reason = prog.pending.popleft()
            self._begin(prog, slot, reason, now)
        for dw in list(self.workers.values()):
            if dw.program != spec.name or dw.state is not WorkerState.DRAINING or dw.killed:
                continue
            if dw.term_at is not None and now - dw.term_at >= spec.grace:
                dw.killed = True
                self._signal_group(dw, signal.SIGKILL)
                self._emit("kill", spec.name, slot=dw.slot, pid=dw.pid,
                           reason=f"still running {spec.grace}s after SIGTERM")
        if check and not self._stopping:
            self._check_triggers(prog, now)

    def _check_triggers(self, prog: _Program, now: float) -> None:
        t = prog.spec.triggers
        for w in prog.slots:
            if w is None or w.state is not WorkerState.READY:
                continue
            try:
                w.fds = count(w.serving_pid)
                w.soft_limit = read_limits(w.serving_pid).limits.soft
            except FdguardError:
                continue  # exiting: the reaper will tell
            verdict = None
            if w.detector is not None:
                verdict = w.detector.update(self.wall(), w.fds)
            if prog.busy(w.slot) or now < prog.cooldown_until:
                continue
            reason = (
                trig.fd_share_reason(w.fds, w.soft_limit, t)
                or trig.eta_reason(verdict, t)
                or trig.lifetime_reason(now, w.started, w.deadline)
            )
            if reason:
                prog.pending.append((w.slot, reason))

    def _env(self, prog: _Program, slot: int) -> dict[str, str]:
        env = dict(self.base_env)
        for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
            env.pop(k, None)
        env.update(prog.spec.env)
        env.update(listen_env(prog.listeners))
        if prog.spec.readiness is Readiness.NOTIFY and self._notify is not None:
            env["NOTIFY_SOCKET"] = self._notify.path
        env["FDGUARD_PROGRAM"] = prog.spec.name
        env["FDGUARD_WORKER"] = str(slot)
        return env

    def _begin(self, prog: _Program, slot: int, reason: str, now: float) -> None:
        spec = prog.spec
        old = prog.slots[slot]
        try:
            pid = spawn(
                spec.argv,
                self._env(prog, slot),
                [ls.fd for ls in prog.listeners],
                nofile=spec.nofile,
                cwd=spec.cwd,
            )
        except WorkerStartError as err:
            self._start_failed(prog, slot, reason, str(err))
            return
        if self._reaper is not None:
            self._reaper.add(pid)
        w = Worker(spec.name, slot, pid, now, reason, replacing=old.pid if old else None)
        self.workers[pid] = w
        prog.starting = w
        if old is not None:
            self._emit("restart", spec.name, slot=slot, pid=pid, old_pid=old.pid, reason=reason)
        else:
            self._emit("start", spec.name, slot=slot, pid=pid, reason=reason)

    def _is_ready(self, prog: _Program, w: Worker) -> bool:
        mode = prog.spec.readiness
        if mode is Readiness.NONE:
            return True
        if mode is Readiness.ACCEPTING:
            inodes = self._inodes[prog.spec.name]
            for pid in _tree(w.pid):
                if self._accepting(pid, inodes):
                    w.main_pid = pid if pid != w.pid else None
                    return True
        return False  # NOTIFY: set by _read_notify

    @staticmethod
    def _accepting(pid: int, inodes: set[int]) -> bool:
        """Does an epoll instance of `pid` watch one of our listening sockets?"""
        try:
            snap = snapshot(pid, probe_sockets=False)
        except FdguardError:
            return False
        inode_of = {f.fd: f.inode for f in snap.fds}
        for f in snap.fds:
            targets = f.info.epoll_targets if f.info is not None else None
            if targets and any(inode_of.get(t) in inodes for t in targets):
                return True
        return False

    def _became_ready(self, prog: _Program, w: Worker, now: float) -> None:
        spec = prog.spec
        w.state = WorkerState.READY
        w.ready_at = now
        w.deadline = trig.lifetime_deadline(w.started, spec.triggers, self.rng)
        try:
            w.soft_limit = read_limits(w.serving_pid).limits.soft
        except FdguardError:
            w.soft_limit = spec.nofile
        if self.detector_factory is not None and spec.triggers.eta_below is not None:
            w.detector = self.detector_factory(w.soft_limit)
        prog.starting = None
        prog.failures = 0
        old = prog.slots[w.slot]
        prog.slots[w.slot] = w
        took = round(now - w.started, 3)
        if old is not None and old.pid in self.workers:
            prog.restarts += 1
            self._drain(old, now)
            self._emit("restarted", spec.name, slot=w.slot, pid=w.pid, old_pid=old.pid,
                       reason=w.reason, data={"ready_after": took})
        else:
            self._emit("ready", spec.name, slot=w.slot, pid=w.pid, reason=w.reason,
                       data={"ready_after": took})

    def _drain(self, w: Worker, now: float) -> None:
        w.state = WorkerState.DRAINING
        w.term_at = now
        grace = self.programs[w.program].spec.grace
        if grace <= 0:
            w.killed = True
            self._signal_group(w, signal.SIGKILL)
        else:
            self._signal_group(w, signal.SIGTERM)
        self._emit("drain", w.program, slot=w.slot, pid=w.pid, data={"grace": grace})

    def _abandon(self, w: Worker) -> None:
        w.state = WorkerState.ABANDONED
        w.killed = True
        self._signal_group(w, signal.SIGKILL)

    def _start_failed(self, prog: _Program, slot: int, reason: str, why: str) -> None:
        spec = prog.spec
        now = self.clock()
        prog.failures += 1
        self._emit("start-failed", spec.name, slot=slot, reason=why,
                   data={"failures": prog.failures})
        if self._stopping:
            return
        if prog.failures >= spec.max_start_failures:
            prog.failures = 0
            if any(w is not None for w in prog.slots):
                # Old workers still serve: keep them, retry only after a long pause.
                prog.pending = deque(p for p in prog.pending if p[0] != slot)
                prog.cooldown_until = now + spec.backoff_max
                self._emit("giveup", spec.name, slot=slot,
                           reason=f"{spec.max_start_failures} start failures in a row; "
                           f"keeping the running workers, next try in {spec.backoff_max}s")
            else:
                prog.fatal = True
                prog.pending.clear()
                self._emit("fatal", spec.name, reason=f"{spec.max_start_failures} start "
                           "failures in a row and no worker running: giving up")
            return
        delay = trig.backoff_delay(prog.failures, spec.backoff, spec.backoff_max)
        prog.next_try = now + delay
        prog.pending.appendleft((slot, reason))
        self._emit("backoff", spec.name, slot=slot, data={"delay": delay})

    # -- children -----------------------------------------------------------

    def _signal_group(self, w: Worker, sig: int) -> None:
        # The worker leads its own process group (setpgid in the child): signal
        # the group so its own children get it too; fall back to the pid in the
        # instant between fork and setpgid.
        try:
            os.killpg(w.pid, sig)
        except ProcessLookupError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, sig)
        except PermissionError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(w.pid, sig)

    def _reap(self) -> None:
        if self.reap_all:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
                self._exited(pid, status)
        else:
            for pid in list(self.workers):
                try:
                    got, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    got, status = pid, 0
                if got:
                    self._exited(pid, status)

    def _exited(self, pid: int, status: int) -> None:
        w = self.workers.pop(pid, None)
        if w is None:
            return  # not ours (a grandchild reparented to us, or a stray): reaped quietly
        prog = self.programs[w.program]
        desc = describe_status(status)
        now = self.clock()
        if w.state is WorkerState.DRAINING and not w.killed and w.term_at is not None:
            # A wrapper (sh -c, npm start) may exit before the server it started has
            # drained: its process group keeps its grace period.
            self._lingering[pid] = (w.program, w.term_at + prog.spec.grace)
        else:
            self._forget_group(pid)
        if w.state in (WorkerState.DRAINING, WorkerState.ABANDONED):
            self._emit("exit", w.program, slot=w.slot, pid=pid, data={"status": desc})
            return
        if prog.starting is w:
            prog.starting = None
            self._start_failed(prog, w.slot, w.reason, f"exited before ready ({desc})")
            return
        if prog.slots[w.slot] is w:
            prog.slots[w.slot] = None
            self._emit("exit", w.program, slot=w.slot, pid=pid, reason="unexpected",
                       data={"status": desc})
            if self._stopping or prog.fatal:
                return
            if w.ready_at is not None and now - w.ready_at < MIN_UPTIME:
                prog.failures += 1
                if prog.failures >= prog.spec.max_start_failures and all(
                    s is None for s in prog.slots
                ):
                    prog.fatal = True
                    self._emit("fatal", w.program, reason="crash loop: workers exit right "
                               "after becoming ready")
                    return
                delay = trig.backoff_delay(prog.failures, prog.spec.backoff,
                                           prog.spec.backoff_max)
                prog.next_try = now + delay
                self._emit("backoff", w.program, slot=w.slot, data={"delay": delay})
            prog.pending.appendleft((w.slot, f"worker exited ({desc})"))

    def _forget_group(self, pid: int) -> None:
        # The leader is reaped; whatever it left in its process group (a wrapper's
        # server, a daemonised helper) goes too, as systemd's KillMode=control-group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if self._reaper is not None:
            self._reaper.remove(pid)

    def _reap_lingering(self, now: float) -> None:
        for pgid, (program, deadline) in list(self._lingering.items()):
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                del self._lingering[pgid]  # drained and gone
                if self._reaper is not None:
                    self._reaper.remove(pgid)
                continue
            if now >= deadline:
                del self._lingering[pgid]
                self._forget_group(pgid)
                self._emit("kill", program, pid=pgid, reason="process group still running "
                           "after the grace period (its leader had exited)")

    def _owner(self, pid: int) -> Worker | None:
        """The worker `pid` is, or descends from (a few generations up)."""
        for _ in range(8):
            w = self.workers.get(pid)
            if w is not None:
                return w
            try:
                with ProcessDir(pid) as proc:
                    pid = proc.stat.ppid
            except FdguardError:
                return None
            if pid <= 1:
                return None
        return None

    def _read_notify(self) -> None:
        if self._notify is None:
            return
        for msg in self._notify.receive():
            w = self._owner(msg.pid) if msg.pid else None
            if w is None:
                continue
            prog = self.programs[w.program]
            if msg.ready and w.state is WorkerState.STARTING and prog.starting is w:
                main = msg.main_pid or msg.pid
                w.main_pid = main if main != w.pid else None
                self._became_ready(prog, w, self.clock())

    def _serve_control(self) -> None:
        if self._control is None:
            return
        while True:
            got = self._control.accept()
            if got is None:
                return
            conn, req = got
            try:
                reply(conn, self._answer(req))
            finally:
                conn.close()

    def _answer(self, req: Mapping[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        try:
            if cmd == "status":
                return {"ok": True, "status": self.status()}
            if cmd == "restart":
                program = req.get("program")
                queued = self.restart(program, "on demand (control socket)")
                return {"ok": True, "queued": [{"program": p, "slot": s} for p, s in queued]}
            if cmd == "stop":
                self._begin_stop("stop requested on the control socket")
                return {"ok": True}
        except FdguardError as err:
            return {"ok": False, "error": str(err)}
        return {"ok": False, "error": f"unknown command {cmd!r}: status, restart, stop"}

    # -- stopping -----------------------------------------------------------

    def _begin_stop(self, reason: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._emit("stop", reason=reason)
        now = self.clock()
        for prog in self.programs.values():
            prog.pending.clear()
            prog.starting = None
        for w in list(self.workers.values()):
            if w.state is WorkerState.STARTING:
                self._abandon(w)
            elif w.state is WorkerState.READY:
                self._drain(w, now)

    def _kill_all_now(self) -> None:
        """SIGKILL every worker left and reap them (blocking): the guard never leaves one."""
        for pgid in list(self._lingering):
            del self._lingering[pgid]
            self._forget_group(pgid)
        for w in list(self.workers.values()):
            w.killed = True
            self._signal_group(w, signal.SIGKILL)
        for pid in list(self.workers):
            with contextlib.suppress(ChildProcessError):
                while True:
                    try:
                        os.waitpid(pid, 0)
                        break
                    except InterruptedError:
                        continue
            w = self.workers.pop(pid)
            self._forget_group(pid)
            self._emit("exit", w.program, slot=w.slot, pid=pid, data={"status": "killed"})
