"""Stress a service under faults, round by round, and give a leak verdict per fault configuration.

The method is CPython's refleak hunting (`regrtest -R`), applied to fds of a
real process: run the workload in rounds, first a few warm-up rounds whose
growth is forgiven (caches, pools, lazily opened files), then measured rounds;
after each round let the service settle and count its fds. A configuration
leaks when every measured round grew the fd count (CPython: `all(delta >= 1)`),
and the total growth reaches `min_growth`. A one-time cache grows once and
then stays flat; traffic noise goes up and down; neither passes that test.

Noise control, on top of CPython's rule:
- settle: after a round, the count is sampled until it has not moved for
  `settle_ms` (bounded by `settle_timeout_s`), so sockets still closing are
  not counted as leaked;
- `max_zero_rounds` lets a slow leak (less than one fd per round on average)
  skip a round or two, for long runs;
- each fault configuration runs on a fresh service process, with the same
  path (through the fault proxy when any configuration uses it) as the
  baseline, so the only difference between two verdicts is the fault.

Fault configurations: a baseline without faults, then each configured one:
syscall faults (strace --inject or libfiu; the service is started under the
wrapper), network faults (the fault proxy in front of the service), or an fd
limit squeeze (judged on recovery, not on rounds).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fdguard.clock import Clock, SystemClock
from fdguard.errors import FdguardError, NoSuchProcess, UsageError
from fdguard.faults.proxy import FaultProxy, ProxyFaults, ProxyStats
from fdguard.faults.squeeze import SqueezeResult, squeeze
from fdguard.faults.syscall import (
    FiuFault,
    SyscallFault,
    fiu_argv,
    strace_argv,
    strace_attach_argv,
)
from fdguard.inspect import count, snapshot
from fdguard.model import Fd, Snapshot
from fdguard.procfs.cputime import read_run_state
from fdguard.procfs.proctree import read_children
from fdguard.procfs.tasks import read_task_tracers

WorkloadMode = Literal["request", "connect", "early-close", "reset"]
WORKLOAD_MODES: tuple[str, ...] = ("request", "connect", "early-close", "reset")


class ServiceFailed(FdguardError):
    """The service under test did not start, printed no port, or died during a run."""


# -- what to run ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Service:
    """The service under test: a command that listens on loopback.

    `port` None means: the first integer on the first line it prints (its
    readiness line). Without a readiness line, give `port` and `ready_line=False`.
    """

    argv: tuple[str, ...]
    port: int | None = None
    host: str = "127.0.0.1"
    ready_line: bool = True
    ready_timeout_s: float = 20.0
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """What one round does to the service.

    The built-in loopback driver opens `connections` connections one after the
    other; per connection, by `mode`:
    - request: send `request`, read the reply line (or EOF), close;
    - connect: connect and close at once;
    - early-close: send half of `request` and close before the reply;
    - reset: send `request`, read the reply, close with an RST.
    `command` replaces the driver with an external one run once per round
    ("{host}" and "{port}" are replaced), bounded by `timeout_s` per round.
    """

    mode: WorkloadMode = "request"
    connections: int = 10
    request: bytes = b"GET\n"
    timeout_s: float = 2.0
    command: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in WORKLOAD_MODES:
            raise UsageError(f"workload mode {self.mode!r}: one of {', '.join(WORKLOAD_MODES)}")
        if not 1 <= self.connections <= 100_000:
            raise UsageError("workload connections must be in 1..100000")


@dataclass(frozen=True, slots=True)
class SqueezeSpec:
    """An fd-limit squeeze (see `fdguard.faults.squeeze`)."""

    headroom: int = 2
    flood: int = 32
    hold_s: float = 0.5
    spin_threshold: float = 0.3
    recover_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """One fault configuration: the faults applied together for one verdict.

    Syscall faults reach the service once it is ready (strace attaches to it),
    so its start-up is not faulted; `from_start` launches it under strace
    instead, to fault the start-up too. libfiu faults always apply from the
    start (LD_PRELOAD), so they should name calls the start-up does not need.
    """

    name: str
    syscall: tuple[SyscallFault, ...] = ()
    fiu: tuple[FiuFault, ...] = ()
    proxy: ProxyFaults | None = None
    squeeze: SqueezeSpec | None = None
    from_start: bool = False

    def __post_init__(self) -> None:
        if self.syscall and self.fiu:
            raise UsageError(f"fault {self.name!r}: strace and libfiu faults cannot be combined")

    @property
    def label(self) -> str:
        parts = [f.label for f in self.syscall] + [f.label for f in self.fiu]
        if self.proxy is not None and not self.proxy.is_clean:
            parts.append(self.proxy.label)
        if self.squeeze is not None:
            parts.append(f"squeeze:headroom={self.squeeze.headroom}")
        return " ".join(parts) or "no faults"


BASELINE = FaultConfig("baseline")
MAX_ROUNDS = 10_000


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """Rounds and the thresholds of the verdict (see module comment).

    `duration_s` turns a round count into a soak: measured rounds go on until
    that much time has passed after the warm-up, `rounds` being the minimum.
    """

    warmup: int = 2
    rounds: int = 4
    settle_ms: float = 150.0
    settle_timeout_s: float = 3.0
    max_zero_rounds: int = 0
    min_growth: int = 2
    baseline: bool = True
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.warmup <= 1000 or not 1 <= self.rounds <= MAX_ROUNDS:
            raise UsageError("rounds must be in 1..10000 and warm-up rounds in 0..1000")
        if self.duration_s is not None and not 0 < self.duration_s <= 7 * 86400:
            raise UsageError("duration must be in (0, 7 days]")
        if self.max_zero_rounds >= self.rounds:
            raise UsageError("max_zero_rounds must be below the number of rounds")

    def more_rounds(self, measured: int, elapsed_s: float) -> bool:
        """Whether to run another measured round: `rounds` at least, then until
        `duration_s` has passed since the warm-up (never more than MAX_ROUNDS)."""
        if measured < self.rounds:
            return True
        if self.duration_s is None or measured >= MAX_ROUNDS:
            return False
        return elapsed_s < self.duration_s


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole stress run: service, workload, fault configurations, policy."""

    name: str
    service: Service
    workload: Workload = Workload()
    faults: tuple[FaultConfig, ...] = ()
    policy: RunPolicy = RunPolicy()

    @property
    def configs(self) -> tuple[FaultConfig, ...]:
        head = (BASELINE,) if self.policy.baseline else ()
        return head + self.faults

    @property
    def uses_proxy(self) -> bool:
        return any(c.proxy is not None for c in self.faults)


# -- results ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundSample:
    """The service's fds after one round (settled)."""

    index: int
    warmup: bool
    count: int
    driver_ok: int
    driver_failed: int


@dataclass(frozen=True, slots=True)
class Judgement:
    """The verdict over the measured rounds' deltas."""

    leak: bool
    reason: str


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """The verdict for one fault configuration."""

    config: FaultConfig
    leak: bool
    reason: str
    deltas: tuple[int, ...]
    rounds: tuple[RoundSample, ...]
    growth_by_kind: dict[str, float]
    growth_by_state: dict[str, float]
    leaked: tuple[Fd, ...]
    squeeze: SqueezeResult | None = None
    proxy: ProxyStats | None = None
    service_pid: int | None = None
    error: str | None = None
    birth_certificates: tuple[dict[str, Any], ...] = ()

    @property
    def failed(self) -> bool:
        """Leaked, did not recover from a squeeze, or could not run."""
        if self.error is not None or self.leak:
            return True
        return self.squeeze is not None and not self.squeeze.recovered

    @property
    def growth_per_round(self) -> float:
        return sum(self.deltas) / len(self.deltas) if self.deltas else 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.config.name,
            "faults": self.config.label,
            "leak": self.leak,
            "failed": self.failed,
            "reason": self.reason,
            "deltas": list(self.deltas),
            "growth_per_round": round(self.growth_per_round, 3),
            "growth_by_kind": self.growth_by_kind,
            "growth_by_state": self.growth_by_state,
            "counts": [r.count for r in self.rounds],
            "warmup_rounds": sum(1 for r in self.rounds if r.warmup),
            "driver": {
                "ok": sum(r.driver_ok for r in self.rounds),
                "failed": sum(r.driver_failed for r in self.rounds),
            },
            "leaked_fds": [f.to_json() for f in self.leaked],
            "error": self.error,
        }
        if self.squeeze is not None:
            out["squeeze"] = self.squeeze.to_json()
        if self.proxy is not None:
            out["proxy"] = {
                "accepted": self.proxy.accepted,
                "resets": self.proxy.resets,
                "held_half_open": self.proxy.held_half_open,
                "upstream_failed": self.proxy.upstream_failed,
            }
        if self.birth_certificates:
            out["birth_certificates"] = list(self.birth_certificates)
        return out


@dataclass(frozen=True, slots=True)
class StressResult:
    """Every configuration's verdict; `leak` is True when any configuration failed."""

    scenario: str
    results: tuple[ConfigResult, ...]

    @property
    def leak(self) -> bool:
        return any(r.failed for r in self.results)

    @property
    def leaking(self) -> list[str]:
        return [r.config.name for r in self.results if r.failed]

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "leak": self.leak,
            "leaking": self.leaking,
            "configs": [r.to_json() for r in self.results],
        }


@dataclass(frozen=True, slots=True)
class StressEvent:
    """Progress, for a progress bar: one per round and one per finished configuration."""

    kind: Literal["start", "round", "done"]
    config: str
    round: int = 0
    total_rounds: int = 0
    count: int | None = None
    result: ConfigResult | None = field(default=None, compare=False)


# -- the verdict (pure) -------------------------------------------------------


def judge(deltas: Sequence[int], *, max_zero_rounds: int = 0, min_growth: int = 2) -> Judgement:
    """Leak or not, from the fd-count deltas of the measured rounds.

    CPython's rule for fds is "any delta"; for references "all deltas >= 1".
    fds of a networked service move with traffic, so fdguard uses the stricter
    one: every round grew (up to `max_zero_rounds` exceptions) and the total
    growth is at least `min_growth`.
    """
    if not deltas:
        return Judgement(False, "no measured rounds")
    total = sum(deltas)
    flat = sum(1 for d in deltas if d < 1)
    if flat <= max_zero_rounds and total >= min_growth:
        return Judgement(
            True, f"fds grew in {len(deltas) - flat} of {len(deltas)} rounds, +{total} in total"
        )
    if total <= 0:
        return Judgement(False, f"no growth over {len(deltas)} rounds (net {total:+d})")
    return Judgement(
        False,
        f"net {total:+d} over {len(deltas)} rounds but {flat} rounds did not grow: "
        "noise or a one-time allocation, not a leak",
    )


def _key_counts(snap: Snapshot) -> tuple[Counter[str], Counter[str]]:
    kinds: Counter[str] = Counter(f.kind.value for f in snap.fds)
    states: Counter[str] = Counter(
        f"{f.kind.value}:{f.state.value}" for f in snap.fds if f.kind.is_tcp and f.state
    )
    return kinds, states


def growth(
    first: Snapshot, last: Snapshot, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Average growth per round, by kind and by TCP state ("tcp:CLOSE-WAIT"), nonzero only."""
    k0, s0 = _key_counts(first)
    k1, s1 = _key_counts(last)

    def per_round(a: Counter[str], b: Counter[str]) -> dict[str, float]:
        keys = sorted(set(a) | set(b))
        out = {k: round((b[k] - a[k]) / max(rounds, 1), 3) for k in keys}
        return {k: v for k, v in out.items() if v}

    return per_round(k0, k1), per_round(s0, s1)


def new_fds(first: Snapshot, last: Snapshot, limit: int = 50) -> tuple[Fd, ...]:
    """fds open in `last` that were not open (same number, same object) in `first`."""
    before = {(f.fd, f.inode, f.target) for f in first.fds}
    return tuple(f for f in last.fds if (f.fd, f.inode, f.target) not in before)[:limit]


# -- the built-in driver ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DriverResult:
    ok: int
    failed: int


def _one_connection(address: tuple[str, int], workload: Workload) -> bool:
    mode = workload.mode
    with socket.create_connection(address, timeout=workload.timeout_s) as sock:
        if mode == "connect":
            return True
        if mode == "early-close":
            sock.sendall(workload.request[: max(1, len(workload.request) // 2)])
            return True
        sock.sendall(workload.request)
        reply = b""
        while b"\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        if mode == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return bool(reply)


def drive(address: tuple[str, int], workload: Workload, clock: Clock) -> DriverResult:
    """Run one round of the workload against `address`; bounded in count and time."""
    if workload.command is not None:
        return _drive_command(address, workload)
    ok = failed = 0
    deadline = clock.monotonic() + workload.timeout_s * workload.connections
    for _ in range(workload.connections):
        if clock.monotonic() > deadline:
            failed += 1
            continue
        try:
            if _one_connection(address, workload):
                ok += 1
            else:
                failed += 1
        except OSError:
            failed += 1
    return DriverResult(ok, failed)


def _drive_command(address: tuple[str, int], workload: Workload) -> DriverResult:
    assert workload.command is not None
    argv = [a.replace("{host}", address[0]).replace("{port}", str(address[1]))
            for a in workload.command]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=workload.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return DriverResult(0, 1)
    except OSError as err:
        raise UsageError(f"workload command cannot run: {err}") from err
    return DriverResult(1, 0) if done.returncode == 0 else DriverResult(0, 1)


# -- the service process ------------------------------------------------------


_PORT = re.compile(r"\d+")


class _Running:
    """A started service: the process we started, the pid to watch, its address."""

    def __init__(self, service: Service, config: FaultConfig, clock: Clock) -> None:
        argv: list[str] = list(service.argv)
        self._strace_log: str | None = None
        self._tracer: subprocess.Popen[bytes] | None = None
        if config.syscall:
            fd, self._strace_log = tempfile.mkstemp(prefix="fdguard-stress-", suffix=".strace")
            os.close(fd)
        if config.syscall and config.from_start:
            argv = strace_argv(argv, config.syscall, log_path=self._strace_log)
        elif config.fiu:
            argv = fiu_argv(argv, config.fiu)
        env = dict(os.environ)
        env.update(dict(service.env))
        # Closed in stop(): it lives as long as the service.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=True,
                env=env,
                cwd=service.cwd,
            )
        except OSError as err:
            self._stderr.close()
            raise ServiceFailed(f"cannot start {argv[0]}: {err.strerror}") from err
        self._drain: threading.Thread | None = None
        try:
            line = self._ready_line(service, clock) if service.ready_line else ""
            port = service.port
            if port is None:
                m = _PORT.search(line)
                if m is None:
                    raise ServiceFailed(f"no port in the service's first line: {line!r}")
                port = int(m.group())
            self.address = (service.host, port)
            self.pid = self._target_pid(bool(config.syscall and config.from_start), clock)
            if config.syscall and not config.from_start:
                self._attach(config.syscall, clock)
        except BaseException:
            self.stop()
            raise

    def _attach(self, faults: Sequence[SyscallFault], clock: Clock) -> None:
        """Attach strace with `faults` to every thread of the ready service."""
        self._tracer = subprocess.Popen(
            strace_attach_argv(self.pid, faults, log_path=self._strace_log),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = clock.monotonic() + 10.0
        while clock.monotonic() < deadline:
            if self._tracer.poll() is not None:
                raise ServiceFailed(f"strace could not attach to {self.pid} "
                                    f"(exit {self._tracer.returncode})")
            tracers = read_task_tracers(self.pid)
            if tracers and all(t == self._tracer.pid for t in tracers.values()):
                return
            clock.sleep(0.01)
        raise ServiceFailed(f"strace did not attach to every thread of {self.pid} in 10 s")

    def _ready_line(self, service: Service, clock: Clock) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = clock.monotonic() + service.ready_timeout_s
        buf = b""
        while b"\n" not in buf:
            left = deadline - clock.monotonic()
            if left <= 0:
                raise ServiceFailed(f"no readiness line within {service.ready_timeout_s}s")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise ServiceFailed(f"service exited before it was ready: {self.stderr_tail()}")
                buf += chunk
        # Keep reading its stdout so that a chatty service never blocks on a full pipe.
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()
        return buf.split(b"\n", 1)[0].decode(errors="replace")

    def _drain_stdout(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            while os.read(self.proc.stdout.fileno(), 65536):
                pass

    def _target_pid(self, wrapped: bool, clock: Clock) -> int:
        if not wrapped:
            return self.proc.pid
        # strace forks the service: watch strace's child, not strace.
        deadline = clock.monotonic() + 5.0
        while clock.monotonic() < deadline:
            kids = read_children(self.proc.pid)
            if kids:
                return kids[0]
            clock.sleep(0.01)
        raise ServiceFailed("strace started no child")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, limit: int = 800) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace")[-limit:].strip()
        return ""

    def stop(self) -> None:
        """Detach strace, SIGTERM the process group, SIGKILL after 3 s, reap, close pipes."""
        if self._tracer is not None:
            # SIGTERM makes strace detach (the service goes on untraced).
            if self._tracer.poll() is None:
                self._tracer.terminate()
            try:
                self._tracer.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._tracer.kill()
                self._tracer.wait(timeout=5)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        else:
            # The leader exited; its group (strace's tracee) may still be there.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._drain is not None:
            self._drain.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        if self._strace_log is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._strace_log)


# -- running -------------------------------------------------------------------


def settle(pid: int, clock: Clock, settle_ms: float, timeout_s: float) -> int:
    """The fd count of `pid` once it stopped moving for `settle_ms` (bounded by `timeout_s`).

    A count that holds still while the main thread is runnable ("R": work
    queued, no CPU yet on a loaded machine) is not settled: the closes may
    still come. An idle event loop sleeps in epoll_wait ("S").
    """
    deadline = clock.monotonic() + timeout_s
    last = count(pid)
    stable_since = clock.monotonic()
    while clock.monotonic() < deadline:
        clock.sleep(0.01)
        n = count(pid)
        if n != last:
            last, stable_since = n, clock.monotonic()
        elif (clock.monotonic() - stable_since) * 1000 >= settle_ms:
            if _runnable(pid):
                stable_since = clock.monotonic()
                continue
            break
    return last


def _runnable(pid: int) -> bool:
    try:
        return read_run_state(pid) == "R"
    except NoSuchProcess:
        return False


BirthCertifier = Callable[[ConfigResult, Scenario], tuple[dict[str, Any], ...]]


def run(
    scenario: Scenario,
    *,
    on_event: Callable[[StressEvent], None] | None = None,
    clock: Clock | None = None,
    only: Sequence[str] | None = None,
    birth_certificates: bool = False,
) -> StressResult:
    """Run every fault configuration of `scenario` and judge each.

    Args:
        scenario: what to run.
        on_event: progress callback (called from this thread).
        clock: waits and timeouts (the system clock by default).
        only: run only the configurations with these names.
        birth_certificates: for each leaking configuration, run it once more
            under `fdguard trace` (strace -k) and attach the creation stacks of
            the fds still open at the end, grouped by stack.

    Raises:
        ServiceFailed: the service could not be started.
        ToolMissing: strace or fiu-run is needed and missing.
    """
    clock = clock or SystemClock()
    emit = on_event or (lambda _e: None)
    configs = [c for c in scenario.configs if only is None or c.name in only]
    unknown = sorted(set(only or ()) - {c.name for c in scenario.configs})
    if unknown:
        raise UsageError(f"no fault configuration named {', '.join(unknown)}")
    results: list[ConfigResult] = []
    with _maybe_proxy(scenario) as proxy:
        for config in configs:
            result = run_config(scenario, config, proxy, clock, emit)
            if birth_certificates and result.leak:
                certs = certify(scenario, config, proxy, clock, result)
                result = dataclasses.replace(result, birth_certificates=certs)
            emit(StressEvent("done", config.name, result=result))
            results.append(result)
    return StressResult(scenario.name, tuple(results))


@contextlib.contextmanager
def _maybe_proxy(scenario: Scenario) -> Iterator[FaultProxy | None]:
    if not scenario.uses_proxy:
        yield None
        return
    # The upstream is set per configuration, once that service's port is known.
    proxy = FaultProxy((scenario.service.host, 9), seed=0).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def run_config(
    scenario: Scenario,
    config: FaultConfig,
    proxy: FaultProxy | None,
    clock: Clock,
    emit: Callable[[StressEvent], None],
) -> ConfigResult:
    """One configuration on a fresh service process: warm-up, rounds, verdict."""
    policy = scenario.policy
    total = policy.warmup + policy.rounds
    emit(StressEvent("start", config.name, 0, total))
    service = _Running(scenario.service, config, clock)
    try:
        address = service.address
        if proxy is not None:
            proxy.set_faults(ProxyFaults())
            proxy.set_upstream(address)
            address = proxy.address
        if config.squeeze is not None:
            return _run_squeeze(scenario, config, service, address, clock, emit)
        if proxy is not None:
            proxy.set_faults(config.proxy or ProxyFaults())
        start = proxy.stats() if proxy is not None else None
        samples: list[RoundSample] = []
        first: Snapshot | None = None
        try:
            i = 0
            measured_since = clock.monotonic()
            while i < policy.warmup or policy.more_rounds(
                i - policy.warmup, clock.monotonic() - measured_since
            ):
                if i == policy.warmup:
                    measured_since = clock.monotonic()
                d = drive(address, scenario.workload, clock)
                if not service.alive():
                    raise ServiceFailed(f"service exited during round {i + 1}: "
                                        f"{service.stderr_tail()}")
                n = settle(service.pid, clock, policy.settle_ms, policy.settle_timeout_s)
                warm = i < policy.warmup
                samples.append(RoundSample(i, warm, n, d.ok, d.failed))
                if i == policy.warmup - 1 or (policy.warmup == 0 and i == 0):
                    first = snapshot(service.pid)
                emit(StressEvent("round", config.name, i + 1, max(total, i + 1), n))
                i += 1
            last = snapshot(service.pid)
        except (ServiceFailed, NoSuchProcess) as err:
            return ConfigResult(config, False, "could not run", (), tuple(samples), {}, {}, (),
                                service_pid=service.pid, error=str(err))
        assert first is not None
        measured = [s.count for s in samples if not s.warmup]
        base = [s.count for s in samples if s.warmup][-1:] or [first.count]
        if policy.warmup == 0:
            # Without warm-up the first round is the reference, as in regrtest -R 0:N.
            measured = measured[1:]
            base = [samples[0].count]
        counts = base + measured
        deltas = tuple(b - a for a, b in itertools.pairwise(counts))
        j = judge(deltas, max_zero_rounds=policy.max_zero_rounds, min_growth=policy.min_growth)
        by_kind, by_state = growth(first, last, len(deltas))
        stats = proxy.stats() if proxy is not None else None
        if stats is not None and start is not None:
            stats = ProxyStats(
                accepted=stats.accepted - start.accepted,
                active=stats.active,
                upstream_failed=stats.upstream_failed - start.upstream_failed,
                resets=stats.resets - start.resets,
                held_half_open=stats.held_half_open - start.held_half_open,
                bytes_up=stats.bytes_up - start.bytes_up,
                bytes_down=stats.bytes_down - start.bytes_down,
            )
        return ConfigResult(
            config=config,
            leak=j.leak,
            reason=j.reason,
            deltas=deltas,
            rounds=tuple(samples),
            growth_by_kind=by_kind,
            growth_by_state=by_state,
            leaked=new_fds(first, last) if j.leak else (),
            proxy=stats,
            service_pid=service.pid,
        )
    finally:
        if proxy is not None:
            proxy.set_faults(ProxyFaults())
        service.stop()


def _run_squeeze(
    scenario: Scenario,
    config: FaultConfig,
    service: _Running,
    address: tuple[str, int],
    clock: Clock,
    emit: Callable[[StressEvent], None],
) -> ConfigResult:
    """Warm up, then squeeze the fd limit and judge recovery instead of rounds."""
    assert config.squeeze is not None
    spec = config.squeeze
    policy = scenario.policy
    samples: list[RoundSample] = []
    for i in range(policy.warmup):
        d = drive(address, scenario.workload, clock)
        n = settle(service.pid, clock, policy.settle_ms, policy.settle_timeout_s)
        samples.append(RoundSample(i, True, n, d.ok, d.failed))
        emit(StressEvent("round", config.name, i + 1, policy.warmup + policy.rounds, n))
    probe_load = Workload(mode="request", connections=1, request=scenario.workload.request,
                          timeout_s=1.0)

    def probe() -> bool:
        return drive(address, probe_load, clock).ok == 1

    result = squeeze(
        service.pid,
        service.address,
        probe,
        headroom=spec.headroom,
        flood=spec.flood,
        hold_s=spec.hold_s,
        spin_threshold=spec.spin_threshold,
        recover_timeout_s=spec.recover_timeout_s,
        clock=clock,
    )
    emit(StressEvent("round", config.name, policy.warmup + policy.rounds,
                     policy.warmup + policy.rounds, result.fds_after))
    reason = "recovered" if result.recovered else "; ".join(result.problems)
    return ConfigResult(config, False, reason, (), tuple(samples), {}, {}, (),
                        squeeze=result, service_pid=service.pid)


def certify(
    scenario: Scenario,
    config: FaultConfig,
    proxy: FaultProxy | None,
    clock: Clock,
    result: ConfigResult,
    *,
    limit: int = 3,
) -> tuple[dict[str, Any], ...]:
    """Birth certificates for a leaking configuration: run it again under `fdguard trace`.

    The service is launched under strace -k (through fiu-run for libfiu faults),
    driven through the same rounds and faults, then the trace report's groups
    of fds still open at the end -- one creation stack each -- are returned,
    largest first, restricted to the kinds that grew. A configuration with
    strace-injected faults cannot be traced a second time (one tracer per
    process): it gets a note instead.
    """
    if config.syscall:
        return ({"note": "no birth certificates for strace-injected faults: a process "
                         "has one tracer, and strace --inject is it"},)
    from fdguard.trace.session import finish_command, start_command  # noqa: PLC0415
    from fdguard.trace.syscalls import Follow  # noqa: PLC0415

    argv: list[str] = list(scenario.service.argv)
    if config.fiu:
        argv = fiu_argv(argv, config.fiu)
    env = dict(os.environ)
    env.update(dict(scenario.service.env))
    # Births only, not closes: cheaper under -k, and the end snapshot decides what
    # is still open (closes the service makes while it is being stopped, after
    # the rounds, must not hide the leak).
    launched = start_command(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                             follow=Follow(closes=False))
    proc = launched.run.proc
    try:
        assert proc is not None
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = clock.monotonic() + scenario.service.ready_timeout_s
        buf = b""
        while b"\n" not in buf and clock.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
        port = scenario.service.port
        if port is None:
            m = _PORT.search(buf.decode(errors="replace"))
            if m is None:
                return ({"note": "the traced service printed no port"},)
            port = int(m.group())
        address = (scenario.service.host, port)
        if proxy is not None:
            proxy.set_upstream(address)
            proxy.set_faults(config.proxy or ProxyFaults())
            address = proxy.address
        policy = scenario.policy
        total = policy.warmup + policy.rounds
        base = count(launched.pid)
        for _ in range(total):
            drive(address, scenario.workload, clock)
        # Under strace -k the service runs many times slower: a quiet moment
        # does not mean it is done. Wait (bounded) until at least half of the
        # growth seen without the tracer has shown up, then let it settle.
        expect = max(1, int(result.growth_per_round * total / 2))
        deadline = clock.monotonic() + 30.0
        while count(launched.pid) - base < expect and clock.monotonic() < deadline:
            clock.sleep(0.05)
        settle(launched.pid, clock, policy.settle_ms, policy.settle_timeout_s)
    finally:
        if proxy is not None:
            proxy.set_faults(ProxyFaults())
        report = finish_command(launched, ownership=None)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
    grown = set(result.growth_by_kind)
    groups = [g.to_json() for g in report.groups]
    groups = [g for g in groups if not grown or set(g.get("kinds", {})) & grown]
    groups.sort(key=lambda g: -int(g.get("count", 0)))
    if not groups:
        return ({"note": "the traced run left no fd of the growing kinds open"},)
    return tuple(groups[:limit])
