"""Parse libuv/Node/uvloop release numbers and decide whether a version lies in a range.

libuv has kept one release line since 1.0 and does not backport to older minors,
so "carried" is a plain interval: affected_from <= v < fixed_in. Versions before
1.0 (two parallel 0.10/0.11 branches) are ordered by number only; that is
approximate and only matters for releases nobody runs any more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from fdguard.errors import UsageError

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-.+].*)?$")


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    """A release number major.minor.patch; suffixes such as "-dev" are ignored."""

    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()


def parse_version(text: str) -> Version:
    """Parse "1.44.2", "v1.44.2", "1.46.0-dev" or "1.44" into a Version.

    Raises:
        UsageError: the text is not a release number.
    """
    m = _VERSION.match(text.strip())
    if m is None:
        raise UsageError(f"not a release number: {text!r} (expected e.g. 1.44.2)")
    return Version(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def version_from_hex(value: int) -> Version:
    """A libuv version from uv_version()'s packed form (major << 16 | minor << 8 | patch)."""
    return Version((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF)


@dataclass(frozen=True, slots=True)
class VersionRange:
    """Releases [first, fixed): `first` None means "unknown, assume every earlier release"."""

    first: Version | None
    fixed: Version

    def contains(self, v: Version) -> bool:
        if v >= self.fixed:
            return False
        return self.first is None or v >= self.first

    def __str__(self) -> str:
        start = str(self.first) if self.first is not None else "earliest (introduction unknown)"
        return f"{start} <= v < {self.fixed}"
