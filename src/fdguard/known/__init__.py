"""The curated base of known libuv fd-leak fixes, and the matcher that ranks them.

Re-exports only: `base` loads the shipped TOML base and the runtime -> bundled
libuv map, `versions` holds the version-range logic, `match` turns snapshots into
observations and ranks candidate bugs, `facade` puts them together for a PID or a
version.
"""

from fdguard.known.base import (
    Bundle,
    BundleLookup,
    KnownBug,
    bundled_libuv,
    carried,
    load_bugs,
    load_bundles,
    lookup_bundled,
)
from fdguard.known.facade import (
    KnownReport,
    known_for_pid,
    known_for_version,
    known_from_store,
    resolve_version,
)
from fdguard.known.match import (
    Candidate,
    Observation,
    assess,
    observe,
    observe_counts,
    observe_history,
    rank,
)
from fdguard.known.versions import Version, VersionRange, parse_version

__all__ = [
    "Bundle",
    "BundleLookup",
    "Candidate",
    "KnownBug",
    "KnownReport",
    "Observation",
    "Version",
    "VersionRange",
    "assess",
    "bundled_libuv",
    "carried",
    "known_for_pid",
    "known_for_version",
    "known_from_store",
    "load_bugs",
    "load_bundles",
    "lookup_bundled",
    "observe",
    "observe_counts",
    "observe_history",
    "parse_version",
    "rank",
    "resolve_version",
]
