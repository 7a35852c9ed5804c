"""Gather a bug report's facts from what fdguard recorded, and redact them on the way in.

The sources, each optional, each said missing when absent (never invented):
the store (`fdguard watch --store`: the series, kind breakdowns, alerts,
restarts), `explain` (live, or a saved `explain --json`), `trace` (a saved
`trace --json`, or a live window when asked), a `lab repro` result or a
`stress --json` result, service logs, and optional live thread stacks (gdb).
Platform facts come from `report.platform`; the libuv version from the
runtime detection behind `explain`.

Everything that came from the target passes through one `Redactor` here, so
the `Report` value the writer renders holds no unredacted target text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fdguard.attribute import explain
from fdguard.detect import theil_sen
from fdguard.errors import FdguardError, ToolMissing, UsageError
from fdguard.known import known_for_version, observe_history, parse_version, rank
from fdguard.model import Limits
from fdguard.procfs.maps import read_environ
from fdguard.procfs.pids import read_ref
from fdguard.procfs.process import DEFAULT_ROOT
from fdguard.report.charts import ChartData, chart_data
from fdguard.report.platform import Platform, collect_platform
from fdguard.report.redact import RedactionSummary, Redactor
from fdguard.runtimes import detect as detect_runtime
from fdguard.runtimes import runtime_json
from fdguard.store import AlertRecord, Store, StoredTarget
from fdguard.trace import trace_pid

# Log lines worth a maintainer's eyes: errno names, "error", libuv's own names.
_LOG_INTEREST = re.compile(
    r"\bE(?:MFILE|NFILE|NOMEM|AGAIN|CONNRESET|CONNREFUSED|PIPE|BADF|INVAL|NOBUFS|ADDRINUSE|"
    r"ACCES|PERM|NOENT|TIMEDOUT)\b|too many open files|\berror\b|\buv_[a-z_]+|exception|fatal"
    r"|warning",
    re.I,
)
_STACK_LINE = re.compile(r"^\s+(?:at |File \"|#\d+ )")
MAX_LOG_LINES = 200
# Theil-Sen is quadratic: the rate is fitted on at most this many points.
_FIT_POINTS = 240


@dataclass(frozen=True, slots=True)
class TargetInfo:
    pid: int | None
    command: tuple[str, ...]
    label: str
    alive: bool
    pids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RuntimeFacts:
    name: str | None
    libuv_version: str | None
    source: str
    path: str | None
    linkage: str | None
    versions: dict[str, str]
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KnownFacts:
    version: str
    carried: tuple[dict[str, Any], ...]
    candidates: tuple[dict[str, Any], ...]
    upgrade_to: str | None


@dataclass(frozen=True, slots=True)
class Growth:
    """A growth rate and ETA, and where they come from."""

    rate_per_hour: float | None
    eta_seconds: float | None
    source: str
    confidence: float | None = None
    detected_at: float | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    data: ChartData
    samples: int
    first_t: float
    last_t: float
    first_count: int
    last_count: int
    peak_count: int
    peak_t: float
    soft_limit: int | None
    fit: Growth | None
    detector: Growth | None
    worst_t: float | None
    worst_by_kind: dict[str, int]
    worst_by_state: dict[str, int]
    alerts: tuple[AlertRecord, ...]
    restarts: tuple[tuple[float, int, int], ...]  # (t, old pid, new pid)


@dataclass(frozen=True, slots=True)
class ExplainFacts:
    summary: dict[str, Any]
    rows: tuple[tuple[str, str, str, int, str, int, bool], ...]
    """(verdict, kind, state, count, evidence, example fd, certain), unowned first."""
    unowned: tuple[dict[str, Any], ...]
    notes: tuple[str, ...]
    handle_view: str | None


@dataclass(frozen=True, slots=True)
class TraceGroup:
    count: int
    kinds: dict[str, int]
    syscall: str | None
    creator: str
    libuv_function: str | None
    verdict: str
    verdict_text: str
    frames: tuple[tuple[str, str], ...]  # (label, origin), innermost first
    after: dict[str, int]
    fds: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TraceFacts:
    mode: str
    window_s: float
    stacks: bool
    created: int
    closed: int
    open_at_end: int
    groups: tuple[TraceGroup, ...]
    exhaustion: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReproFile:
    name: str
    language: str
    text: str


@dataclass(frozen=True, slots=True)
class Reproducer:
    source: str
    files: tuple[ReproFile, ...]
    build: tuple[str, ...]
    run: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StressFacts:
    scenario: str
    configs: tuple[dict[str, Any], ...]
    leaking: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LogLine:
    source: str
    text: str
    repeats: int = 1


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    what: str
    present: bool
    how: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """Every fact of one bug report, redacted; `fdguard.report.writer` renders it."""

    title: str
    generated_at: float
    target: TargetInfo
    runtime: RuntimeFacts | None
    known: KnownFacts | None
    platform: Platform
    observed: Observed | None
    explain: ExplainFacts | None
    trace: TraceFacts | None
    stacks: str | None
    reproducer: Reproducer | None
    stress: StressFacts | None
    expected: str
    expected_given: bool
    logs: tuple[LogLine, ...]
    checklist: tuple[ChecklistItem, ...]
    redaction: RedactionSummary
    redactor: Redactor = field(compare=False, repr=False)
    mitigation: tuple[str, ...] = ()
    lab_runs: tuple[dict[str, Any], ...] = ()

    @property
    def missing(self) -> tuple[ChecklistItem, ...]:
        return tuple(c for c in self.checklist if not c.present)


@dataclass(frozen=True, slots=True)
class ReportInputs:
    """What to build a report from; every source is optional but one target is needed.

    Args:
        pid: a live process (explain, platform, limits and stacks are read from it).
        store: an fdguard store, and `store_target` in it (PID, label or #id);
            with `pid` alone the store's record of that process is used.
        explain_doc / trace_doc / stress_doc: saved `--json` outputs.
        explain_live: run `explain` on `pid` (default when `pid` is given and
            no saved explain is); explain_view is its --view.
        trace_for: attach `trace` to `pid` for that many seconds.
        lab: `lab` results: a `lab repro` directory (repro.c + build.sh), a
            reproducer file (.c, .js, .py) or JSON (`files`, `build`, `run`), and
            `lab run --json` outputs (a JSON list: verdicts per libuv).
        logs: service log files; the interesting lines are kept.
        gdb_stacks: attach gdb in batch mode for every thread's stack.
        verdict: a detector verdict in `analyze --json` shape (the demo passes
            the live one; otherwise the store's alerts carry it).
        mitigation: what was done to contain it meanwhile (e.g. guard restarts).
    """

    pid: int | None = None
    store: str | None = None
    store_target: str | None = None
    explain_doc: dict[str, Any] | None = None
    explain_live: bool = True
    explain_view: str = "auto"
    trace_doc: dict[str, Any] | None = None
    trace_for: float | None = None
    lab: tuple[str, ...] = ()
    stress_doc: dict[str, Any] | None = None
    logs: tuple[str, ...] = ()
    gdb_stacks: bool = False
    gdb_timeout: float = 20.0
    redact_extra: tuple[str, ...] = ()
    expected: str | None = None
    title: str | None = None
    verdict: dict[str, Any] | None = None
    mitigation: tuple[str, ...] = ()
    root: str = DEFAULT_ROOT


# Environment variables whose values are ordinary facts (the cwd, the shell, the
# locale): a report must be able to show /work/app even though PWD holds it.
_ENV_PLAIN = frozenset({
    "PWD", "OLDPWD", "HOME", "PATH", "SHELL", "TERM", "LANG", "LANGUAGE", "USER", "LOGNAME",
    "SHLVL", "_", "HOSTNAME", "TMPDIR", "TZ", "EDITOR", "PAGER", "COLORTERM", "DISPLAY",
    "MAIL", "NODE_ENV", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "PYTHONPATH", "NODE_PATH",
    "MANPATH", "INFOPATH", "PS1",
})
_SECRET_ENV_NAME = re.compile(
    r"KEY|SECRET|TOKEN|PASS|AUTH|CREDENTIAL|SESSION|COOKIE|PRIVATE|DSN|DATABASE_URL|_URL$|"
    r"CONN", re.I)


def env_literals(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The environment values to redact wherever they appear: every value of a
    variable named like a secret, and any other long random-looking value (letters
    and digits, no spaces, not a path). Ordinary facts (PWD, PATH, LANG) are kept."""
    out = []
    for name, value in env.items():
        if name in _ENV_PLAIN or name.startswith(("LC_", "XDG_")) or len(value) < 6:
            continue
        randomish = (len(value) >= 12 and " " not in value and not value.startswith("/")
                     and re.search(r"[A-Za-z]", value) and re.search(r"\d", value))
        if _SECRET_ENV_NAME.search(name) or randomish:
            out.append(("environment value", value))
    return out


def load_json(path: str, what: str) -> dict[str, Any]:
    """A saved `fdguard ... --json` document.

    Raises:
        UsageError: unreadable or not a JSON object.
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {what} {path}: {err}") from err
    if not isinstance(doc, dict):
        raise UsageError(f"{what} {path} is not a JSON object")
    return doc


# -- the target and its series ----------------------------------------------------


def _select(store: Store, spec: str | None, pid: int | None, root: str) -> list[StoredTarget]:
    """The store's targets for the report, oldest first: the chosen one and, when it
    has a label, the other processes of that label (restarts)."""
    targets = store.targets()
    chosen: StoredTarget | None = None
    if spec is not None and spec.startswith("#") and spec[1:].isdigit():
        chosen = next((t for t in targets if t.id == int(spec[1:])), None)
    elif (spec is not None and spec.isdigit()) or (spec is None and pid is not None):
        want = int(spec) if spec is not None else pid
        same = [t for t in targets if t.ref.pid == want]
        if pid is not None and want == pid:
            try:
                ref = read_ref(pid, root=root)
                same = [t for t in same if t.ref == ref] or same
            except FdguardError:
                pass
        chosen = max(same, key=lambda t: t.last_seen) if same else None
    elif spec is not None:
        same = [t for t in targets if t.label == spec]
        chosen = max(same, key=lambda t: t.last_seen) if same else None
    if chosen is None:
        if spec is None:
            return []
        raise UsageError(f"the store {store.path} has no target {spec!r}")
    if not chosen.label:
        return [chosen]
    return [t for t in targets if t.label == chosen.label and t.first_seen <= chosen.last_seen]


def _fit(samples: Sequence[tuple[float, int]], soft: int | None) -> Growth | None:
    if len(samples) < 3 or samples[-1][0] - samples[0][0] <= 0:
        return None
    step = max(1, len(samples) // _FIT_POINTS)
    pts = samples[::step]
    try:
        slope, _ = theil_sen([t for t, _ in pts], [float(c) for _, c in pts])
    except ValueError:
        return None
    rate = slope * 3600.0
    eta = None
    if slope > 0 and soft:
        eta = max(0.0, (soft - samples[-1][1]) / slope)
    return Growth(rate, eta, "Theil-Sen fit of the recorded series (not the leak detector)")


def _detector(alerts: Sequence[AlertRecord], verdict: Mapping[str, Any] | None) -> Growth | None:
    if verdict is not None and verdict.get("leak"):
        return Growth(
            verdict.get("rate_per_hour"),
            verdict.get("eta_seconds"),
            "fdguard's leak detector, at the end of the watch",
            verdict.get("confidence"),
            verdict.get("detected_at"),
        )
    firing = [
        a for a in alerts if a.state == "firing" and a.rule in ("trend", "eta")
        and a.data.get("rate_per_hour") is not None
    ]
    if not firing:
        return None
    first, last = firing[0], firing[-1]
    return Growth(
        last.data.get("rate_per_hour"),
        last.data.get("eta_seconds"),
        f"fdguard's leak detector, as recorded with the '{last.rule}' alert",
        last.data.get("confidence"),
        first.t,
    )


def _observed(
    store: Store, chain: Sequence[StoredTarget], verdict: Mapping[str, Any] | None
) -> Observed | None:
    try:
        data = chart_data(store, [t.id for t in chain])
    except UsageError:
        return None
    samples = data.samples
    peak = max(samples, key=lambda s: s.count)
    last_series = next(s for s in reversed(data.series) if s.samples)
    soft = next((s.soft_limit for s in reversed(samples) if s.soft_limit), None)
    by_time: dict[tuple[int, float], dict[str, dict[str, int]]] = {}
    for t in chain:
        for k in store.kind_counts(t.id):
            by_time.setdefault((t.id, k.t), {}).setdefault(k.dim, {})[k.name] = k.n
    worst_t = None
    worst_kind: dict[str, int] = {}
    worst_state: dict[str, int] = {}
    if by_time:
        key = max(by_time, key=lambda k: (sum(by_time[k].get("kind", {}).values()), k[1]))
        worst_t = key[1]
        worst_kind = dict(sorted(by_time[key].get("kind", {}).items(), key=lambda kv: -kv[1]))
        worst_state = dict(
            sorted(by_time[key].get("tcp_state", {}).items(), key=lambda kv: -kv[1])
        )
    alerts = tuple(a for s in data.series for a in s.alerts)
    restarts = tuple(
        (b.samples[0].t, a.pid, b.pid)
        for a, b in zip(data.series, data.series[1:], strict=False)
        if b.samples
    )
    return Observed(
        data=data,
        samples=len(samples),
        first_t=samples[0].t,
        last_t=samples[-1].t,
        first_count=samples[0].count,
        last_count=samples[-1].count,
        peak_count=peak.count,
        peak_t=peak.t,
        soft_limit=soft,
        fit=_fit([(s.t, s.count) for s in last_series.samples], soft),
        detector=_detector(alerts, verdict),
        worst_t=worst_t,
        worst_by_kind=worst_kind,
        worst_by_state=worst_state,
        alerts=alerts,
        restarts=restarts,
    )


# -- explain, trace, runtime -----------------------------------------------------


def _runtime_from(doc: Mapping[str, Any] | None, r: Redactor) -> RuntimeFacts | None:
    if not doc or not doc.get("name"):
        return None
    return RuntimeFacts(
        name=str(doc["name"]),
        libuv_version=doc.get("libuv_version"),
        source=r.redact(str(doc.get("source") or "")),
        path=r.redact(doc.get("path")) if doc.get("path") else None,
        linkage=doc.get("linkage"),
        versions={str(k): str(v) for k, v in (doc.get("versions") or {}).items()},
        notes=tuple(r.redact(str(n)) for n in doc.get("notes") or ()),
    )


_VERDICT_ORDER = ["unowned", "inherited", "fs", "handle", "stdio", "loop-internal"]


def _explain_from(doc: Mapping[str, Any], r: Redactor) -> ExplainFacts:
    fds = list(doc.get("fds") or [])
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for f in fds:
        key = (str(f.get("verdict")), str(f.get("kind")), str(f.get("state") or ""))
        groups.setdefault(key, []).append(f)

    def order(key: tuple[str, str, str]) -> tuple[int, int]:
        v = key[0]
        return (_VERDICT_ORDER.index(v) if v in _VERDICT_ORDER else 99, -len(groups[key]))

    rows = []
    for key in sorted(groups, key=order):
        items = groups[key]
        ev = Counter(str(f.get("evidence") or "") for f in items).most_common(1)[0][0]
        rows.append(
            (
                key[0],
                key[1],
                key[2],
                len(items),
                r.redact(ev),
                int(items[0].get("fd", -1)),
                all(bool(f.get("certain")) for f in items),
            )
        )
    unowned: list[dict[str, Any]] = []
    for f in fds:
        if f.get("verdict") == "unowned" and len(unowned) < 50:
            unowned.append(
                {
                    "fd": f.get("fd"),
                    "kind": f.get("kind"),
                    "state": f.get("state"),
                    "target": r.redact(f.get("target")),
                    "local": r.redact(f.get("local")),
                    "remote": r.redact(f.get("remote")),
                    "evidence": r.redact(f.get("evidence")),
                    "certain": f.get("certain"),
                }
            )
    hv = doc.get("handle_view")
    view = None
    if isinstance(hv, dict):
        n = hv.get("handles")
        n = len(n) if isinstance(n, list) else n
        view = (f"{hv.get('source', 'a handle view')} ({n} handles, "
                f"{hv.get('with_fd', '?')} with an fd)")
    summary = dict(doc.get("summary") or {})
    summary["basis"] = [r.redact(str(b)) for b in summary.get("basis") or []]
    return ExplainFacts(
        summary=summary,
        rows=tuple(rows),
        unowned=tuple(unowned),
        notes=tuple(r.redact(str(n)) for n in doc.get("notes") or ()),
        handle_view=r.redact(view) if view else None,
    )


def _frame_label(f: Mapping[str, Any], r: Redactor) -> tuple[str, str]:
    mod = f.get("module")
    base = os.path.basename(mod) if mod else "?"
    sym = f.get("symbol")
    label = f"{sym} ({base})" if sym else f"{f.get('address') or '?'} ({base})"
    return r.redact(label), str(f.get("origin") or "unknown")


def _trace_from(doc: Mapping[str, Any], r: Redactor) -> TraceFacts:
    groups = []
    for g in doc.get("groups") or []:
        groups.append(
            TraceGroup(
                count=int(g.get("count", 0)),
                kinds={str(k): int(v) for k, v in (g.get("kinds") or {}).items()},
                syscall=g.get("syscall"),
                creator=str(g.get("creator") or "unknown"),
                libuv_function=g.get("libuv_function"),
                verdict=str(g.get("verdict") or "unknown"),
                verdict_text=r.redact(str(g.get("verdict_text") or "")),
                frames=tuple(_frame_label(f, r) for f in g.get("frames") or []),
                after={r.redact(str(k)): int(v) for k, v in (g.get("after") or {}).items()},
                fds=tuple(int(x) for x in g.get("fds") or []),
            )
        )
    return TraceFacts(
        mode=str(doc.get("mode") or "?"),
        window_s=float(doc.get("window_s") or 0.0),
        stacks=bool(doc.get("stacks")),
        created=int(doc.get("created") or 0),
        closed=int(doc.get("closed") or 0),
        open_at_end=len(doc.get("open_at_end") or []),
        groups=tuple(groups),
        exhaustion=tuple(dict(e) for e in doc.get("exhaustion") or []),
        warnings=tuple(r.redact(str(w)) for w in doc.get("warnings") or ()),
    )


def _known(
    version: str | None, history: Sequence[tuple[float, str, str, int]]
) -> KnownFacts | None:
    if not version:
        return None
    try:
        v = parse_version(version)
    except (UsageError, ValueError):
        return None
    rep = known_for_version(v, "detected")
    cands: tuple[dict[str, Any], ...] = ()
    if history:
        cands = tuple(c.to_json() for c in rank(observe_history(history), v)[:5])
    return KnownFacts(
        version=str(v),
        carried=tuple(b.to_json() for b in rep.carried),
        candidates=cands,
        upgrade_to=str(rep.upgrade_to) if rep.upgrade_to is not None else None,
    )


# -- reproducer, logs, stacks -----------------------------------------------------

_LANG = {".c": "c", ".h": "c", ".js": "javascript", ".mjs": "javascript", ".py": "python",
         ".sh": "sh", ".toml": "toml", ".txt": "text", ".md": "markdown"}
_MAX_REPRO_FILE = 64 * 1024


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:_MAX_REPRO_FILE]
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err}") from err


_HEADER_STEP = re.compile(r"^\s*(?:\*|//|#)?\s*(Build|Run):\s+(\S.*?)\s*$", re.M)


def _header_steps(text: str) -> tuple[list[str], list[str]]:
    """The `Build:` and `Run:` lines a reproducer's own header comment gives."""
    build: list[str] = []
    run: list[str] = []
    for m in _HEADER_STEP.finditer(text[:4000]):
        (build if m.group(1) == "Build" else run).append(m.group(2))
    return build, run


def load_lab_runs(spec: str, r: Redactor) -> list[dict[str, Any]] | None:
    """The results of `fdguard lab run --json` (a JSON list), or None when `spec` is
    not one (then it is a reproducer)."""
    p = Path(spec)
    if not (p.is_file() and p.suffix == ".json"):
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read lab result {spec}: {err}") from err
    if not isinstance(doc, list):
        return None
    out = []
    for item in doc:
        if not isinstance(item, dict) or "scenario" not in item or "verdict" not in item:
            raise UsageError(f"{spec} is not `fdguard lab run --json` output")
        out.append({
            "scenario": str(item["scenario"]),
            "libuv": r.redact(str(item.get("libuv") or "")),
            "version": str(item.get("version") or "?"),
            "verdict": str(item["verdict"]),
            "growth": item.get("growth"),
            "growth_by_kind": dict(item.get("growth_by_kind") or {}),
            "iterations": item.get("iterations"),
            "outcomes": [r.redact(str(o)) for o in item.get("outcomes") or []],
        })
    return out


def load_reproducer(spec: str, r: Redactor) -> Reproducer:
    """A reproducer from a `lab repro` result: a JSON document (`files`, `build`,
    `run`), a directory (its source files, build.sh/Makefile, README), or one
    source file (a C file gets the libuv build line).

    Raises:
        UsageError: the path does not exist or holds no source.
    """
    p = Path(spec)
    origin = f"lab result {p.name}"
    if not p.exists():
        raise UsageError(f"no lab result at {spec}")
    files: list[ReproFile] = []
    build: list[str] = []
    run: list[str] = []
    notes: list[str] = []
    if p.is_file() and p.suffix == ".json":
        doc = load_json(spec, "lab result")
        raw_files = doc.get("files") or {}
        if isinstance(raw_files, dict):
            for name, text in raw_files.items():
                files.append(ReproFile(str(name), _LANG.get(Path(str(name)).suffix, "text"),
                                       r.redact(str(text))))
        src = doc.get("source")
        if isinstance(src, str) and not files:
            sp = (p.parent / src) if not os.path.isabs(src) else Path(src)
            files.append(ReproFile(sp.name, _LANG.get(sp.suffix, "text"),
                                   r.redact(_read_text(sp))))
        build = [r.redact(str(x)) for x in _as_list(doc.get("build"))]
        run = [r.redact(str(x)) for x in _as_list(doc.get("run"))]
        notes = [r.redact(str(x)) for x in _as_list(doc.get("notes") or doc.get("expected"))]
        if doc.get("origin"):
            origin = r.redact(str(doc["origin"]))
    elif p.is_dir():
        for child in sorted(p.iterdir()):
            if child.is_file() and (child.suffix in _LANG or child.name in ("Makefile",
                                                                             "build.sh")):
                files.append(ReproFile(child.name, _LANG.get(child.suffix, "make"),
                                       r.redact(_read_text(child))))
        origin = f"`fdguard lab repro` ({p.name})"
        names = {f.name for f in files}
        csrc = [f for f in files if f.language == "c" and f.name.endswith(".c")]
        hb, hr = _header_steps(csrc[0].text) if csrc else ([], [])
        if "build.sh" in names:
            build = ["sh build.sh" + (f"   # {hb[0]}" if hb else "")]
        elif "Makefile" in names:
            build = ["make"]
        elif hb:
            build = hb
        elif csrc:
            build = [_cc_line([f.name for f in csrc])]
        if csrc:
            run = hr or ["./repro"]
    else:
        files.append(ReproFile(p.name, _LANG.get(p.suffix, "text"), r.redact(_read_text(p))))
        if p.suffix == ".c":
            hb, hr = _header_steps(files[0].text)
            build = hb or [_cc_line([p.name])]
            run = hr or ["./repro"]
        elif p.suffix in (".js", ".mjs"):
            run = [f"node {p.name}"]
        elif p.suffix == ".py":
            run = [f"python3 {p.name}"]
    if not files:
        raise UsageError(f"the lab result {spec} holds no reproducer source")
    return Reproducer(origin, tuple(files), tuple(build), tuple(run), tuple(notes))


def _cc_line(sources: Sequence[str]) -> str:
    return f"cc -O0 -g -o repro {' '.join(sources)} $(pkg-config --cflags --libs libuv)"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def extract_log_lines(source: str, text: str, r: Redactor) -> list[LogLine]:
    """The interesting lines of a log (errors, errnos, libuv names, their stack lines),
    redacted, identical lines folded with a repeat count, at most MAX_LOG_LINES."""
    keep: list[str] = []
    stack_left = 0
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        if _LOG_INTEREST.search(line):
            keep.append(line[:400])
            stack_left = 8
        elif stack_left and _STACK_LINE.match(line):
            keep.append(line[:400])
            stack_left -= 1
        else:
            stack_left = 0
    out: list[LogLine] = []
    for line in keep:
        red = r.redact(line)
        if out and out[-1].text == red:
            out[-1] = LogLine(source, red, out[-1].repeats + 1)
        else:
            out.append(LogLine(source, red))
    folded: dict[str, int] = {}
    result: list[LogLine] = []
    for ln in out:
        # The same message repeated across the log (one per failed request) is
        # shown once with its count, in the place it first appeared.
        if ln.text in folded and not _STACK_LINE.match(ln.text):
            i = folded[ln.text]
            result[i] = LogLine(source, ln.text, result[i].repeats + ln.repeats)
            continue
        folded[ln.text] = len(result)
        result.append(ln)
    return result[:MAX_LOG_LINES]


def gdb_stacks(pid: int, timeout: float) -> str:
    """Every thread's stack of `pid`, from gdb in batch mode (stops the process briefly).

    Raises:
        ToolMissing: gdb is not installed.
        UsageError: gdb timed out or could not attach.
    """
    gdb = shutil.which("gdb")
    if gdb is None:
        raise ToolMissing("gdb", "apt-get install gdb")
    cmd = [gdb, "-p", str(pid), "-batch", "-nx", "-q", "-ex", "set pagination off",
           "-ex", "thread apply all bt 40"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise UsageError(f"gdb did not finish within {timeout:.0f}s") from err
    lines = [ln for ln in res.stdout.splitlines()
             if ln.startswith(("Thread ", "#")) or not ln.strip()]
    text = "\n".join(lines).strip()
    if not text:
        raise UsageError(f"gdb could not attach to {pid}: {res.stderr.strip()[-300:]}")
    return text


# -- the facade ---------------------------------------------------------------------


def _expected_text(observed: Observed | None, trace: TraceFacts | None) -> str:
    base = None
    if observed is not None:
        base = observed.first_count
    kinds = ""
    if trace is not None and trace.groups:
        kinds = ", ".join(sorted({k for g in trace.groups for k in g.kinds}))
    parts = [
        "Under steady load, every fd opened to serve a request (or by libuv on its behalf) "
        "is closed when that request, handle or failed operation is done, so the fd count "
        "returns to its baseline"
        + (f" (about {base} fds here)" if base is not None else "")
        + " and never approaches RLIMIT_NOFILE."
    ]
    if kinds:
        parts.append(f"In particular, the {kinds} fds created in the traced window should "
                     "have been closed.")
    parts.append("A failed operation (EMFILE, ECONNREFUSED, a timeout) must not leave an fd "
                 "behind.")
    return " ".join(parts)


def build_report(
    inputs: ReportInputs,
    *,
    now: Callable[[], float] = time.time,
) -> Report:
    """Gather and redact every fact of a report (see `ReportInputs`).

    Raises:
        UsageError: no target given, an input file unreadable, or the store
            has no such target.
        StoreError: the store cannot be opened.
    """
    if inputs.pid is None and inputs.store_target is None:
        raise UsageError("give a PID or --from-store TARGET")
    if inputs.store_target is not None and inputs.store is None:
        raise UsageError("--from-store needs a store (--store PATH)")
    pid = inputs.pid
    alive = False
    if pid is not None:
        try:
            read_ref(pid, root=inputs.root)
            alive = True
        except FdguardError:
            alive = False

    chain: list[StoredTarget] = []
    observed: Observed | None = None
    history: list[tuple[float, str, str, int]] = []
    store_note = ""
    if inputs.store is not None:
        if not os.path.exists(inputs.store):
            raise UsageError(f"no store at {inputs.store}")
        with Store(inputs.store) as store:
            chain = _select(store, inputs.store_target, pid, inputs.root)
            if chain:
                observed = _observed(store, chain, inputs.verdict)
                for t in chain:
                    history += [(k.t, k.dim, k.name, k.n) for k in store.kind_counts(t.id)]
            else:
                store_note = f"the store has no record of pid {pid}"
    latest = chain[-1] if chain else None
    if pid is None and latest is not None:
        pid = latest.ref.pid
        try:
            alive = read_ref(pid, root=inputs.root) == latest.ref
        except FdguardError:
            alive = False

    literals: list[tuple[str, str]] = []
    if alive and pid is not None:
        # The environment is never reported; its values only become patterns,
        # so a secret echoed into a log line or an argument is caught too.
        try:
            literals = env_literals(read_environ(pid, root=inputs.root))
        except (FdguardError, OSError):
            literals = []
    r = Redactor(extra=inputs.redact_extra, literals=literals)

    # explain: a saved document, else a live run.
    explain_doc = inputs.explain_doc
    explain_error = ""
    if explain_doc is None and alive and inputs.explain_live and pid is not None:
        try:
            explain_doc = explain(pid, view=inputs.explain_view, root=inputs.root).to_json()
        except FdguardError as err:
            explain_error = str(err)
    runtime_doc = explain_doc.get("runtime") if explain_doc else None
    if runtime_doc is None and alive and pid is not None:
        try:
            runtime_doc = runtime_json(detect_runtime(pid, root=inputs.root))
        except FdguardError:
            runtime_doc = None
    runtime = _runtime_from(runtime_doc, r)
    explain_facts = _explain_from(explain_doc, r) if explain_doc else None

    trace_doc = inputs.trace_doc
    trace_error = ""
    if trace_doc is None and inputs.trace_for and alive and pid is not None:
        try:
            trace_doc = trace_pid(pid, inputs.trace_for, root=inputs.root).to_json()
        except FdguardError as err:
            trace_error = str(err)
    trace = _trace_from(trace_doc, r) if trace_doc else None

    stacks = None
    stacks_error = ""
    if inputs.gdb_stacks:
        if alive and pid is not None:
            try:
                stacks = r.redact(gdb_stacks(pid, inputs.gdb_timeout))
            except FdguardError as err:
                stacks_error = str(err)
        else:
            stacks_error = "the target is not running"

    reproducer = None
    lab_runs: list[dict[str, Any]] = []
    for spec in inputs.lab:
        runs = load_lab_runs(spec, r)
        if runs is not None:
            lab_runs += runs
        elif reproducer is not None:
            raise UsageError("give one reproducer with --lab (and any number of lab run results)")
        else:
            reproducer = load_reproducer(spec, r)
    stress = None
    logs: list[LogLine] = []
    if inputs.stress_doc is not None:
        sd = inputs.stress_doc
        configs = tuple(
            {
                "name": r.redact(str(c.get("name"))),
                "faults": r.redact(str(c.get("faults"))),
                "leak": bool(c.get("leak")),
                "failed": bool(c.get("failed")),
                "reason": r.redact(str(c.get("reason") or "")),
                "deltas": list(c.get("deltas") or []),
                "growth_by_kind": dict(c.get("growth_by_kind") or {}),
            }
            for c in sd.get("configs") or []
        )
        stress = StressFacts(r.redact(str(sd.get("scenario") or "")), configs,
                             tuple(r.redact(str(x)) for x in sd.get("leaking") or ()))
        for c in sd.get("configs") or []:
            if c.get("error"):
                logs += extract_log_lines(f"stress {c.get('name')}", str(c["error"]), r)
    for path in inputs.logs:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise UsageError(f"cannot read log {path}: {err}") from err
        logs += extract_log_lines(r.redact(os.path.basename(path)), text, r)
    if trace is not None and trace.exhaustion:
        c = Counter(f"{e.get('syscall')} failed with {e.get('errno')}" for e in trace.exhaustion)
        logs += [LogLine("trace (strace)", text, n) for text, n in c.items()]

    version = runtime.libuv_version if runtime else None
    known = _known(version, history)

    command: tuple[str, ...] = ()
    if explain_doc and explain_doc.get("command"):
        command = tuple(str(a) for a in explain_doc["command"])
    elif latest is not None:
        command = latest.command
    elif trace_doc:
        command = tuple(str(a) for a in (trace_doc.get("target") or {}).get("command") or ())
    target = TargetInfo(
        pid=pid,
        command=tuple(r.redact_argv(command)),
        label=r.redact(latest.label) if latest else "",
        alive=alive,
        pids=tuple(t.ref.pid for t in chain),
    )
    recorded = Limits(observed.soft_limit, None) if observed and observed.soft_limit else None
    platform = collect_platform(pid if alive else None, recorded_limits=recorded,
                                root=inputs.root)

    checklist = _checklist(
        runtime, observed, explain_facts, explain_error, trace, trace_error, reproducer,
        stress, logs, inputs, stacks, stacks_error, store_note, alive,
    )
    expected = r.redact(inputs.expected) if inputs.expected else _expected_text(observed, trace)
    title = inputs.title or _title(runtime, observed, target)
    return Report(
        title=r.redact(title),
        generated_at=now(),
        target=target,
        runtime=runtime,
        known=known,
        platform=platform,
        observed=observed,
        explain=explain_facts,
        trace=trace,
        stacks=stacks,
        reproducer=reproducer,
        stress=stress,
        expected=expected,
        expected_given=inputs.expected is not None,
        logs=tuple(logs),
        checklist=checklist,
        redaction=r.summary(),
        redactor=r,
        mitigation=tuple(r.redact(m) for m in inputs.mitigation),
        lab_runs=tuple(lab_runs),
    )


def _title(runtime: RuntimeFacts | None, observed: Observed | None, target: TargetInfo) -> str:
    who = "a process"
    if runtime is not None and runtime.name:
        who = {"node": "Node.js", "uvloop": "uvloop", "libuv": "a libuv program"}.get(
            runtime.name, runtime.name
        )
        if runtime.libuv_version:
            who += f" (libuv {runtime.libuv_version})"
    if observed is not None and observed.peak_count > observed.first_count:
        return (f"fd leak in {who}: {observed.first_count} -> {observed.peak_count} open fds"
                + (f" of a soft limit of {observed.soft_limit}" if observed.soft_limit else ""))
    return f"fd report for {who}" + (f", pid {target.pid}" if target.pid else "")


def _checklist(
    runtime: RuntimeFacts | None,
    observed: Observed | None,
    explain: ExplainFacts | None,
    explain_error: str,
    trace: TraceFacts | None,
    trace_error: str,
    reproducer: Reproducer | None,
    stress: StressFacts | None,
    logs: Sequence[LogLine],
    inputs: ReportInputs,
    stacks: str | None,
    stacks_error: str,
    store_note: str,
    alive: bool,
) -> tuple[ChecklistItem, ...]:
    items = [
        ChecklistItem(
            "libuv version and runtime",
            runtime is not None and runtime.libuv_version is not None,
            "run the report while the process is alive, or pass a saved "
            "`fdguard explain PID --json` with --explain",
        ),
        ChecklistItem("platform details", True),
        ChecklistItem(
            "fd series (monitoring data)",
            observed is not None,
            (store_note + "; " if store_note else "")
            + "record one with `fdguard watch PID --store PATH`, then pass --store PATH",
        ),
        ChecklistItem(
            "leak verdict with growth rate and ETA",
            observed is not None and observed.detector is not None,
            "the leak detector has not fired on the recorded series (watch longer)",
        ),
        ChecklistItem(
            "attribution: explain verdicts",
            explain is not None,
            (f"explain failed: {explain_error}; " if explain_error else "")
            + ("run while the process is alive, or pass `fdguard explain PID --json` output "
               "with --explain" if not alive else "pass --explain FILE"),
        ),
        ChecklistItem(
            "birth certificates of leaked fds (trace)",
            trace is not None,
            (f"trace failed: {trace_error}; " if trace_error else "")
            + "`fdguard trace PID --for 60s --json > trace.json`, then --trace trace.json "
            "(or --trace-for 60s)",
        ),
        ChecklistItem(
            "stacks symbolised, libuv frames marked",
            trace is not None and trace.stacks and any(g.frames for g in trace.groups),
            "trace with creation stacks (strace built with -k support)",
        ),
        ChecklistItem(
            "minimal reproducer (lab repro, or one given with --lab)",
            reproducer is not None,
            "`fdguard lab repro ...`, then --lab RESULT"
            + ("; the stress scenario below triggers it meanwhile" if stress else ""),
        ),
        ChecklistItem(
            "a scenario that triggers it (reproducer or stress run)",
            stress is not None or reproducer is not None,
            "`fdguard stress ... --json > stress.json`, then --stress stress.json",
        ),
        ChecklistItem(
            "error logs",
            bool(logs),
            "pass the service's log with --log FILE (EMFILE and other errors are picked out)",
        ),
        ChecklistItem(
            "expected behaviour in the reporter's words",
            inputs.expected is not None,
            "fdguard wrote a generic one; say what the service should do with --expected",
        ),
    ]
    if inputs.gdb_stacks:
        items.append(ChecklistItem("live thread stacks (gdb)", stacks is not None,
                                   stacks_error or "gdb gave nothing"))
    return tuple(items)


__all__ = [
    "ChecklistItem",
    "ExplainFacts",
    "Growth",
    "KnownFacts",
    "LogLine",
    "Observed",
    "Report",
    "ReportInputs",
    "Reproducer",
    "RuntimeFacts",
    "StressFacts",
    "TargetInfo",
    "TraceFacts",
    "TraceGroup",
    "build_report",
    "env_literals",
    "extract_log_lines",
    "gdb_stacks",
    "load_json",
    "load_lab_runs",
    "load_reproducer",
]
