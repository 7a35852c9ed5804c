"""Version parsing and the affected-range logic of the known-bug base."""

from __future__ import annotations

import pytest

from fdguard.errors import UsageError
from fdguard.known import carried, load_bugs, parse_version
from fdguard.known.versions import Version, VersionRange, version_from_hex


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1.44.2", Version(1, 44, 2)),
        ("v1.46.0", Version(1, 46, 0)),
        ("1.46.0-dev", Version(1, 46, 0)),
        ("1.44", Version(1, 44, 0)),
        (" 0.10.18 ", Version(0, 10, 18)),
    ],
)
def test_parse_version(text: str, want: Version) -> None:
    assert parse_version(text) == want


@pytest.mark.parametrize("text", ["", "one.two", "1", "latest", "1.x.2"])
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_version(text)


def test_ordering_is_numeric_not_lexical() -> None:
    assert parse_version("1.9.1") < parse_version("1.10.0")
    assert parse_version("1.44.2") < parse_version("1.45.0")
    assert sorted([parse_version(v) for v in ["1.46.0", "1.5.0", "1.44.2"]]) == [
        Version(1, 5, 0),
        Version(1, 44, 2),
        Version(1, 46, 0),
    ]


def test_version_from_uv_version_hex() -> None:
    # uvloop 0.23.0's libuv_get_version() returns uv_version(): 1 << 16 | 52 << 8 | 1.
    assert version_from_hex(78849) == Version(1, 52, 1)


def test_range_bounds_first_inclusive_fixed_exclusive() -> None:
    r = VersionRange(Version(1, 45, 0), Version(1, 52, 0))
    assert not r.contains(Version(1, 44, 2))
    assert r.contains(Version(1, 45, 0))
    assert r.contains(Version(1, 51, 9))
    assert not r.contains(Version(1, 52, 0))
    assert not r.contains(Version(1, 52, 1))


def test_unknown_start_means_every_earlier_release() -> None:
    r = VersionRange(None, Version(1, 51, 0))
    assert r.contains(Version(0, 10, 0))
    assert r.contains(Version(1, 50, 0))
    assert not r.contains(Version(1, 51, 0))
    assert "unknown" in str(r)


def _ids(version: str, platform: str | None = "linux") -> set[str]:
    return {b.id for b in carried(parse_version(version), platform=platform)}


def test_debian_bookworm_libuv_carries_the_loop_init_epoll_leak() -> None:
    # 1.44.2 (Debian 12's libuv1) is before the fix in 1.51.0 and the tcp autobind
    # double close fixed in 1.45.0 is z/OS-only, so it is not listed on linux.
    ids = _ids("1.44.2")
    assert "loop-init-epoll-leak" in ids
    assert "scm-rights-error-path-leak" in ids
    assert "tcp-autobind-error-double-close" not in ids
    assert "tcp-autobind-error-double-close" in _ids("1.44.2", platform=None)


def test_range_with_known_start_excludes_older_releases() -> None:
    assert "loop-init-signal-pipe-leak" not in _ids("1.44.2")
    assert "loop-init-signal-pipe-leak" in _ids("1.46.0")
    assert "loop-init-signal-pipe-leak" not in _ids("1.52.0")


def test_newest_releases_carry_nothing_known() -> None:
    assert _ids("1.52.1") == set()


def test_old_release_carries_the_old_fixes() -> None:
    ids = _ids("1.34.2")
    assert {"make-pipe-cloexec-failure-leak", "make-socketpair-cloexec-failure-leak"} <= ids
    assert "cpu-info-proc-stat-leak" not in ids  # only 1.9.0 had it


def test_carried_is_monotonic_in_the_fix() -> None:
    for bug in load_bugs():
        assert not bug.carried_by(bug.fixed_in), bug.id
        before = Version(bug.fixed_in.major, bug.fixed_in.minor, 0)
        if before < bug.fixed_in and (bug.affected.first is None or before >= bug.affected.first):
            assert bug.carried_by(before), bug.id
