"""Alert rules over watched fd series, with hysteresis and de-duplication, and their sinks.

Rules (each evaluated on every sample of every target):
- `ThresholdRule`: the count as a share of the soft limit (fires at 80%, clears
  below 70% by default). The classic alert; late on slow leaks, kept because
  people expect it and because it is right about sudden floods.
- `RateRule`: the detector's growth rate (fds/hour) while it calls a leak.
- `TrendRule`: the detector's leak verdict itself, above a minimum confidence.
- `EtaRule`: the detector's time until the soft limit, below a horizon (fires
  under 1 h, clears above 1.5 h by default).

Hysteresis: every rule has a fire and a (looser) clear threshold, and must see
its condition on `for_samples` consecutive evaluations before firing, so a
count hovering at 80% does not flap. De-duplication: an alert is emitted only on
a transition (firing, resolved) per (target, rule); a still-firing alert is
re-sent only if `repeat_every` seconds passed (off by default).

Sinks get each transition: `LogSink` (logging), `StreamSink` (one JSON line or
text line on a stream the caller owns), `WebhookSink` (HTTP POST of the alert
JSON) and `CommandSink` (runs a command with the JSON on stdin). A failing sink
never stops the watch: delivery errors are logged and returned.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from fdguard.model import ProcessRef

log = logging.getLogger("fdguard.alerts")


class Verdict(Protocol):
    """What the rules read from a leak verdict (`fdguard.detect.LeakVerdict` has it)."""

    @property
    def leak(self) -> bool: ...
    @property
    def rate_per_hour(self) -> float | None: ...
    @property
    def eta_seconds(self) -> float | None: ...
    @property
    def confidence(self) -> float: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Observation:
    """What the rules see about one target at one sample."""

    ref: ProcessRef
    name: str
    t: float
    count: int
    soft_limit: int | None
    verdict: Verdict | None = None
    label: str = ""
    by_kind: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert transition: a rule started (`firing`) or stopped (`resolved`) holding."""

    rule: str
    state: str
    severity: str
    t: float
    ref: ProcessRef
    name: str
    message: str
    count: int
    soft_limit: int | None
    value: float | None
    rate_per_hour: float | None = None
    eta_seconds: float | None = None
    confidence: float | None = None
    label: str = ""
    by_kind: Mapping[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "alert",
            "rule": self.rule,
            "state": self.state,
            "severity": self.severity,
            "t": self.t,
            "pid": self.ref.pid,
            "start_time": self.ref.start_time,
            "name": self.name,
            "target": self.label,
            "message": self.message,
            "count": self.count,
            "soft_limit": self.soft_limit,
            "value": self.value,
            "rate_per_hour": self.rate_per_hour,
            "eta_seconds": self.eta_seconds,
            "confidence": self.confidence,
            "by_kind": dict(self.by_kind) if self.by_kind is not None else None,
        }


@dataclass(frozen=True, slots=True)
class Check:
    """A rule's reading of one observation: `fire`/`clear` are the two hysteresis sides;
    both False means "in between, keep the current state"."""

    fire: bool
    clear: bool
    value: float | None
    message: str


class Rule(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def for_samples(self) -> int: ...

    def check(self, obs: Observation) -> Check: ...


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """Count >= `fire_at` x soft limit fires; below `clear_at` x limit clears."""

    fire_at: float = 0.8
    clear_at: float = 0.7
    severity: str = "warning"
    for_samples: int = 3
    name: str = "threshold"

    def check(self, obs: Observation) -> Check:
        if not obs.soft_limit:
            return Check(False, True, None, "no soft limit")
        share = obs.count / obs.soft_limit
        return Check(
            share >= self.fire_at,
            share < self.clear_at,
            share,
            f"{obs.count} fds open, {share:.0%} of the soft limit {obs.soft_limit}",
        )


@dataclass(frozen=True, slots=True)
class RateRule:
    """A leak growing faster than `fire_per_hour` fds/hour fires; under `clear_per_hour` clears."""

    fire_per_hour: float = 60.0
    clear_per_hour: float = 30.0
    severity: str = "warning"
    for_samples: int = 1
    name: str = "rate"

    def check(self, obs: Observation) -> Check:
        v = obs.verdict
        rate = v.rate_per_hour if v is not None and v.leak else None
        if rate is None:
            return Check(False, True, None, "no leak")
        return Check(
            rate >= self.fire_per_hour,
            rate < self.clear_per_hour,
            rate,
            f"fds leaking at {rate:.1f}/hour ({obs.count} open)",
        )


@dataclass(frozen=True, slots=True)
class TrendRule:
    """The detector calls a leak with at least `min_confidence`; clears when it no longer does."""

    min_confidence: float = 0.0
    severity: str = "warning"
    for_samples: int = 1
    name: str = "trend"

    def check(self, obs: Observation) -> Check:
        v = obs.verdict
        if v is None:
            return Check(False, False, None, "no verdict yet")
        leaking = v.leak and v.confidence >= self.min_confidence
        return Check(
            leaking,
            not v.leak,
            v.confidence,
            f"fd leak: {v.reason}" if v.leak else "no leak",
        )


@dataclass(frozen=True, slots=True)
class EtaRule:
    """The soft limit is reached in under `fire_below` seconds; over `clear_above` clears."""

    fire_below: float = 3600.0
    clear_above: float = 5400.0
    severity: str = "critical"
    for_samples: int = 1
    name: str = "eta"

    def check(self, obs: Observation) -> Check:
        v = obs.verdict
        eta = v.eta_seconds if v is not None and v.leak else None
        if eta is None:
            return Check(False, True, None, "no ETA")
        return Check(
            eta <= self.fire_below,
            eta > self.clear_above,
            eta,
            f"soft limit {obs.soft_limit} reached in about {_human(eta)} "
            f"({obs.count} open, +{(v.rate_per_hour or 0.0) if v else 0.0:.0f}/hour)",
        )


def default_rules() -> list[Rule]:
    return [ThresholdRule(), RateRule(), TrendRule(), EtaRule()]


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass
class _RuleState:
    firing: bool = False
    streak: int = 0
    last_sent: float = 0.0


@dataclass
class AlertEngine:
    """Evaluates rules per target with hysteresis and de-duplication (module comment)."""

    rules: Sequence[Rule] = field(default_factory=default_rules)
    repeat_every: float | None = None
    _state: dict[tuple[ProcessRef, str], _RuleState] = field(default_factory=dict)

    def evaluate(self, obs: Observation) -> list[Alert]:
        """Feed one observation; return the alerts to send now (usually none)."""
        out: list[Alert] = []
        for rule in self.rules:
            key = (obs.ref, rule.name)
            st = self._state.setdefault(key, _RuleState())
            chk = rule.check(obs)
            if not st.firing:
                st.streak = st.streak + 1 if chk.fire else 0
                if st.streak >= max(1, rule.for_samples):
                    st.firing = True
                    st.last_sent = obs.t
                    out.append(self._alert(rule, "firing", obs, chk))
            elif chk.clear:
                st.firing = False
                st.streak = 0
                out.append(self._alert(rule, "resolved", obs, chk))
            elif self.repeat_every is not None and obs.t - st.last_sent >= self.repeat_every:
                st.last_sent = obs.t
                out.append(self._alert(rule, "firing", obs, chk))
        return out

    def forget(self, ref: ProcessRef) -> None:
        """Drop the state of a target that exited."""
        for key in [k for k in self._state if k[0] == ref]:
            del self._state[key]

    def firing(self, ref: ProcessRef) -> list[str]:
        return [rule for (r, rule), st in self._state.items() if r == ref and st.firing]

    @staticmethod
    def _alert(rule: Rule, state: str, obs: Observation, chk: Check) -> Alert:
        v = obs.verdict
        return Alert(
            rule=rule.name,
            state=state,
            severity=rule.severity,
            t=obs.t,
            ref=obs.ref,
            name=obs.name,
            message=chk.message,
            count=obs.count,
            soft_limit=obs.soft_limit,
            value=chk.value,
            rate_per_hour=v.rate_per_hour if v is not None else None,
            eta_seconds=v.eta_seconds if v is not None else None,
            confidence=v.confidence if v is not None else None,
            label=obs.label,
            by_kind=obs.by_kind,
        )


# -- sinks ---------------------------------------------------------------------------


class Sink(Protocol):
    def send(self, alert: Alert) -> None: ...


class SinkError(Exception):
    """A sink could not deliver an alert (the watch goes on)."""


@dataclass
class LogSink:
    """Alerts as log records: warning for firing, info for resolved."""

    logger: logging.Logger = log

    def send(self, alert: Alert) -> None:
        level = logging.WARNING if alert.state == "firing" else logging.INFO
        self.logger.log(
            level,
            "%s %s pid %d (%s): %s",
            alert.rule,
            alert.state,
            alert.ref.pid,
            alert.name,
            alert.message,
        )


@dataclass
class StreamSink:
    """One line per alert on a stream the caller owns: JSON or a human line."""

    stream: TextIO
    as_json: bool = True

    def send(self, alert: Alert) -> None:
        if self.as_json:
            line = json.dumps(alert.to_json(), separators=(",", ":"))
        else:
            line = (
                f"[{alert.severity}] {alert.rule} {alert.state}: pid {alert.ref.pid} "
                f"({alert.name}): {alert.message}"
            )
        self.stream.write(line + "\n")
        self.stream.flush()


@dataclass
class WebhookSink:
    """POSTs the alert JSON to `url` (http or https), with a bounded timeout."""

    url: str
    timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http(s): {self.url!r}")

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.to_json()).encode()
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **self.headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as err:
            raise SinkError(f"webhook {self.url}: {err}") from err


@dataclass
class CommandSink:
    """Runs `argv` per alert with its JSON on stdin and FDGUARD_ALERT_* in the environment."""

    argv: Sequence[str]
    timeout: float = 10.0

    def send(self, alert: Alert) -> None:
        env = dict(os.environ)
        env.update(
            {
                "FDGUARD_ALERT_RULE": alert.rule,
                "FDGUARD_ALERT_STATE": alert.state,
                "FDGUARD_ALERT_SEVERITY": alert.severity,
                "FDGUARD_ALERT_PID": str(alert.ref.pid),
                "FDGUARD_ALERT_MESSAGE": alert.message,
            }
        )
        try:
            res = subprocess.run(
                list(self.argv),
                input=json.dumps(alert.to_json()).encode(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SinkError(f"alert command {self.argv[0]!r}: {err}") from err
        if res.returncode != 0:
            raise SinkError(f"alert command {self.argv[0]!r} exited with {res.returncode}")


def deliver(alert: Alert, sinks: Iterable[Sink]) -> list[str]:
    """Send `alert` to every sink; return the errors (logged, never raised)."""
    errors = []
    for sink in sinks:
        try:
            sink.send(alert)
        except SinkError as err:
            log.warning("alert delivery failed: %s", err)
            errors.append(str(err))
    return errors
