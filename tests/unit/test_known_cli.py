"""`fdguard known` run in-process through click's CliRunner (versions only; PIDs in integration)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fdguard.cli.main import cli
from fdguard.known.base import parse_bundles


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["known", *args])
    return res.exit_code, res.output


def test_libuv_version_lists_what_it_carries() -> None:
    code, out = _run("--libuv", "1.44.2")
    assert code == 0, out
    assert "loop-init-epoll-leak" in out
    assert "1.51.0 or later fixes all of them" in out
    assert "without eventfd, pipe" in out


def test_json_names_sources_and_the_upgrade() -> None:
    code, out = _run("--libuv", "v1.46.0", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["libuv_version"] == "1.46.0"
    assert doc["upgrade_to"] == "1.52.0"
    ids = {b["id"] for b in doc["carried"]}
    assert ids == {
        "loop-init-epoll-leak",
        "loop-init-signal-pipe-leak",
        "scm-rights-error-path-leak",
    }
    for b in doc["carried"]:
        assert len(b["source"]["commit"]) == 40
        assert b["verified"]


def test_node_and_uvloop_releases_map_to_their_libuv() -> None:
    code, out = _run("--node", "22.20.0", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["libuv_version"] == "1.51.0"
    assert [b["id"] for b in doc["carried"]] == ["loop-init-signal-pipe-leak"]
    code, out = _run("--uvloop", "0.23.0")
    assert code == 0, out
    assert "carries none of the known fd bugs" in out


def test_unknown_runtime_release_is_a_usage_error_not_a_guess() -> None:
    code, out = _run("--node", "16.0.0")
    assert code == 2
    assert "not in fdguard's base" in out


def test_bad_and_missing_arguments_are_usage_errors() -> None:
    assert _run()[0] == 2
    assert _run("--libuv", "latest")[0] == 2
    assert _run("--libuv", "1.44.2", "--node", "20.20.2")[0] == 2


def test_other_platform_bugs_show_only_on_that_platform() -> None:
    code, out = _run("--libuv", "1.11.0", "--platform", "win", "--json")
    assert code == 0, out
    ids = {b["id"] for b in json.loads(out)["carried"]}
    assert "win-pipe-thread-handle-inheritable" in ids
    assert "loop-init-epoll-leak" not in ids


def test_all_lists_the_whole_base() -> None:
    code, out = _run("--all", "--json")
    assert code == 0, out
    bugs = json.loads(out)["bugs"]
    assert len(bugs) >= 25


def test_node_release_between_recorded_ones_is_inferred_and_says_so() -> None:
    code, out = _run("--node", "20.15.0")
    assert code == 0, out
    assert "libuv 1.46.0 on" in out
    assert "inferred (not read for this release)" in out
    assert "20.13.0 and 20.18.0" in out
    code, out = _run("--node", "22.19.0", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["libuv_version"] == "1.51.0"
    assert "inferred" in doc["version_source"]
    code, out = _run("--node", "22.20.0", "--json")
    assert "inferred" not in json.loads(out)["version_source"]


def test_node_release_formerly_in_a_gap_now_maps() -> None:
    # 20.5.0 lay between 20.0.0 (1.44.2) and 20.13.0 (1.46.0); 20.4.0 is now pinned.
    code, out = _run("--node", "20.5.0", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["libuv_version"] == "1.46.0"
    assert "20.4.0 and 20.7.0" in doc["version_source"]


def test_node_release_across_an_unrecorded_upgrade_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The shipped table has no such gap in 18..24 any more: use a table with one.
    rows = parse_bundles(
        b'[[node]]\nreleases = ["30.1.0"]\nlibuv = "1.60.0"\nsource = "a"\n'
        b'[[node]]\nreleases = ["30.5.0"]\nlibuv = "1.61.0"\nsource = "b"\n'
    )
    monkeypatch.setattr("fdguard.known.base.load_bundles", lambda: rows)
    code, out = _run("--node", "30.3.0")
    assert code == 2
    assert "30.1.0 (libuv 1.60.0)" in out
    assert "30.5.0 (libuv 1.61.0)" in out
