"""Which processes to watch: resolve target specs to process identities and follow restarts.

A spec says how to find processes: `pid:N`, `name:REGEX` (the kernel's comm),
`cmdline:REGEX` (the whole command line), `pidfile:PATH`, `cgroup:PATH`, or a
command fdguard launches itself (`launch`). A *target* is one process identity
(PID + start time, `ProcessRef`): a restarted service is a new target, never a
continuation of the old series.

`TargetSet.refresh()` re-resolves every spec and reports changes: `start` (a new
target), `exit` (a target vanished) and `restart` (a spec lost its process and
found a new one: the old and new targets are linked so history can show the
split). Rescanning /proc for patterns costs one stat and one cmdline read per
process, so the watcher does it on a slow cadence; between rescans an exit is
noticed by the sampler itself (`TargetSet.lost`).
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from fdguard.errors import AccessDenied, NoSuchProcess, UsageError
from fdguard.model import ProcessRef
from fdguard.procfs.pids import (
    DEFAULT_CGROUP_ROOT,
    ProcessIdentity,
    list_pids,
    parse_pid_list,
    read_cgroup_pids,
    read_identity,
    read_ref,
)
from fdguard.procfs.process import DEFAULT_ROOT


class SpecKind(enum.StrEnum):
    """How a spec finds its processes."""

    PID = "pid"
    NAME = "name"
    CMDLINE = "cmdline"
    PIDFILE = "pidfile"
    CGROUP = "cgroup"
    LAUNCH = "launch"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One way of finding processes to watch, e.g. `name:^node$` or `pidfile:/run/app.pid`."""

    kind: SpecKind
    value: str

    @property
    def label(self) -> str:
        return f"{self.kind.value}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> TargetSpec:
        """Parse `KIND:VALUE`; a bare number is a PID.

        Raises:
            UsageError: unknown kind, bad PID, or an invalid regex.
        """
        if text.isdigit():
            return cls(SpecKind.PID, text)
        kind, sep, value = text.partition(":")
        if not sep or not value:
            raise UsageError(
                f"bad target {text!r}: use PID, pid:N, name:REGEX, cmdline:REGEX, "
                "pidfile:PATH or cgroup:PATH"
            )
        try:
            k = SpecKind(kind)
        except ValueError as err:
            raise UsageError(f"unknown target kind {kind!r} in {text!r}") from err
        if k in (SpecKind.PID, SpecKind.LAUNCH) and not (value.isdigit() and int(value) > 0):
            raise UsageError(f"bad PID in {text!r}")
        if k in (SpecKind.NAME, SpecKind.CMDLINE):
            try:
                re.compile(value)
            except re.error as err:
                raise UsageError(f"bad pattern in {text!r}: {err}") from err
        return cls(k, value)


@dataclass(frozen=True, slots=True)
class Target:
    """One followed process: its identity, name and command, and the spec that found it."""

    ref: ProcessRef
    comm: str
    command: tuple[str, ...]
    spec: TargetSpec

    @property
    def pid(self) -> int:
        return self.ref.pid


@dataclass(frozen=True, slots=True)
class TargetChange:
    """A change in the followed set: `start`, `exit` or `restart` (with the previous target)."""

    type: str
    target: Target
    previous: Target | None = None


@dataclass
class _SpecState:
    current: dict[ProcessRef, Target] = field(default_factory=dict)
    # Targets of this spec that exited and were not yet replaced: the next new
    # target of the spec is their restart.
    departed: list[Target] = field(default_factory=list)


class TargetSet:
    """The processes currently followed for a list of specs (see module comment).

    Args:
        specs: what to follow.
        root, cgroup_root: procfs and cgroupfs mounts (tests may point elsewhere).
        exclude: PIDs never followed (the watcher itself by default).
    """

    def __init__(
        self,
        specs: Sequence[TargetSpec],
        *,
        root: str = DEFAULT_ROOT,
        cgroup_root: str = DEFAULT_CGROUP_ROOT,
        exclude: frozenset[int] | None = None,
    ) -> None:
        if not specs:
            raise UsageError("nothing to watch: give at least one target")
        self.specs = list(specs)
        self.root = root
        self.cgroup_root = cgroup_root
        self.exclude = frozenset({os.getpid()}) if exclude is None else exclude
        self._state = {spec: _SpecState() for spec in self.specs}
        self._patterns = {
            spec: re.compile(spec.value)
            for spec in self.specs
            if spec.kind in (SpecKind.NAME, SpecKind.CMDLINE)
        }
        # A pid: spec follows one identity only: once it exits, a process
        # reusing the PID is someone else.
        self._pinned: dict[TargetSpec, ProcessRef] = {}

    @property
    def current(self) -> list[Target]:
        out: dict[ProcessRef, Target] = {}
        for st in self._state.values():
            for ref, tgt in st.current.items():
                out.setdefault(ref, tgt)
        return sorted(out.values(), key=lambda t: t.ref.pid)

    @property
    def finished(self) -> bool:
        """True when nothing is followed and no spec can ever find a process again."""
        if any(st.current for st in self._state.values()):
            return False
        return all(s.kind in (SpecKind.PID, SpecKind.LAUNCH) for s in self.specs)

    # -- resolution ----------------------------------------------------------------

    def _scan(self) -> list[ProcessIdentity]:
        return self._identities(list_pids(root=self.root))

    def _identities(self, pids: Sequence[int]) -> list[ProcessIdentity]:
        out = []
        for pid in pids:
            if pid in self.exclude:
                continue
            try:
                ident = read_identity(pid, root=self.root)
            except (NoSuchProcess, AccessDenied):
                continue
            if ident.state not in ("Z", "X"):
                out.append(ident)
        return out

    def resolve(
        self, spec: TargetSpec, scan: list[ProcessIdentity] | None = None
    ) -> list[ProcessIdentity]:
        """The processes `spec` designates right now (no state is changed)."""
        if spec.kind in (SpecKind.PID, SpecKind.LAUNCH):
            found = self._identities([int(spec.value)])
            pinned = self._pinned.get(spec)
            if pinned is not None:
                found = [i for i in found if i.ref == pinned]
            return found
        if spec.kind is SpecKind.PIDFILE:
            try:
                with open(spec.value, "rb") as f:
                    pids = parse_pid_list(f.read())[:1]
            except FileNotFoundError:
                pids = []
            return self._identities(pids)
        if spec.kind is SpecKind.CGROUP:
            return self._identities(read_cgroup_pids(spec.value, root=self.cgroup_root))
        pattern = self._patterns[spec]
        if scan is None:
            scan = self._scan()
        if spec.kind is SpecKind.NAME:
            return [i for i in scan if pattern.search(i.comm)]
        # Kernel threads have no cmdline (read_identity shows "[comm]"): never match them.
        return [
            i
            for i in scan
            if not i.cmdline[0].startswith("[") and pattern.search(" ".join(i.cmdline))
        ]

    def refresh(self) -> list[TargetChange]:
        """Re-resolve every spec; return what started, exited or restarted since last time."""
        scan = (
            self._scan()
            if any(s.kind in (SpecKind.NAME, SpecKind.CMDLINE) for s in self.specs)
            else None
        )
        changes: list[TargetChange] = []
        for spec in self.specs:
            st = self._state[spec]
            if spec.kind in (SpecKind.PID, SpecKind.LAUNCH) and st.current:
                # Followed already: its one identity cannot change, so only check
                # that it is still there (one stat read, no cmdline).
                [ref] = st.current
                try:
                    alive = read_ref(ref.pid, root=self.root) == ref
                except (NoSuchProcess, AccessDenied):
                    alive = False
                if not alive:
                    changes.append(self._depart(spec, ref))
                continue
            found = {i.ref: i for i in self.resolve(spec, scan)}
            for ref in list(st.current):
                if ref not in found:
                    changes.append(self._depart(spec, ref))
            for ref, ident in found.items():
                if ref in st.current:
                    continue
                tgt = Target(ref, ident.comm, ident.cmdline, spec)
                st.current[ref] = tgt
                if spec.kind in (SpecKind.PID, SpecKind.LAUNCH):
                    self._pinned[spec] = ref
                if st.departed:
                    changes.append(TargetChange("restart", tgt, st.departed.pop(0)))
                else:
                    changes.append(TargetChange("start", tgt))
        return changes

    def _depart(self, spec: TargetSpec, ref: ProcessRef) -> TargetChange:
        st = self._state[spec]
        tgt = st.current.pop(ref)
        st.departed.append(tgt)
        # Remember only the latest few departures: a crash loop links each new
        # process to the one just before it.
        del st.departed[:-8]
        return TargetChange("exit", tgt)

    def lost(self, ref: ProcessRef) -> list[TargetChange]:
        """The sampler found `ref` gone: drop it from every spec now (exit changes)."""
        return [self._depart(spec, ref) for spec, st in self._state.items() if ref in st.current]


class LaunchedProcess:
    """A command fdguard started itself (`fdguard watch -- CMD`), to watch and to stop.

    The child runs in its own session so a stop reaches its whole process group.
    Stopping is graceful: SIGTERM, wait `grace` seconds, then SIGKILL; always reaped.
    """

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        if not argv:
            raise UsageError("nothing to launch: give a command after --")
        try:
            self.popen = subprocess.Popen(list(argv), start_new_session=True, env=env)
        except OSError as err:
            raise UsageError(f"cannot launch {argv[0]!r}: {err.strerror}") from err
        self.spec = TargetSpec(SpecKind.LAUNCH, str(self.popen.pid))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def stop(self, grace: float = 5.0) -> int:
        """Stop the command (if still running) and reap it; return its exit status."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                return self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.wait()
