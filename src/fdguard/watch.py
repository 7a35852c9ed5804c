"""The sampling loop: count every target's fds each interval, snapshot when it matters.

Cadences (all on an injectable `Clock`, so tests run hours in milliseconds):
- every `interval` (1 s): the O(1) count of each target (`fdguard.count`, one
  stat of /proc/PID/fd on Linux >= 6.2) followed by an identity check (one read
  of /proc/PID/stat). Count *then* verify: if the start time still matches
  after the count, the count came from our process, since a PID can only be
  reused once its process is gone. The count feeds the target's leak detector,
  the alert rules and the store.
- every `snapshot_every` (60 s), at a target's start, and whenever its detector
  grows suspicious (a leak, or its floor already above its reference level; at
  most once per `suspicious_gap`): a full classified snapshot, so the breakdown
  by kind and TCP state is known at the moment that matters. Snapshots also feed one
  detector per kind and per TCP state, which finds a leak of one kind (say
  CLOSE-WAIT sockets) hidden under a flat total.
- every `rescan_every` (5 s): re-resolve the target specs (new processes,
  restarts); an exit is noticed by the next count.
- every `limits_every` (30 s): re-read RLIMIT_NOFILE; a change is an event and
  restarts the detector against the new limit.
- every `state_every` (1 h), and by `save_states()` when the watch ends: with a
  store, each target's detector state (and its per-kind ones), so a restarted
  watch goes on from it for the same process instead of needing another day of
  history. Up to an hour of a day-scale detector's learning is lost on kill -9;
  the samples are not.

Everything the loop learns is a `WatchEvent` handed to `on_event` (the CLI
prints them; `--json` streams them) and, when a store is given, written there
in one transaction per round, so kill -9 loses at most the round in flight.
The loop holds no fd between rounds: its own fd count is flat however long it
runs (bench/watch_cost.py checks it over 100,000 samples).
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fdguard.alerts import AlertEngine, Observation, Sink, Verdict, deliver
from fdguard.clock import SYSTEM_CLOCK, Clock, SystemClock
from fdguard.detect import DetectorConfig, LeakDetector
from fdguard.errors import AccessDenied, FdguardError, NoSuchProcess, UsageError
from fdguard.inspect import count as count_fds
from fdguard.inspect import snapshot as take_snapshot
from fdguard.model import TROUBLE_STATES, ProcessRef, Snapshot
from fdguard.procfs.pids import read_identity, read_limits, read_ref, started_at
from fdguard.procfs.process import DEFAULT_ROOT
from fdguard.store import Store
from fdguard.targets import Target, TargetChange, TargetSet


class Detector(Protocol):
    """What the loop needs of a leak detector (`fdguard.detect.LeakDetector`)."""

    def update(self, t: float, count: float) -> Verdict: ...


DetectorFactory = Callable[[int | None], Detector]


def detector_config_for(period: float, bucket: float | None = None) -> DetectorConfig:
    """The detector's default tuning rescaled to `period` seconds of longest healthy
    cycle: every duration keeps its ratio to the period (the detector needs one
    period of history before it judges). `bucket` overrides the bucket length,
    e.g. to keep a few samples per bucket at a fast interval."""
    base = DetectorConfig()
    factor = period / base.period_seconds
    args: dict[str, Any] = {
        f.name: getattr(base, f.name) * factor
        for f in dataclasses.fields(DetectorConfig)
        if f.name.endswith("_seconds")
    }
    if bucket is not None:
        args["bucket_seconds"] = bucket
    # `persist` counts bucket closes: keep the wall-clock time it stands for (three
    # hours of a day, rescaled) when the bucket length is overridden.
    held = base.persist * base.bucket_seconds * factor
    args["persist"] = max(1, round(held / args["bucket_seconds"]))
    return DetectorConfig(**args)


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """The cadences of the loop (see the module comment)."""

    interval: float = 1.0
    snapshot_every: float = 60.0
    suspicious_gap: float = 10.0
    rescan_every: float = 5.0
    limits_every: float = 30.0
    retain_every: float = 3600.0
    raw_for: float = 6 * 3600.0
    """Keep raw samples this long, then fold them into `bucket`-second max/min buckets."""
    keep_for: float = 90 * 86400.0
    """Drop everything older than this."""
    bucket: float = 60.0
    per_kind: bool = True
    detector: DetectorConfig | None = None
    """Detector tuning; None is the detector's defaults (a day of history to judge)."""
    resume: bool = True
    """Save each target's detector state in the store every `state_every` seconds and
    when the loop ends, and go on from it when a watch (re)starts on the same
    process (PID and start time): a restarted watcher is not blind for a day."""
    state_every: float = 3600.0
    """Seconds between two saves of one target's detector state (spread over rounds)."""

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        if self.state_every <= 0:
            raise ValueError("state_every must be positive")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One thing the watcher learnt: a sample, snapshot, verdict change, alert or lifecycle."""

    type: str
    t: float
    ref: ProcessRef | None
    name: str
    label: str
    data: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "t": self.t}
        if self.ref is not None:
            out["pid"] = self.ref.pid
            out["start_time"] = self.ref.start_time
        out["name"] = self.name
        out["target"] = self.label
        out.update(self.data)
        return out


@dataclass(frozen=True, slots=True)
class TargetView:
    """The latest state of one target, for live views and the exporter (immutable copy)."""

    target: Target
    count: int | None
    soft_limit: int | None
    hard_limit: int | None
    t: float | None
    verdict: Verdict | None
    by_kind: Mapping[str, int]
    by_tcp_state: Mapping[str, int]
    kind_verdicts: Mapping[str, Verdict]
    firing: tuple[str, ...]
    samples: int


@dataclass
class _State:
    target: Target
    detector: Detector
    store_id: int | None = None
    count: int | None = None
    soft: int | None = None
    hard: int | None = None
    t: float | None = None
    verdict: Verdict | None = None
    by_kind: dict[str, int] = field(default_factory=dict)
    by_tcp_state: dict[str, int] = field(default_factory=dict)
    kind_detectors: dict[str, Detector] = field(default_factory=dict)
    kind_verdicts: dict[str, Verdict] = field(default_factory=dict)
    last_snapshot: float | None = None
    last_limits: float = 0.0
    saved_at: float = 0.0  # when its detector state was last saved (monotonic)
    samples: int = 0
    denied: bool = False


HistorySource = Callable[[int, str, float, float], Mapping[str, Sequence[tuple[float, float]]]]
"""A process's past counts from elsewhere (a Prometheus): `(pid, comm, since, until)`
-> series of `(wall time, count)` samples between those wall times, oldest first:
`""` is the total, any other key a per-kind series named as the watcher names them
("pipe", "tcp:CLOSE-WAIT"). May raise `FdguardError` (the watch goes on, without
them, and says why)."""


def _suspicious(v: Verdict) -> bool:
    """A leak, or partial evidence: the floor already above the reference level
    (LeakVerdict's `floor`/`reference`; a detector without them is never suspicious
    short of a leak)."""
    if v.leak:
        return True
    floor = getattr(v, "floor", None)
    reference = getattr(v, "reference", None)
    return floor is not None and reference is not None and floor > reference


def _verdict_json(v: Verdict | None) -> dict[str, Any]:
    # `confirming` and `warmup_left` are what the live table shows as "confirming" and
    # "learning Nh"; a detector other than `LeakDetector` may not have them (null).
    if v is None:
        return {
            "leak": None,
            "rate_per_hour": None,
            "eta_seconds": None,
            "confidence": None,
            "confirming": None,
            "warmup_left": None,
        }
    return {
        "leak": v.leak,
        "rate_per_hour": v.rate_per_hour,
        "eta_seconds": v.eta_seconds,
        "confidence": v.confidence,
        "confirming": getattr(v, "confirming", None),
        "warmup_left": getattr(v, "warmup_left", None),
    }


class Watcher:
    """Samples a `TargetSet` on a clock; see the module comment for what each round does.

    Args:
        targets: the processes to follow (refreshed every `rescan_every`).
        config: cadences.
        clock: `SYSTEM_CLOCK`, or a `ManualClock` in tests.
        store: where to record samples, snapshots, alerts and events (optional).
        alerts: the rule engine (None: no alerts).
        sinks: where alert transitions go.
        on_event: called with every `WatchEvent`, in the loop's thread.
        detector_factory: makes a detector for a soft limit (default `LeakDetector`).
        history: where a newly followed process's past counts come from, so its
            detector judges at once instead of after a day (see `_prime`).
        count_fn, snapshot_fn, root: the readers (tests and benches may swap them).
    """

    def __init__(
        self,
        targets: TargetSet,
        *,
        config: WatchConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        store: Store | None = None,
        alerts: AlertEngine | None = None,
        sinks: Sequence[Sink] = (),
        on_event: Callable[[WatchEvent], None] | None = None,
        detector_factory: DetectorFactory | None = None,
        count_fn: Callable[[int], int] = count_fds,
        snapshot_fn: Callable[[int, ProcessRef], Snapshot] | None = None,
        root: str = DEFAULT_ROOT,
        history: HistorySource | None = None,
    ) -> None:
        self.targets = targets
        self.history = history
        self.config = config or WatchConfig()
        self.clock = clock
        self.store = store
        self.alerts = alerts
        self.sinks = list(sinks)
        self.on_event = on_event
        self.detector_factory: DetectorFactory = detector_factory or (
            lambda limit: LeakDetector(limit=limit, config=self.config.detector)
        )
        self.count_fn = count_fn
        self.snapshot_fn = snapshot_fn or (
            lambda pid, ref: take_snapshot(pid, expect=ref, root=root)
        )
        self.root = root
        self._states: dict[ProcessRef, _State] = {}
        self._views: tuple[TargetView, ...] = ()
        self._next_rescan: float | None = None
        self._last_retain: float | None = None
        self._last_step: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._views_round = -1
        self.rounds = 0
        self.samples = 0
        # Saved states are LeakDetector states: a custom factory's detectors are not.
        self._saves_states = detector_factory is None and self.config.resume

    # -- public ------------------------------------------------------------------

    def views(self) -> tuple[TargetView, ...]:
        """The latest state of every followed target (safe to call from another thread).

        Built on demand (at most once per round) under the loop's lock, so a scrape
        waits for the round in flight and never sees half of one.
        """
        with self._lock:
            if self._views_round != self.rounds:
                self._publish()
                self._views_round = self.rounds
            return self._views

    def stop(self) -> None:
        """Ask `run` to return after the current round (thread-safe)."""
        self._stop.set()

    @property
    def finished(self) -> bool:
        return not self._states and self.targets.finished

    def run(
        self,
        *,
        max_rounds: int | None = None,
        duration: float | None = None,
        until: Callable[[], bool] | None = None,
    ) -> None:
        """Sample every `interval` until stopped, `finished`, `max_rounds`, `duration`
        seconds, or `until()` is true. Rounds keep to a fixed grid: a slow round is
        not followed by a burst, the missed ticks are skipped."""
        interval = self.config.interval
        start = self.clock.monotonic()
        if self._last_step is not None and start - self._last_step < interval:
            # Called again right after returning: keep the grid, no double sample.
            self.clock.sleep(self._last_step + interval - start)
            start = self.clock.monotonic()
        tick = 0
        done = 0
        while not self._stop.is_set():
            self.step()
            done += 1
            if max_rounds is not None and done >= max_rounds:
                return
            if self.finished or (until is not None and until()):
                return
            now = self.clock.monotonic()
            if duration is not None and now - start >= duration:
                return
            tick = max(tick + 1, int((now - start) / interval) + 1)
            delay = start + tick * interval - now
            if isinstance(self.clock, SystemClock):
                # Real time: wait on the stop flag so `stop()` interrupts the wait.
                self._stop.wait(max(0.0, delay))
            else:
                self.clock.sleep(delay)

    def step(self) -> list[WatchEvent]:
        """One round: rescan if due, count every target, snapshot and alert as needed."""
        events: list[WatchEvent] = []
        mono = self.clock.monotonic()
        wall = self.clock.time()
        self._last_step = mono
        with self._lock:
            if self.store is not None:
                with self.store.transaction():
                    self._round(mono, wall, events)
            else:
                self._round(mono, wall, events)
            self.rounds += 1
        if self.store is not None and (
            self._last_retain is None or mono - self._last_retain >= self.config.retain_every
        ):
            self._last_retain = mono
            cfg = self.config
            self.store.retain(wall, raw_for=cfg.raw_for, keep_for=cfg.keep_for, bucket=cfg.bucket)
            self.store.enforce_size()
        if self.store is not None and self._saves_states:
            self._save_due_states(mono)
        return events

    def _save_due_states(self, mono: float) -> None:
        """Save the states that are `state_every` old, a few targets a round: saving a
        thousand at once (15 ms each after days at 1 Hz) would stall the loop."""
        every = self.config.state_every
        due = [st for st in self._states.values() if mono - st.saved_at >= every]
        if due:
            share = len(self._states) * self.config.interval / every
            self.save_states(due[: 2 * math.ceil(share)])

    def save_states(self, states: Sequence[_State] | None = None) -> int:
        """Save the detector states (with their per-kind ones) of `states`, or of every
        target, in the store; returns how many. `step` keeps each one at most
        `state_every` old; call this once more when the watch ends (the CLI does), not
        after every `run`, which may be one round. A no-op without a store, with
        `resume` off, or with a custom detector factory."""
        if self.store is None or not self._saves_states:
            return 0
        mono, wall = self.clock.monotonic(), self.clock.time()
        rows: list[tuple[int, float, float, bytes]] = []
        with self._lock:
            for st in self._states.values() if states is None else states:
                if st.store_id is None or not isinstance(st.detector, LeakDetector):
                    continue
                kinds = {
                    name: det.state()
                    for name, det in st.kind_detectors.items()
                    if isinstance(det, LeakDetector)
                }
                doc = {"total": st.detector.state(), "kinds": kinds}
                rows.append((st.store_id, wall, mono, zlib.compress(json.dumps(doc).encode())))
                st.saved_at = mono
        if rows:
            self.store.save_detector_states(rows)
        return len(rows)

    def _resume(self, st: _State, soft: int | None, mono: float, wall: float) -> float | None:
        """Go on from the detector state saved for this very process; returns the wall
        time it was saved at, or None (nothing saved, saved with another tuning, or
        unreadable: then the detector starts fresh, as it would have anyway)."""
        assert self.store is not None
        assert st.store_id is not None
        saved = self.store.detector_state(st.store_id)
        if saved is None or saved[0] > wall:
            return None
        saved_wall, saved_mono, blob = saved
        # Same wall-clock moment on both monotonic clocks: the old one ran
        # (saved_mono - saved_wall) ahead of wall time, this one (mono - wall).
        shift = (mono - wall) - (saved_mono - saved_wall)
        want = self.config.detector or DetectorConfig()
        try:
            doc = json.loads(zlib.decompress(blob))
            total = LeakDetector.restore(doc["total"], shift=shift)
            kinds = {name: LeakDetector.restore(s, shift=shift) for name, s in doc["kinds"].items()}
        except (UsageError, ValueError, KeyError, TypeError, AttributeError, zlib.error):
            return None
        if total.config != want or any(k.config != want for k in kinds.values()):
            return None
        for det in (total, *kinds.values()):
            det.limit = soft
        st.detector = total
        st.kind_detectors = dict(kinds)
        return saved_wall

    def _prime(self, st: _State, mono: float, wall: float) -> dict[str, Any]:
        """Feed a newly followed process's detector its own past from `self.history`:
        the samples since the process started (never a previous process's: a restart
        is a new series) and within the detector's look-back. What was used, or why
        nothing was, for the start event."""
        assert self.history is not None
        tgt = st.target
        cfg = self.config.detector or DetectorConfig()
        try:
            born = started_at(tgt.ref, root=self.root)
        except FdguardError as err:
            return {"samples": 0, "error": str(err)}
        since = max(born, wall - cfg.lookback_periods * cfg.period_seconds)
        try:
            past = self.history(tgt.pid, tgt.comm, since, wall)
        except FdguardError as err:
            return {"samples": 0, "error": str(err)}
        shift = mono - wall  # the same moment on the monotonic clock
        total = [(t, n) for t, n in past.get("", ()) if since <= t < wall]
        for t, n in total:
            st.detector.update(t + shift, n)
        kinds = 0
        for name, series in past.items():
            kept = [(t, n) for t, n in series if since <= t < wall]
            if name and kept:
                det = st.kind_detectors[name] = self.detector_factory(st.soft)
                for t, n in kept:
                    det.update(t + shift, n)
                kinds += 1
        return {"samples": len(total), "since": total[0][0] if total else None, "kinds": kinds}

    # -- the round ------------------------------------------------------------------

    def _emit(self, events: list[WatchEvent], ev: WatchEvent, tid: int | None = None) -> None:
        events.append(ev)
        if self.store is not None and ev.type in ("start", "exit", "restart", "limit_change"):
            if tid is None and ev.ref is not None and ev.ref in self._states:
                tid = self._states[ev.ref].store_id
            self.store.add_event(tid, ev.t, ev.type, ev.data)
        if self.on_event is not None:
            self.on_event(ev)

    def _event(self, type_: str, wall: float, tgt: Target, **data: Any) -> WatchEvent:
        return WatchEvent(type_, wall, tgt.ref, tgt.comm, tgt.spec.label, data)

    def _round(self, mono: float, wall: float, events: list[WatchEvent]) -> None:
        if self._next_rescan is None or mono >= self._next_rescan:
            self._next_rescan = mono + self.config.rescan_every
            for change in self.targets.refresh():
                self._apply(change, mono, wall, events)
        rows: list[tuple[int, float, int, int | None]] = []
        for ref, st in list(self._states.items()):
            try:
                n = self.count_fn(ref.pid)
                if read_ref(ref.pid, root=self.root) != ref:
                    raise NoSuchProcess(ref.pid, "PID reused")
            except NoSuchProcess:
                for change in self.targets.lost(ref):
                    self._apply(change, mono, wall, events)
                self._states.pop(ref, None)
                continue
            except AccessDenied as err:
                if not st.denied:
                    st.denied = True
                    self._emit(events, self._event("error", wall, st.target, message=str(err)))
                continue
            self._sample(st, n, mono, wall, events)
            if st.store_id is not None:
                rows.append((st.store_id, wall, n, st.soft))
        if self.store is not None and rows:
            self.store.add_samples(rows)

    def _apply(
        self, change: TargetChange, mono: float, wall: float, events: list[WatchEvent]
    ) -> None:
        tgt = change.target
        if change.type == "exit":
            st = self._states.pop(tgt.ref, None)
            if self.alerts is not None:
                self.alerts.forget(tgt.ref)
            last = st.count if st is not None else None
            tid = st.store_id if st is not None else None
            self._emit(events, self._event("exit", wall, tgt, last_count=last), tid)
            return
        if tgt.ref in self._states:
            return
        try:
            limits = read_limits(tgt.pid, root=self.root)
        except FdguardError:
            return  # gone (or hidden) already: the next rescan tells
        st = _State(tgt, self.detector_factory(limits.soft), soft=limits.soft, hard=limits.hard)
        st.last_limits = st.saved_at = mono
        data: dict[str, Any] = {"command": list(tgt.command), "soft_limit": limits.soft}
        resumed = None
        if self.store is not None:
            st.store_id = self.store.target_id(tgt.ref, tgt.command, wall, tgt.spec.label)
            if self._saves_states:
                resumed = self._resume(st, limits.soft, mono, wall)
                if resumed is not None:
                    # The verdict itself is left to the first live sample, which reports
                    # a leak found before the restart as a verdict change like any other.
                    data["resumed_from"] = resumed
        if resumed is None and self.history is not None:
            data["history"] = self._prime(st, mono, wall)
        self._states[tgt.ref] = st
        if change.previous is not None:
            data["previous_pid"] = change.previous.ref.pid
            data["previous_start_time"] = change.previous.ref.start_time
        self._emit(events, self._event(change.type, wall, tgt, **data))

    def _sample(
        self, st: _State, n: int, mono: float, wall: float, events: list[WatchEvent]
    ) -> None:
        cfg = self.config
        if mono - st.last_limits >= cfg.limits_every:
            st.last_limits = mono
            try:
                lim = read_limits(st.target.pid, root=self.root)
            except FdguardError:
                lim = None
            if lim is not None:
                self._limits(st, lim.soft, lim.hard, wall, events)
        st.count = n
        st.t = wall
        st.samples += 1
        self.samples += 1
        before = st.verdict
        st.verdict = st.detector.update(mono, n)
        v = st.verdict
        if v.leak != (before.leak if before is not None else False):
            self._emit(
                events,
                self._event(
                    "verdict", wall, st.target, kind=None, reason=v.reason, **_verdict_json(v)
                ),
            )
        suspicious = _suspicious(v)
        due = st.last_snapshot is None or mono - st.last_snapshot >= cfg.snapshot_every
        if due or (suspicious and mono - (st.last_snapshot or 0.0) >= cfg.suspicious_gap):
            reason = "start" if st.last_snapshot is None else "cadence" if due else "suspicious"
            self._snapshot(st, mono, wall, reason, events)
        if self.on_event is not None:
            # Sample events are the bulk of a fleet watch: built only when someone listens.
            self._emit(
                events,
                self._event(
                    "sample", wall, st.target, count=n, soft_limit=st.soft, **_verdict_json(v)
                ),
            )
        if self.alerts is not None:
            obs = Observation(
                st.target.ref,
                st.target.comm,
                wall,
                n,
                st.soft,
                v,
                label=st.target.spec.label,
                by_kind=dict(st.by_kind),
            )
            for alert in self.alerts.evaluate(obs):
                if self.store is not None:
                    self.store.add_alert(
                        st.store_id,
                        wall,
                        rule=alert.rule,
                        state=alert.state,
                        severity=alert.severity,
                        message=alert.message,
                        data=alert.to_json(),
                    )
                errors = deliver(alert, self.sinks)
                doc = alert.to_json()
                doc.pop("type")
                if errors:
                    doc["delivery_errors"] = errors
                self._emit(
                    events,
                    WatchEvent(
                        "alert", wall, st.target.ref, st.target.comm, st.target.spec.label, doc
                    ),
                )

    def _limits(
        self, st: _State, soft: int | None, hard: int | None, wall: float, events: list[WatchEvent]
    ) -> None:
        if (soft, hard) == (st.soft, st.hard):
            return
        old = (st.soft, st.hard)
        st.soft, st.hard = soft, hard
        # The detector's ETA is against the limit it was built with: start afresh.
        st.detector = self.detector_factory(soft)
        st.verdict = None
        self._emit(
            events,
            self._event(
                "limit_change",
                wall,
                st.target,
                old_soft=old[0],
                old_hard=old[1],
                soft_limit=soft,
                hard_limit=hard,
            ),
        )

    def _snapshot(
        self, st: _State, mono: float, wall: float, reason: str, events: list[WatchEvent]
    ) -> None:
        st.last_snapshot = mono
        try:
            snap = self.snapshot_fn(st.target.pid, st.target.ref)
        except FdguardError:
            return  # exited or hidden mid-snapshot: the next count tells
        st.by_kind = snap.by_kind
        st.by_tcp_state = snap.by_tcp_state
        if snap.command != st.target.command:
            # Found between fork and exec: name the program it became.
            try:
                ident = read_identity(st.target.pid, root=self.root)
            except FdguardError:
                ident = None
            if ident is not None and ident.ref == st.target.ref:
                st.target = dataclasses.replace(st.target, comm=ident.comm, command=ident.cmdline)
        self._limits(st, snap.limits.soft, snap.limits.hard, wall, events)
        if st.store_id is not None and self.store is not None:
            self.store.add_kind_counts(st.store_id, wall, st.by_kind, st.by_tcp_state)
        if self.config.per_kind:
            series = dict(st.by_kind)
            for state in TROUBLE_STATES:
                series[f"tcp:{state.value}"] = st.by_tcp_state.get(state.value, 0)
            for name in st.kind_detectors:
                series.setdefault(name, 0)
            for name, n in series.items():
                det = st.kind_detectors.get(name)
                if det is None:
                    det = st.kind_detectors[name] = self.detector_factory(st.soft)
                kv = det.update(mono, n)
                prev = st.kind_verdicts.get(name)
                st.kind_verdicts[name] = kv
                if kv is not None and kv.leak != (prev.leak if prev is not None else False):
                    self._emit(
                        events,
                        self._event(
                            "verdict",
                            wall,
                            st.target,
                            kind=name,
                            reason=kv.reason,
                            **_verdict_json(kv),
                        ),
                    )
        self._emit(
            events,
            self._event(
                "snapshot",
                wall,
                st.target,
                reason=reason,
                count=snap.count,
                by_kind=st.by_kind,
                by_tcp_state=st.by_tcp_state,
            ),
        )

    def _publish(self) -> None:
        views = []
        for st in self._states.values():
            firing = tuple(self.alerts.firing(st.target.ref)) if self.alerts is not None else ()
            views.append(
                TargetView(
                    target=st.target,
                    count=st.count,
                    soft_limit=st.soft,
                    hard_limit=st.hard,
                    t=st.t,
                    verdict=st.verdict,
                    by_kind=dict(st.by_kind),
                    by_tcp_state=dict(st.by_tcp_state),
                    kind_verdicts=dict(st.kind_verdicts),
                    firing=firing,
                    samples=st.samples,
                )
            )
        self._views = tuple(sorted(views, key=lambda v: v.target.ref.pid))


__all__ = ["TargetView", "WatchConfig", "WatchEvent", "Watcher"]
