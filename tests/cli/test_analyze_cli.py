"""`fdguard analyze SERIES.csv`: the real CLI in-process on CSV files written by the test;
JSON contract, exit 10 on a leak, per-kind leaks under a flat total, one-line CSV errors."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fdguard.cli.main import cli
from fdguard.errors import ExitStatus

T0 = 1_700_000_000
CONTRACT = {"leak", "detected_at", "rate_per_hour", "eta_seconds", "confidence"}


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["analyze", *args], input=stdin, catch_exceptions=False)


def write(path: Path, rows: list[str], header: str | None = "timestamp,count") -> Path:
    path.write_text("\n".join(([header] if header else []) + rows) + "\n")
    return path


def series(days: float, level, every: int = 300) -> list[tuple[int, int]]:
    return [(T0 + i, level(i)) for i in range(0, int(days * 86400), every)]


def test_a_slow_leak_exits_10_with_the_contract_json(tmp_path: Path) -> None:
    rng = random.Random(5)
    rows = series(3, lambda s: 300 + s // 1800 + rng.randint(-10, 10))  # 2 fds/hour
    res = run(
        str(write(tmp_path / "s.csv", [f"{t},{c}" for t, c in rows])), "--limit", "1024", "--json"
    )
    assert res.exit_code == ExitStatus.LEAK_FOUND == 10
    doc = json.loads(res.stdout)
    assert doc.keys() >= CONTRACT
    assert doc["leak"] is True
    # Causal: not before one day of history, and before the end of the file (the
    # limit two weeks away, after a day of patience: the detector's step 7).
    assert T0 + 86400 + 20 * 3600 <= doc["detected_at"] <= T0 + 2.5 * 86400
    assert doc["rate_per_hour"] == pytest.approx(2.0, rel=0.2)
    level = 300 + 3 * 48 + 10
    assert doc["eta_seconds"] == pytest.approx((1024 - level) / 2 * 3600, rel=0.15)
    assert 0 < doc["confidence"] <= 1
    assert doc["kind"] is None
    assert res.stderr == ""


def test_a_healthy_daily_cycle_exits_0(tmp_path: Path) -> None:
    import math

    rng = random.Random(6)
    rows = series(
        4, lambda s: round(400 + 300 * math.sin(s / 86400 * 2 * math.pi) + rng.gauss(0, 15))
    )
    res = run(
        str(write(tmp_path / "d.csv", [f"{t},{c}" for t, c in rows])), "--limit", "4096", "--json"
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["leak"] is False
    assert doc["detected_at"] is None
    assert doc["eta_seconds"] is None


def test_a_close_wait_leak_under_a_flat_total_is_found_per_kind(tmp_path: Path) -> None:
    rng = random.Random(7)
    rows = []
    for i, (t, _) in enumerate(series(3, lambda s: 0)):
        close_wait = 4 + i // 12  # one more CLOSE-WAIT socket an hour...
        estab = 500 - i // 12 + rng.randint(-25, 25)  # ...while other sockets drift down
        rows.append(f"{t},{close_wait + estab + 40},{estab},{close_wait}")
    path = write(tmp_path / "k.csv", rows, header="timestamp,count,estab,close_wait")
    res = run(str(path), "--limit", "1024", "--json")
    assert res.exit_code == 10, res.output
    doc = json.loads(res.stdout)
    assert doc["leak"] is True
    assert doc["kind"] == "close_wait"
    assert doc["by_kind"]["close_wait"]["leak"] is True
    assert doc["by_kind"]["estab"]["leak"] is False
    # The ETA is against the headroom the whole process has left.
    assert doc["eta_seconds"] < doc["by_kind"]["close_wait"]["eta_seconds"]
    human = run(str(path), "--limit", "1024")
    assert human.exit_code == 10
    assert "LEAK of close_wait fds" in human.stdout


def test_iso_timestamps_no_header_and_stdin(tmp_path: Path) -> None:
    rows = series(2.5, lambda s: 100 + s // 600)  # 6 fds/hour, no noise
    iso = [f"{datetime.fromtimestamp(t, tz=UTC).isoformat()},{c}" for t, c in rows]
    by_iso = run(str(write(tmp_path / "iso.csv", iso, header=None)), "--json")
    plain = run("-", "--json", stdin="\n".join(f"{t},{c}" for t, c in rows))
    assert by_iso.exit_code == plain.exit_code == 10
    a, b = json.loads(by_iso.stdout), json.loads(plain.stdout)
    assert a["detected_at"] == b["detected_at"]
    assert a["eta_seconds"] is None  # no --limit, no ETA
    assert a["rate_per_hour"] == pytest.approx(6.0, rel=0.05)


def test_period_option_judges_short_series(tmp_path: Path) -> None:
    rows = series(0.5, lambda s: 50 + s // 120, every=60)  # 12 hours, 30 fds/hour
    path = write(tmp_path / "short.csv", [f"{t},{c}" for t, c in rows])
    early = run(str(path), "--json")
    assert early.exit_code == 0  # a day is needed by default
    doc = json.loads(early.stdout)
    assert doc["leak"] is False
    assert 12 * 3600 <= doc["warmup_left"] <= 12 * 3600 + 300  # (to within a bucket)
    res = run(str(path), "--json", "--period", "2")
    assert res.exit_code == 10
    assert json.loads(res.stdout)["detected_at"] < T0 + 6 * 3600
    assert json.loads(res.stdout)["warmup_left"] is None


def test_a_series_shorter_than_a_period_says_it_is_too_early(tmp_path: Path) -> None:
    rows = series(0.5, lambda s: 50 + s // 120, every=60)  # 12 hours, 30 fds/hour
    path = write(tmp_path / "short.csv", [f"{t},{c}" for t, c in rows])
    res = run(str(path), "--limit", "4096")
    assert res.exit_code == 0
    head = res.stdout.splitlines()[0]
    assert head.startswith("too early to tell: 12.1 h")
    assert "h more history needed" in head
    assert "no leak" not in res.stdout
    # With a period that fits, the same rise is judged; held, before it is a leak.
    held = run(str(write(tmp_path / "held.csv", [f"{t},{c}" for t, c in rows[:200]])),
               "--limit", "100000", "--period", "1")
    assert held.exit_code == 0
    assert held.stdout.splitlines()[0] == "no leak yet: a rise is being confirmed"


@pytest.mark.parametrize(
    ("content", "line", "what"),
    [
        ("timestamp,count\n1,2\n2,x\n", 3, "count 'x'"),
        ("timestamp,count\n1,2\nyesterday,3\n", 3, "timestamp 'yesterday'"),
        ("timestamp,count,tcp\n1,2,1\n2,3\n", 3, "expected 3 columns"),
        ("timestamp,count\n5,2\n4,3\n", 3, "goes back in time"),
        ("timestamp,count\n1,-4\n", 2, "count '-4'"),
        ("1,2\n2,nan\n", 2, "count 'nan'"),
    ],
)
def test_bad_csv_is_one_line_naming_the_line(
    tmp_path: Path, content: str, line: int, what: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    res = run(str(path), "--json")
    assert res.exit_code == ExitStatus.USAGE == 2
    assert res.stdout == ""
    err = res.stderr.strip()
    assert "\n" not in err
    assert f"bad.csv:{line}:" in err
    assert what in err


def test_missing_or_empty_file_is_a_usage_error(tmp_path: Path) -> None:
    res = run(str(tmp_path / "nope.csv"))
    assert res.exit_code == 2
    assert "cannot read" in res.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,count\n")
    res = run(str(empty))
    assert res.exit_code == 2
    assert "no samples" in res.stderr


def test_help_documents_the_exit_statuses() -> None:
    res = CliRunner().invoke(cli, ["analyze", "--help"])
    assert res.exit_code == 0
    assert "10  a leak was found" in res.stdout
    assert "2   unusable input" in res.stdout
    assert "timestamp,count" in res.stdout


def _answer(*series: tuple[dict[str, str], list[tuple[int, int]]]) -> str:
    """A saved /api/v1/query_range answer (values are strings, as Prometheus sends them)."""
    result = [{"metric": m, "values": [[t, str(v)] for t, v in s]} for m, s in series]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})


def test_a_saved_prometheus_answer_is_judged_per_series_with_its_limits(tmp_path: Path) -> None:
    leak = series(4, lambda i: 200 + (i // 3600 if i > 86400 else 0) * 3)  # 3/h from day 1
    flat = series(4, lambda i: 150 + (i // 300) % 7)
    limit = [(t, 2048) for t, _ in flat[::12]]
    path = tmp_path / "fleet.json"
    path.write_text(_answer(
        ({"__name__": "process_open_fds", "pid": "1"}, flat),
        ({"__name__": "process_open_fds", "pid": "2"}, leak),
        ({"__name__": "process_max_fds", "pid": "2"}, limit),
    ))
    res = run(str(path), "--json")
    assert res.exit_code == 10, res.output
    doc = json.loads(res.stdout)
    assert doc.keys() >= CONTRACT
    assert doc["labels"] == {"__name__": "process_open_fds", "pid": "2"}
    assert doc["leak"] is True
    by_pid = {s["labels"]["pid"]: s for s in doc["series"]}
    assert set(by_pid) == {"1", "2"}  # the limit series is no series of counts
    assert by_pid["2"]["limit"] == 2048
    assert by_pid["1"]["limit"] is None  # no process_max_fds{pid="1"} in the answer
    assert by_pid["1"]["leak"] is False
    assert abs(by_pid["2"]["rate_per_hour"] - 3) < 0.5
    # Over worker processes, the same verdicts.
    apart = run(str(path), "--json", "--jobs", "2")
    assert json.loads(apart.stdout)["series"] == doc["series"]
    assert json.loads(run(str(path), "--json", "--jobs", "1").stdout)["series"] == doc["series"]
    # --limit stands for every series' limit.
    res = run(str(path), "--json", "--limit", "4096")
    assert {s["limit"] for s in json.loads(res.stdout)["series"]} == {4096}
    human = run(str(path))
    lines = human.stdout.splitlines()
    assert lines[0].startswith(f"2 series from {path} (")
    assert lines[1].startswith('process_open_fds{pid="2"}: LEAK, detected at ')
    assert "soft limit 2048 in" in lines[1]
    assert lines[3] == 'process_open_fds{pid="1"}: no leak found'


@pytest.mark.parametrize(
    ("args", "what"),
    [
        ((), "give a SERIES file (CSV, or a saved Prometheus range query as JSON)"),
        (("x.csv", "--prometheus", "http://127.0.0.1:9"), "either a SERIES file or --prometheus"),
        (("x.csv", "--query", "up"), "--query needs --prometheus URL"),
        (("x.csv", "--since", "2d"), "--since needs --prometheus URL"),
        (("--prometheus", "ftp://127.0.0.1:9"), "--prometheus must be an http(s) URL"),
        (("--prometheus", "http://127.0.0.1:9", "--since", "a week"), "not a duration: 'a week'"),
    ],
)
def test_bad_prometheus_options_are_one_line_usage_errors(args: tuple[str, ...], what: str) -> None:
    res = run(*args)
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert "\n" not in err
    assert what in err


def test_an_instant_query_saved_instead_of_a_range_says_so(tmp_path: Path) -> None:
    path = tmp_path / "vector.json"
    path.write_text(json.dumps({"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {}, "value": [T0, "3"]}]}}))
    res = run(str(path))
    assert res.exit_code == 2
    assert "the result is a vector, not a range of samples" in res.stderr
