"""Rank the known libuv bugs a process may be hitting by how well their signatures fit what is seen.

A match is a hypothesis with evidence, never a verdict: the libuv version only
says which bugs a process *can* have; whether one of them is what leaks is told
by the shape of the growth (which kinds grow, together with which, in which
ratio). So every candidate carries the evidence for and against it, and a bug
whose signature fits nothing that grows scores 0 even when the version carries
it. Bugs of other platforms are never candidates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fdguard.known.base import KnownBug, load_bugs
from fdguard.known.versions import Version
from fdguard.model import Snapshot

# Below this score a candidate is shown as "weak"; at or above it, as a hypothesis
# whose signature fits. Neither is a verdict.
FITS = 0.5
_STDIO = 3


def kind_counts(snap: Snapshot) -> dict[str, int]:
    """Counts per kind key: every FdKind value, and "tcp:STATE" over both address families."""
    counts: Counter[str] = Counter()
    for fd in snap.fds:
        counts[fd.kind.value] += 1
        if fd.kind.is_tcp and fd.state is not None:
            counts[f"tcp:{fd.state.value}"] += 1
    return dict(counts)


def _non_cloexec(snap: Snapshot) -> tuple[bool, dict[str, int]]:
    """Whether flags were read for every non-stdio fd, and counts of fds without O_CLOEXEC."""
    known = True
    out: Counter[str] = Counter()
    for fd in snap.fds:
        if fd.fd < _STDIO:
            continue
        if fd.info is None:
            known = False
            continue
        if not fd.info.cloexec:
            out[fd.kind.value] += 1
            out["any"] += 1
    return known and bool(snap.fds), dict(out)


@dataclass(frozen=True, slots=True)
class Observation:
    """What is seen of one process's fds, the input of matching.

    Attributes:
        growth: kind key -> change in count over the window (may be negative); empty
            when only one moment was seen.
        window: in words, what the growth was measured over.
        counts: kind key -> count at the end of the window.
        cloexec_known: whether O_CLOEXEC was read for every non-stdio fd.
        non_cloexec: kind key -> number of non-stdio fds without O_CLOEXEC.
    """

    growth: tuple[tuple[str, int], ...]
    window: str
    counts: tuple[tuple[str, int], ...] = ()
    cloexec_known: bool = False
    non_cloexec: tuple[tuple[str, int], ...] = ()

    def grew(self, key: str) -> int:
        """How much `key` grew (0 when it shrank or stayed); "any" is the total growth."""
        g = dict(self.growth)
        if key == "any":
            return self.total_growth
        return max(0, g.get(key, 0))

    @property
    def total_growth(self) -> int:
        return sum(max(0, n) for k, n in self.growth if ":" not in k)

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "growth": {k: n for k, n in self.growth if n},
            "counts": dict(self.counts),
            "cloexec_known": self.cloexec_known,
            "non_cloexec": dict(self.non_cloexec),
        }


def observe_counts(before: dict[str, int], after: dict[str, int], window: str) -> Observation:
    """An observation from kind counts at two moments (from snapshots or from the store)."""
    keys = sorted(set(before) | set(after))
    growth = tuple((k, after.get(k, 0) - before.get(k, 0)) for k in keys)
    return Observation(growth=growth, window=window, counts=tuple(sorted(after.items())))


def observe_history(rows: Sequence[tuple[float, str, str, int]]) -> Observation:
    """An observation from recorded kind counts: (t, dim, name, n) rows, dim "kind" or
    "tcp_state" (the store's kind_counts), growth from the first recorded moment to the last.

    A kind absent at a recorded moment counted 0 then.
    """
    by_t: dict[float, dict[str, int]] = {}
    for t, dim, name, n in rows:
        key = name if dim == "kind" else f"tcp:{name}"
        by_t.setdefault(t, {})[key] = n
    if not by_t:
        return Observation(growth=(), window="no recorded kind counts")
    first, last = min(by_t), max(by_t)
    if first == last:
        return Observation(
            growth=(),
            window="one recorded moment: no growth measured",
            counts=tuple(sorted(by_t[last].items())),
        )
    return observe_counts(by_t[first], by_t[last], f"{last - first:.0f} s of recorded history")


def observe(before: Snapshot, after: Snapshot | None = None) -> Observation:
    """An observation from two snapshots of one process (or one, then nothing grows).

    Raises:
        ValueError: the snapshots are of different processes.
    """
    if after is None:
        known, nc = _non_cloexec(before)
        return Observation(
            growth=(),
            window="one snapshot: no growth measured",
            counts=tuple(sorted(kind_counts(before).items())),
            cloexec_known=known,
            non_cloexec=tuple(sorted(nc.items())),
        )
    if before.process != after.process:
        raise ValueError("snapshots of different processes")
    dt = after.taken_at - before.taken_at
    window = f"{dt:.1f} s between two snapshots"
    obs = observe_counts(kind_counts(before), kind_counts(after), window)
    known, nc = _non_cloexec(after)
    return Observation(obs.growth, obs.window, obs.counts, known, tuple(sorted(nc.items())))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A known bug that may explain what is seen, with the evidence for and against it."""

    bug: KnownBug
    score: float
    carried: bool | None
    evidence_for: tuple[str, ...]
    evidence_against: tuple[str, ...]

    @property
    def assessment(self) -> str:
        if self.score >= FITS:
            return "hypothesis: the signature fits what grows"
        if self.score > 0:
            return "weak: the signature fits part of what is seen"
        if self.carried is None:
            return "version unknown, and nothing seen fits its signature"
        return "carried, but nothing seen fits its signature"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.bug.id,
            "title": self.bug.title,
            "class": self.bug.bug_class,
            "score": round(self.score, 3),
            "assessment": self.assessment,
            "carried": self.carried,
            "fixed_in": str(self.bug.fixed_in),
            "evidence_for": list(self.evidence_for),
            "evidence_against": list(self.evidence_against),
            "source": self.bug.source.to_json(),
            "lab_scenario": self.bug.lab_scenario,
        }


def _score_counts(bug: KnownBug, obs: Observation, pro: list[str], con: list[str]) -> float:
    sig = bug.signature
    if not obs.growth:
        con.append("only one moment seen: growth per kind was not measured")
        return 0.0
    total = obs.total_growth
    if total == 0:
        con.append(f"no fd kind grew over {obs.window}")
        return 0.0
    grown = {k: obs.grew(k) for k in sig.kinds}
    hit = [k for k, g in grown.items() if g > 0]
    for k in sig.kinds:
        if grown[k] > 0:
            pro.append(f"{k} grew by {grown[k]} over {obs.window}")
        else:
            con.append(f"{k} did not grow")
    coverage = len(hit) / len(sig.kinds)
    if not hit:
        return 0.0
    # How much of all growth the signature's kinds account for; "tcp:STATE" growth
    # is part of the tcp/tcp6 growth, "any" accounts for everything.
    explained = min(1.0, sum(grown[k] for k in hit) / total)
    if explained < 1.0:
        con.append(f"only {explained:.0%} of the growth ({total} fds) is of these kinds")
    ratio = 1.0
    units = dict(sig.grows)
    ops = [grown[k] / units[k] for k in hit]
    if len(hit) > 1 and max(ops) > 0:
        ratio = min(ops) / max(ops)
        parts = ", ".join(f"{k} {grown[k]}" for k in hit)
        want = ":".join(str(units[k]) for k in hit)
        (pro if ratio >= 0.8 else con).append(f"ratio {parts} against {want} per operation")
    for k in hit:
        if units[k] > 1:
            if grown[k] % units[k] == 0:
                pro.append(f"{k} grew in groups of {units[k]} (+{grown[k]})")
            else:
                ratio *= 0.4
                con.append(f"{k} growth {grown[k]} is not a multiple of {units[k]}")
    companions = 1.0
    for k in sig.not_with:
        g = obs.grew(k)
        if g > 0:
            companions *= 0.5
            con.append(f"{k} grew too (+{g}); this bug leaks no {k}")
        else:
            pro.append(f"{k} did not grow along, as this bug predicts")
    specific = 1.0
    if "any" in units:
        # A bug that leaks fds of whatever kind fits every growth, so it cannot be
        # told apart from the application's own leaks by counts: keep it weak.
        specific = 0.3
        con.append("its leak has no kind of its own: growth of any kind fits it")
    return coverage * explained * ratio * companions * specific


def _score_cloexec(bug: KnownBug, obs: Observation, pro: list[str], con: list[str]) -> float:
    if not obs.cloexec_known:
        con.append("close-on-exec flags were not read for every fd (needs fdinfo)")
        return 0.0
    nc = dict(obs.non_cloexec)
    kinds = bug.signature.kinds or ("any",)
    seen = {k: nc.get(k, 0) for k in kinds}
    if not any(seen.values()):
        con.append("every non-stdio fd of " + ", ".join(kinds) + " has O_CLOEXEC")
        return 0.0
    for k, n in seen.items():
        if n:
            pro.append(f"{n} {k} fds without O_CLOEXEC: a spawned child inherits them")
    con.append("the parent alone cannot tell who opened them without O_CLOEXEC")
    # Weak on purpose: fds without O_CLOEXEC are common (inherited stdio pipes,
    # the application's own opens); only a child's fd table or a trace says more.
    return 0.3


def assess(
    bug: KnownBug, obs: Observation, version: Version | None, *, carried: bool | None = None
) -> Candidate:
    """Weigh one bug against an observation (and, when known, the libuv version)."""
    pro: list[str] = []
    con: list[str] = []
    if version is not None:
        is_carried = bug.carried_by(version) if carried is None else carried
        if is_carried:
            pro.append(f"libuv {version} is in the affected range {bug.affected}")
        else:
            con.append(f"libuv {version} is outside the affected range {bug.affected}")
    else:
        is_carried = None
        con.append("libuv version unknown: the affected range was not checked")
    if bug.signature.observable == "counts":
        score = _score_counts(bug, obs, pro, con)
    elif bug.signature.observable == "cloexec":
        score = _score_cloexec(bug, obs, pro, con)
    else:
        score = 0.0
        con.append(
            "fd counts cannot show a double close: a syscall trace shows two close() of one fd"
        )
    if bug.likelihood != "common":
        con.append(f"needs a {bug.likelihood} condition: {bug.signature.per}")
    return Candidate(bug, score, is_carried, tuple(pro), tuple(con))


_LIKELY = {"common": 0, "rare": 1, "theoretical": 2}


def rank(
    obs: Observation,
    version: Version | None,
    *,
    platform: str = "linux",
    bugs: tuple[KnownBug, ...] | None = None,
) -> tuple[Candidate, ...]:
    """The known bugs that can explain `obs` in a process on `platform`, best first.

    Only bugs of `platform` are considered, and, when the version is known, only
    those it carries. Candidates are sorted by signature score, then likelihood.
    """
    pool = load_bugs() if bugs is None else bugs
    out = [
        assess(b, obs, version)
        for b in pool
        if b.applies_to_platform(platform) and (version is None or b.carried_by(version))
    ]
    out.sort(key=lambda c: (-c.score, _LIKELY[c.bug.likelihood], c.bug.id))
    return tuple(out)
