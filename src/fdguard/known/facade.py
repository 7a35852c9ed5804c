"""Answer "which known libuv fd bugs can this process or this version have?" in one call.

`known_for_version` lists what a libuv release carries; `known_for_pid` detects
the process's libuv (fdguard.runtimes), looks at its fds once or twice, and ranks
the carried bugs by how well their signatures fit the growth seen.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fdguard.errors import NoSuchProcess, ToolMissing, UsageError
from fdguard.inspect import snapshot
from fdguard.known.base import KnownBug, carried, lookup_bundled
from fdguard.known.match import Candidate, Observation, observe, observe_history, rank
from fdguard.known.versions import Version, parse_version
from fdguard.procfs.process import DEFAULT_ROOT
from fdguard.store import Store


def _runtimes() -> Any:
    """fdguard.runtimes, imported when a PID is asked about.

    Imported lazily (and untyped) so that version-only questions work in builds
    where runtime detection is absent.
    """
    try:
        return importlib.import_module("fdguard.runtimes")
    except ImportError as err:
        raise ToolMissing(
            "fdguard.runtimes", "libuv detection is unavailable; give the version with --libuv"
        ) from err


def host_platform() -> str:
    """The platform name the base uses for this host ("linux", "mac", "bsd", "win")."""
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "mac"
    if sys.platform.startswith(("freebsd", "openbsd", "netbsd")):
        return "bsd"
    return "win" if sys.platform.startswith("win") else sys.platform


@dataclass(frozen=True, slots=True)
class KnownReport:
    """The known bugs a libuv version carries and, given an observation, the ranked candidates."""

    version: Version | None
    version_source: str
    platform: str
    carried: tuple[KnownBug, ...]
    candidates: tuple[Candidate, ...] = ()
    observation: Observation | None = None
    runtime: dict[str, Any] | None = None
    pid: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def upgrade_to(self) -> Version | None:
        """The first release that fixes every carried bug, None when none is carried."""
        return max((b.fixed_in for b in self.carried), default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "runtime": self.runtime,
            "libuv_version": str(self.version) if self.version is not None else None,
            "version_source": self.version_source,
            "platform": self.platform,
            "carried": [b.to_json() for b in self.carried],
            "upgrade_to": str(self.upgrade_to) if self.upgrade_to is not None else None,
            "observation": self.observation.to_json() if self.observation else None,
            "candidates": [c.to_json() for c in self.candidates],
            "notes": list(self.notes),
        }


def resolve_version(
    *, libuv: str | None = None, node: str | None = None, uvloop: str | None = None
) -> tuple[Version, str]:
    """The libuv version named directly or through a Node.js or uvloop release.

    Raises:
        UsageError: not exactly one given, not a release number, or a runtime
            release whose bundled libuv is not in the base.
    """
    given = [(n, v) for n, v in (("libuv", libuv), ("node", node), ("uvloop", uvloop)) if v]
    if len(given) != 1:
        raise UsageError("give exactly one of --libuv, --node, --uvloop")
    name, text = given[0]
    v = parse_version(text)
    if name == "libuv":
        return v, "given (--libuv)"
    found = lookup_bundled(name, v)
    if found.libuv is None:
        how = "node -p process.versions.uv" if name == "node" else "fdguard explain PID"
        raise UsageError(f"{found.explain()}; give it with --libuv (`{how}` tells)")
    return found.libuv, found.explain()


def known_for_version(version: Version, source: str, *, platform: str | None = None) -> KnownReport:
    """The known bugs `version` carries on `platform` (default: this host's)."""
    plat = platform or host_platform()
    return KnownReport(
        version=version,
        version_source=source,
        platform=plat,
        carried=carried(version, platform=plat),
    )


def known_for_pid(
    pid: int,
    *,
    interval: float = 0.0,
    platform: str | None = None,
    version: Version | None = None,
    root: str = DEFAULT_ROOT,
    sleep: Callable[[float], None] = time.sleep,
) -> KnownReport:
    """Rank the known bugs that may explain what `pid`'s fds show.

    The libuv version comes from `version` when given, else from runtime
    detection. With `interval` > 0, two snapshots that far apart give the growth
    per kind; with 0 only one moment is seen (close-on-exec evidence only).

    Raises:
        NoSuchProcess, AccessDenied: reading the process.
    """
    plat = platform or host_platform()
    runtimes = _runtimes()
    info = runtimes.detect(pid, root=root)
    notes: list[str] = []
    source = "given (--libuv)" if version is not None else ""
    if version is None:
        if info is not None and info.libuv_version:
            version = parse_version(info.libuv_version)
            source = f"detected: {info.source}"
            if info.linkage == "shared":
                # Distributions patch their libuv.so without changing its version
                # (Debian's 1.44.2-1+deb12u1 carries a CVE backport): the range
                # check can list a bug the distribution has already fixed.
                notes.append(
                    f"libuv comes from a shared library ({info.path}): a distribution "
                    "build may carry backported fixes the version does not show"
                )
        elif info is not None:
            source = "unknown"
            notes.append("libuv found but not its version: every bug of this platform is weighed")
        else:
            source = "no libuv found in the process"
            notes.append(
                "no libuv found in this process, so no known libuv bug applies; "
                "if it does run libuv, give its version with --libuv"
            )
    before = snapshot(pid, root=root, fdinfo=True)
    after = None
    if interval > 0:
        sleep(interval)
        after = snapshot(pid, root=root, fdinfo=True, expect=before.process)
    obs = observe(before, after)
    libuv_seen = info is not None or version is not None
    return KnownReport(
        version=version,
        version_source=source,
        platform=plat,
        carried=carried(version, platform=plat) if version is not None else (),
        candidates=rank(obs, version, platform=plat) if libuv_seen else (),
        observation=obs,
        runtime=runtimes.runtime_json(info),
        pid=pid,
        notes=tuple(notes),
    )


def known_from_store(
    store_path: str,
    pid: int,
    *,
    version: Version | None = None,
    platform: str | None = None,
    root: str = DEFAULT_ROOT,
) -> KnownReport:
    """Rank the known bugs against the kind counts the store recorded for `pid`.

    The newest recorded target with that PID is used. The libuv version is
    `version` when given, else detected when the process still runs.

    Raises:
        UsageError: the store holds no target with that PID.
        StoreError: the store cannot be opened.
    """
    plat = platform or host_platform()
    if not os.path.isfile(store_path):
        raise UsageError(f"no store at {store_path}")
    with Store(store_path) as store:
        targets = [t for t in store.targets() if t.ref.pid == pid]
        if not targets:
            raise UsageError(f"the store {store_path} has no record of pid {pid}")
        target = max(targets, key=lambda t: t.last_seen)
        rows = [(k.t, k.dim, k.name, k.n) for k in store.kind_counts(target.id)]
    obs = observe_history(rows)
    notes: list[str] = []
    runtime: dict[str, Any] | None = None
    source = "given (--libuv)" if version is not None else "unknown"
    if version is None:
        try:
            runtimes = _runtimes()
            info = runtimes.detect(pid, root=root)
        except (NoSuchProcess, ToolMissing) as err:
            notes.append(f"libuv version not detected ({err}): give it with --libuv")
        else:
            runtime = runtimes.runtime_json(info)
            if info is not None and info.libuv_version:
                version = parse_version(info.libuv_version)
                source = f"detected: {info.source}"
    return KnownReport(
        version=version,
        version_source=source,
        platform=plat,
        carried=carried(version, platform=plat) if version is not None else (),
        candidates=rank(obs, version, platform=plat),
        observation=obs,
        runtime=runtime,
        pid=pid,
        notes=tuple(notes),
    )
