"""Load the curated base of known libuv fd bugs and the runtime -> bundled-libuv map.

The base is a TOML file shipped in the package (libuv_fd_bugs.toml), parsed once
into frozen dataclasses and validated: a broken entry is a packaging bug, so it
raises KnownBaseError instead of being skipped silently.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fdguard.errors import KnownBaseError, UsageError
from fdguard.known.versions import Version, VersionRange, parse_version
from fdguard.model import FdKind, TcpState

CLASSES = ("table-grows", "leaks-into-children", "double-close")
PLATFORMS = ("linux", "unix", "mac", "bsd", "zos", "win")
LIKELIHOODS = ("common", "rare", "theoretical")
OBSERVABLE = ("counts", "cloexec", "trace")

# Platforms whose bugs can happen in a process on each host platform: "unix" bugs
# live in libuv's shared src/unix code and apply everywhere but Windows.
_APPLIES_ON: dict[str, frozenset[str]] = {
    "linux": frozenset({"linux", "unix"}),
    "mac": frozenset({"mac", "unix"}),
    "bsd": frozenset({"bsd", "unix"}),
    "win": frozenset({"win"}),
}


@dataclass(frozen=True, slots=True)
class Signature:
    """What a bug looks like from outside: fds of which kinds grow, per which operation."""

    grows: tuple[tuple[str, int], ...]
    per: str
    not_with: tuple[str, ...]
    observable: str

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.grows)


@dataclass(frozen=True, slots=True)
class Source:
    """Where the facts of an entry come from."""

    commit: str
    subject: str
    date: str
    pr: int | None = None
    issue: int | None = None
    issue_url: str | None = None
    refs: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"commit": self.commit, "subject": self.subject, "date": self.date}
        for name in ("pr", "issue", "issue_url", "refs"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class KnownBug:
    """One known libuv fd bug with its fix, range, platforms and signature."""

    id: str
    title: str
    bug_class: str
    platforms: tuple[str, ...]
    api: str
    code_path: str
    likelihood: str
    affected: VersionRange
    introduced_by: str | None
    signature: Signature
    lab_scenario: str | None
    source: Source
    verified: str

    @property
    def fixed_in(self) -> Version:
        return self.affected.fixed

    def applies_to_platform(self, platform: str) -> bool:
        return bool(_APPLIES_ON.get(platform, frozenset()) & set(self.platforms))

    def carried_by(self, version: Version) -> bool:
        return self.affected.contains(version)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "class": self.bug_class,
            "platforms": list(self.platforms),
            "api": self.api,
            "code_path": self.code_path,
            "likelihood": self.likelihood,
            "affected_from": str(self.affected.first) if self.affected.first else None,
            "fixed_in": str(self.affected.fixed),
            "introduced_by": self.introduced_by,
            "signature": {
                "grows": dict(self.signature.grows),
                "per": self.signature.per,
                "not_with": list(self.signature.not_with),
                "observable": self.signature.observable,
            },
            "lab_scenario": self.lab_scenario,
            "source": self.source.to_json(),
            "verified": self.verified,
        }


@dataclass(frozen=True, slots=True)
class Bundle:
    """Releases of a runtime (node or uvloop) that all carry one libuv version."""

    runtime: str
    releases: tuple[Version, ...]
    libuv: Version
    source: str


def is_kind_key(key: str) -> bool:
    """True for the kind keys a signature may use: FdKind values, "tcp:STATE", "any"."""
    if key == "any":
        return True
    if ":" in key:
        kind, _, state = key.partition(":")
        return kind in ("tcp", "tcp6") and state in {s.value for s in TcpState}
    return key in {k.value for k in FdKind}


def _need(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry or entry[key] in ("", None):
        raise KnownBaseError(f"{where}: missing {key!r}")
    return entry[key]


def _version(text: str, where: str) -> Version:
    try:
        return parse_version(text)
    except UsageError as err:
        raise KnownBaseError(f"{where}: {err}") from err


def parse_bug(entry: dict[str, Any]) -> KnownBug:
    """Validate one [[bug]] table and build a KnownBug.

    Raises:
        KnownBaseError: a field is missing or has a value outside its vocabulary.
    """
    where = f"bug {entry.get('id', '?')!r}"
    bug_class = _need(entry, "class", where)
    if bug_class not in CLASSES:
        raise KnownBaseError(f"{where}: class {bug_class!r} not in {CLASSES}")
    platforms = tuple(_need(entry, "platforms", where))
    bad = [p for p in platforms if p not in PLATFORMS]
    if bad:
        raise KnownBaseError(f"{where}: unknown platforms {bad}")
    likelihood = _need(entry, "likelihood", where)
    if likelihood not in LIKELIHOODS:
        raise KnownBaseError(f"{where}: likelihood {likelihood!r} not in {LIKELIHOODS}")
    fixed = _version(_need(entry, "fixed_in", where), where)
    first_text = _need(entry, "affected_from", where)
    first = None if first_text == "unknown" else _version(first_text, where)
    if first is not None and first >= fixed:
        raise KnownBaseError(f"{where}: affected_from {first} is not before fixed_in {fixed}")
    sig = _need(entry, "signature", where)
    grows = sig.get("grows", {})
    for key, n in grows.items():
        if not is_kind_key(key) or not isinstance(n, int) or n <= 0:
            raise KnownBaseError(f"{where}: bad signature.grows entry {key!r} = {n!r}")
    not_with = tuple(sig.get("not_with", ()))
    for key in not_with:
        if not is_kind_key(key):
            raise KnownBaseError(f"{where}: bad signature.not_with kind {key!r}")
    observable = sig.get("observable")
    if observable not in OBSERVABLE:
        raise KnownBaseError(f"{where}: signature.observable {observable!r} not in {OBSERVABLE}")
    if observable == "counts" and not grows:
        raise KnownBaseError(f"{where}: a counts signature needs signature.grows")
    src = _need(entry, "source", where)
    commit = _need(src, "commit", where)
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
        raise KnownBaseError(f"{where}: source.commit must be a full 40-hex hash")
    return KnownBug(
        id=_need(entry, "id", where),
        title=_need(entry, "title", where),
        bug_class=bug_class,
        platforms=platforms,
        api=_need(entry, "api", where),
        code_path=_need(entry, "code_path", where),
        likelihood=likelihood,
        affected=VersionRange(first, fixed),
        introduced_by=entry.get("introduced_by") or None,
        signature=Signature(
            grows=tuple(sorted(grows.items())),
            per=_need(sig, "per", where),
            not_with=not_with,
            observable=observable,
        ),
        lab_scenario=entry.get("lab_scenario") or None,
        source=Source(
            commit=commit,
            subject=_need(src, "subject", where),
            date=_need(src, "date", where),
            pr=src.get("pr"),
            issue=src.get("issue"),
            issue_url=src.get("issue_url"),
            refs=src.get("refs"),
        ),
        verified=_need(entry, "verified", where),
    )


def parse_bugs(data: bytes) -> tuple[KnownBug, ...]:
    """Parse the text of a libuv_fd_bugs.toml file.

    Raises:
        KnownBaseError: not TOML, an invalid entry, or two entries with one id.
    """
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise KnownBaseError(f"libuv_fd_bugs.toml: {err}") from err
    bugs = tuple(parse_bug(e) for e in doc.get("bug", []))
    ids = [b.id for b in bugs]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise KnownBaseError(f"libuv_fd_bugs.toml: duplicate ids {sorted(dup)}")
    return bugs


def parse_bundles(data: bytes) -> tuple[Bundle, ...]:
    """Parse the text of a bundled_libuv.toml file.

    Raises:
        KnownBaseError: not TOML, or a row without releases, libuv version or source.
    """
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise KnownBaseError(f"bundled_libuv.toml: {err}") from err
    out: list[Bundle] = []
    for runtime in ("node", "uvloop"):
        for row in doc.get(runtime, []):
            where = f"{runtime} row {row.get('releases')}"
            out.append(
                Bundle(
                    runtime=runtime,
                    releases=tuple(_version(r, where) for r in _need(row, "releases", where)),
                    libuv=_version(_need(row, "libuv", where), where),
                    source=_need(row, "source", where),
                )
            )
    return tuple(out)


@cache
def load_bugs() -> tuple[KnownBug, ...]:
    """The known bugs shipped with fdguard (parsed once per process)."""
    data = resources.files("fdguard.known").joinpath("libuv_fd_bugs.toml").read_bytes()
    return parse_bugs(data)


@cache
def load_bundles() -> tuple[Bundle, ...]:
    """The Node.js/uvloop release -> bundled libuv rows shipped with fdguard."""
    data = resources.files("fdguard.known").joinpath("bundled_libuv.toml").read_bytes()
    return parse_bundles(data)


def bundled_libuv(runtime: str, release: Version) -> Bundle | None:
    """The row saying which libuv `runtime` ("node" or "uvloop") `release` bundles, if known."""
    for row in load_bundles():
        if row.runtime == runtime and release in row.releases:
            return row
    return None


# Runtimes whose unrecorded releases may be inferred from recorded neighbours. A
# Node.js major is one release line whose bundled libuv only moves forward, so a
# release between two recorded ones with the same libuv carries that libuv too.
# uvloop's table lists every release tag, so a release missing from it is not a
# release: it stays exact.
_INFER_WITHIN_MAJOR = frozenset({"node"})


@dataclass(frozen=True, slots=True)
class BundleLookup:
    """Which libuv a runtime release carries: read for that release, inferred, or unknown.

    `below`/`above` are the nearest recorded releases of the same major on each
    side (equal to `release` when it is recorded itself). `libuv` is None when
    the base cannot say.
    """

    runtime: str
    release: Version
    libuv: Version | None
    how: str  # "recorded", "inferred", "inferred-newest" or "unknown"
    below: tuple[Version, Bundle] | None
    above: tuple[Version, Bundle] | None

    @property
    def inferred(self) -> bool:
        return self.how in ("inferred", "inferred-newest")

    def explain(self) -> str:
        """One sentence saying where the answer (or the lack of one) comes from."""
        name = f"{self.runtime} {self.release}"
        if self.how == "recorded" and self.below is not None:
            return f"{name} bundles libuv {self.libuv} ({self.below[1].source})"
        if self.how == "inferred" and self.below is not None and self.above is not None:
            return (
                f"{name} bundles libuv {self.libuv}, inferred (not read for this release): "
                f"the recorded {self.below[0]} and {self.above[0]} of this line both carry it "
                f"({self.below[1].source}; {self.above[1].source})"
            )
        if self.how == "inferred-newest" and self.below is not None:
            return (
                f"{name} bundles libuv {self.libuv}, inferred (not read for this release): "
                f"it is newer than {self.below[0]}, the newest recorded release of this line, "
                f"which carries it ({self.below[1].source}); a later release may have "
                "upgraded libuv"
            )
        if self.below is not None and self.above is not None:
            return (
                f"which libuv {name} bundles is not in fdguard's base: it lies between "
                f"{self.below[0]} (libuv {self.below[1].libuv}) and {self.above[0]} "
                f"(libuv {self.above[1].libuv}), and the release that upgraded is not recorded"
            )
        return f"which libuv {name} bundles is not in fdguard's base"


def lookup_bundled(runtime: str, release: Version) -> BundleLookup:
    """Which libuv `runtime` `release` bundles, inferring within a Node.js major.

    Recorded: the release is in the table. Inferred: an unrecorded Node.js release
    whose nearest recorded releases of the same major on both sides carry one
    libuv, or one newer than every recorded release of its major (that newest
    release's libuv; "inferred-newest", since a later release may have upgraded).
    Unknown otherwise: below the oldest recorded release of its major, between
    two that carry different libuv versions, or a major with nothing recorded.
    """
    rows = [(r, row) for row in load_bundles() if row.runtime == runtime for r in row.releases]
    exact = next(((r, row) for r, row in rows if r == release), None)
    if exact is not None:
        return BundleLookup(runtime, release, exact[1].libuv, "recorded", exact, exact)
    if runtime not in _INFER_WITHIN_MAJOR:
        return BundleLookup(runtime, release, None, "unknown", None, None)
    line = sorted((p for p in rows if p[0].major == release.major), key=lambda p: p[0])
    below = next((p for p in reversed(line) if p[0] < release), None)
    above = next((p for p in line if p[0] > release), None)
    if below is not None and above is None:
        return BundleLookup(runtime, release, below[1].libuv, "inferred-newest", below, None)
    if below is not None and above is not None and below[1].libuv == above[1].libuv:
        return BundleLookup(runtime, release, below[1].libuv, "inferred", below, above)
    return BundleLookup(runtime, release, None, "unknown", below, above)


def carried(
    version: Version, *, platform: str | None = "linux", bugs: tuple[KnownBug, ...] | None = None
) -> tuple[KnownBug, ...]:
    """The known bugs that `version` of libuv carries, on `platform` (None: every platform)."""
    pool = load_bugs() if bugs is None else bugs
    return tuple(
        b
        for b in pool
        if b.carried_by(version) and (platform is None or b.applies_to_platform(platform))
    )
