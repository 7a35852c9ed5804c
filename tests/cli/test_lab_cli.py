"""`fdguard lab` through the real CLI in-process: list, run (exit 10 on a leak), build (cache
hits), bisect across libuvs, repro; against Debian's libuv 1.44.2 and uvloop's 1.52.1."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fdguard.cli.main import cli
from tests.lab_fake import write_fake_libuv


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["lab", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_list_json_names_each_scenario_with_api_path_and_reproducer_flag() -> None:
    code, out = _invoke("list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["loop-init-emfile"]["api"] == "loop"
    assert rows["loop-init-emfile"]["path"] == "error"
    assert rows["loop-init-emfile"]["c_reproducer"] is True
    assert rows["fs-scandir"]["c_reproducer"] is True
    assert rows["node-worker-churn"]["c_reproducer"] is False  # a runtime scenario


def test_run_exits_10_on_a_leak_and_reports_both_libuvs() -> None:
    code, out = _invoke("run", "loop-init-emfile", "--libuv", "system", "--libuv", "uvloop",
                        "-n", "4", "--json")
    assert code == 10
    results = {r["version"]: r for r in json.loads(out)}
    assert results["1.44.2"]["verdict"] == "leak"
    assert results["1.44.2"]["growth_by_kind"] == {"epoll": 3}
    assert results["1.44.2"]["deltas"] == [0, 1, 2, 3]
    assert results["1.52.1"]["verdict"] == "no-leak"


def test_run_clean_scenario_exits_0_and_prints_counts() -> None:
    code, out = _invoke("run", "tcp-bind-in-use", "--libuv", "uvloop", "-n", "3")
    assert code == 0
    assert "no-leak" in out
    assert "EADDRINUSE" in out
    assert "fds per iteration" in out


def test_run_unknown_scenario_or_libuv_is_a_usage_error() -> None:
    assert _invoke("run", "no-such-scenario")[0] == 2
    assert _invoke("run", "loop-churn", "--libuv", "9.9.9")[0] == 2


def test_build_twice_is_a_cache_hit(tmp_path: Path) -> None:
    root = write_fake_libuv(tmp_path / "uv", leaky=False, minor=98)
    args = ("build", str(root), "--cache-dir", str(tmp_path / "cache"), "--json")
    code, out = _invoke(*args)
    assert code == 0
    (first,) = json.loads(out)
    code, out = _invoke(*args)
    (second,) = json.loads(out)
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["version"] == "1.98.0"
    assert Path(first["library"]).is_file()
    # The cached build is now addressable by version.
    code, out = _invoke("run", "loop-churn", "--libuv", "1.98.0", "--cache-dir",
                        str(tmp_path / "cache"), "-n", "3", "--json")
    assert code == 0
    assert json.loads(out)[0]["version"] == "1.98.0"


def test_build_of_something_that_is_not_libuv_fails_cleanly(tmp_path: Path) -> None:
    code, out = _invoke("build", str(tmp_path), "--cache-dir", str(tmp_path / "cache"))
    assert code == 1
    assert "no libuv source tree" in out


def test_bisect_across_two_libuvs_names_the_transition() -> None:
    code, out = _invoke("bisect", "loop-init-emfile", "--libuv", "uvloop", "--libuv", "system",
                        "-n", "3", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["transitions"] == [{"before": "1.44.2", "before_verdict": "leak",
                                    "after": "1.52.1", "after_verdict": "no-leak"}]


def test_repro_writes_source_and_build_script(tmp_path: Path) -> None:
    code, out = _invoke("repro", "tcp-connect-refused", "--out", str(tmp_path))
    assert code == 0
    assert (tmp_path / "repro.c").is_file()
    assert "cc -O0 -g -Wall -o repro repro.c -ldl" in (tmp_path / "build.sh").read_text()
    assert "./repro /path/to/libuv.so" in out
    assert _invoke("repro", "node-worker-churn", "--out", str(tmp_path / "x"))[0] == 2
