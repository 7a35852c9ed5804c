"""`fdguard analyze --prometheus`: six days of a fleet's `process_open_fds` history, backfilled
into a real Prometheus with `promtool tsdb create-blocks-from openmetrics`, judged at once:
the leaking process is found with its rate and its own limit (`process_max_fds`), the
healthy one is not; the same answer saved as JSON (by the API or by `promtool query
range -o json`) gives the same verdicts offline."""

from __future__ import annotations

import base64
import json
import math
import random
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fdguard.cli.main import cli
from tests.conftest import free_port, installed, wait_until

DAY = 86400.0
STEP = 60
LEAK_PER_HOUR = 8.0
LIMITS = {"101": 1024, "102": 2048}


def _fleet(end: float) -> tuple[str, float]:
    """OpenMetrics text of two processes over the 6 days before `end`, and the leak's
    onset: pid 101 leaks 8 fds/hour from day 3 on, under a daily cycle of +-80 fds and
    noise; pid 102 has the same cycle and no leak."""
    start = end - 6 * DAY
    onset = start + 3 * DAY
    rng = random.Random(7)
    counts: list[str] = []
    for pid, base in (("101", 300), ("102", 250)):
        for i in range(int(6 * DAY / STEP)):
            t = start + i * STEP
            v = base + 80 * math.sin(2 * math.pi * t / DAY) + rng.gauss(0, 4)
            if pid == "101":
                v += LEAK_PER_HOUR * max(0.0, t - onset) / 3600
            counts.append(f'process_open_fds{{job="api",pid="{pid}"}} {round(v)} {t:.0f}')
    limits = [
        f'process_max_fds{{job="api",pid="{pid}"}} {lim} {start + i * 600:.0f}'
        for pid, lim in LIMITS.items()
        for i in range(int(6 * DAY / 600))
    ]
    text = "\n".join(
        ["# TYPE process_open_fds gauge", *counts, "# TYPE process_max_fds gauge", *limits,
         "# EOF", ""]
    )
    return text, onset


@pytest.fixture(scope="module")
def fleet_tsdb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    """The fleet's history as TSDB blocks (made once): (the data directory, onset, end)."""
    tmp = tmp_path_factory.mktemp("prom")
    # Whole hours, ending 3 h ago: backfilled blocks stay clear of the head block.
    end = math.floor(time.time() / 3600) * 3600 - 3 * 3600
    text, onset = _fleet(end)
    (tmp / "fleet.om").write_text(text)
    made = subprocess.run(
        [installed("promtool", "prometheus"), "tsdb", "create-blocks-from", "openmetrics",
         "--quiet", str(tmp / "fleet.om"), str(tmp / "tsdb")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert made.returncode == 0, made.stderr
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
    return tmp, onset, end


def _serve(spawn: Any, tmp: Path, *extra: str) -> str:
    """Start a real Prometheus on the backfilled data directory: its URL once ready."""
    port = free_port()
    spawn([installed("prometheus", "prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
           f"--storage.tsdb.path={tmp / 'tsdb'}", "--storage.tsdb.retention.time=30d",
           "--log.level=warn", f"--web.listen-address=127.0.0.1:{port}", *extra], ready=False)
    url = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True

    # Until Prometheus listens, connections are refused: OSError is "not yet". (Its
    # readiness endpoint needs the credentials too when it asks for them.)
    wait_until("prometheus to listen", listening, ignore=(OSError,), interval=0.2)
    return url


@pytest.fixture
def backfilled(spawn: Any, fleet_tsdb: tuple[Path, float, float]) -> tuple[str, float, float]:
    """A real Prometheus serving the backfilled fleet: (its URL, the onset, the end)."""
    tmp, onset, end = fleet_tsdb
    url = _serve(spawn, tmp)

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
            return resp.status == 200

    wait_until("prometheus to be ready", ready, ignore=(OSError,), interval=0.2)
    return url, onset, end


def _by_pid(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["labels"]["pid"]: s for s in doc["series"]}


def _check_fleet(doc: dict[str, Any], onset: float) -> None:
    series = _by_pid(doc)
    assert set(series) == {"101", "102"}
    leak, healthy = series["101"], series["102"]
    assert leak["leak"] is True
    assert onset < leak["detected_at"] < onset + 2 * DAY
    assert abs(leak["rate_per_hour"] - LEAK_PER_HOUR) <= 0.1 * LEAK_PER_HOUR
    assert leak["limit"] == 1024
    assert healthy["limit"] == 2048
    assert healthy["leak"] is False
    assert healthy["warmup_left"] is None
    # The headline is the leaking series.
    assert doc["leak"] is True
    assert doc["labels"]["pid"] == "101"
    assert doc["detected_at"] == leak["detected_at"]


def test_a_fleets_history_is_judged_at_once_from_prometheus(
    backfilled: tuple[str, float, float],
) -> None:
    url, onset, _end = backfilled
    res = CliRunner().invoke(cli, ["analyze", "--prometheus", url, "--query",
                                   'process_open_fds{job="api"}', "--json"])
    assert res.exit_code == 10, res.output
    doc = json.loads(res.stdout)
    _check_fleet(doc, onset)
    assert doc["query"] == 'process_open_fds{job="api"}'
    assert all(s["samples"] > 8000 for s in doc["series"])  # 6 days at one a minute

    human = CliRunner().invoke(cli, ["analyze", "--prometheus", url])
    assert human.exit_code == 10
    lines = human.stdout.splitlines()
    assert lines[0].startswith(f"2 series from {url} (")
    assert lines[0].endswith(" UTC): 1 leaking")
    assert lines[1].startswith('process_open_fds{job="api",pid="101"}: LEAK, detected at ')
    assert "+8.0" in lines[1]
    assert "soft limit 1024 in " in lines[1]
    assert any(line.startswith('process_open_fds{job="api",pid="102"}: no leak found')
               for line in lines)


def test_a_saved_answer_gives_the_same_verdicts_offline(
    backfilled: tuple[str, float, float], tmp_path: Path
) -> None:
    url, onset, end = backfilled
    live = CliRunner().invoke(cli, ["analyze", "--prometheus", url, "--since", "7d", "--json"])
    assert live.exit_code == 10, live.output
    # The answer of /api/v1/query_range, saved: counts and limits in one query.
    params = urllib.parse.urlencode({
        "query": '{__name__=~"process_open_fds|process_max_fds",job="api"}',
        "start": end - 7 * DAY, "end": end + 3600, "step": STEP,
    })
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=30) as resp:
        (tmp_path / "api.json").write_bytes(resp.read())
    saved = CliRunner().invoke(cli, ["analyze", str(tmp_path / "api.json"), "--json"])
    assert saved.exit_code == 10, saved.output
    _check_fleet(json.loads(saved.stdout), onset)
    first = _by_pid(json.loads(saved.stdout))["101"]["detected_at"]
    # Live, the query's instants were other minutes: the same detection within the hour.
    assert abs(_by_pid(json.loads(live.stdout))["101"]["detected_at"] - first) <= 3600
    # promtool's JSON is the bare list of series; with --limit for every series.
    out = subprocess.run(
        [installed("promtool", "prometheus"), "query", "range", "-o", "json",
         f"--start={end - 7 * DAY:.0f}", f"--end={end + 3600:.0f}", f"--step={STEP}s", url,
         'process_open_fds{job="api"}'],
        capture_output=True, text=True, timeout=60, check=True,
    )
    (tmp_path / "promtool.json").write_text(out.stdout)
    tool = CliRunner().invoke(cli, ["analyze", str(tmp_path / "promtool.json"),
                                    "--limit", "1024", "--json"])
    assert tool.exit_code == 10, tool.output
    by_pid = _by_pid(json.loads(tool.stdout))
    assert by_pid["101"]["leak"] is True
    assert by_pid["102"]["leak"] is False
    assert by_pid["101"]["limit"] == by_pid["102"]["limit"] == 1024
    # The same instants, the same detector: the same moment of detection.
    assert by_pid["101"]["detected_at"] == first


def test_prometheus_errors_are_one_line_usage_errors(
    backfilled: tuple[str, float, float],
) -> None:
    url, _onset, _end = backfilled
    bad = CliRunner().invoke(cli, ["analyze", "--prometheus", url, "--query", "rate(("])
    assert bad.exit_code == 2
    assert f"Prometheus at {url} rejected 'rate((':" in bad.output
    assert "Traceback" not in bad.output
    none = CliRunner().invoke(cli, ["analyze", "--prometheus", url, "--query",
                                    'process_open_fds{job="nope"}'])
    assert none.exit_code == 2
    assert "matched no series" in none.output
    closed = f"http://127.0.0.1:{free_port()}"
    down = CliRunner().invoke(cli, ["analyze", "--prometheus", closed])
    assert down.exit_code == 2
    assert f"cannot reach Prometheus at {closed}" in down.output


# bcrypt of "fdguard-test" (cost 4): what Prometheus' web config wants for basic auth.
PASSWORD_HASH = "$2b$04$N5fYHVWWtLk.1G9yWS471.xOlgrZvikCrLOAwKXUkoblrU5c2sP1W"


def test_a_prometheus_behind_basic_auth_takes_the_header(
    spawn: Any, fleet_tsdb: tuple[Path, float, float], tmp_path: Path
) -> None:
    tmp, onset, _end = fleet_tsdb
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  fdguard: '{PASSWORD_HASH}'\n")
    url = _serve(spawn, tmp, f"--web.config.file={web}")
    token = base64.b64encode(b"fdguard:fdguard-test").decode()
    auth = ["--header", f"Authorization: Basic {token}"]

    def answers() -> bool:
        res = CliRunner().invoke(cli, ["analyze", "--prometheus", url, "--json", *auth])
        return res.exit_code == 10

    wait_until("prometheus to answer with the credentials", answers, interval=0.2)
    res = CliRunner().invoke(cli, ["analyze", "--prometheus", url, "--json", *auth])
    _check_fleet(json.loads(res.stdout), onset)
    # Credentials in the URL work too, and are never printed.
    inline = url.replace("http://", "http://fdguard:fdguard-test@")
    res = CliRunner().invoke(cli, ["analyze", "--prometheus", inline, "--json"])
    assert res.exit_code == 10, res.output
    assert json.loads(res.stdout)["source"] == url.replace("http://", "http://fdguard:***@")
    assert "fdguard-test" not in res.stdout
    wrong = CliRunner().invoke(cli, ["analyze", "--prometheus",
                                     url.replace("http://", "http://fdguard:nope@")])
    assert wrong.exit_code == 2
    assert "nope" not in wrong.stderr
    assert "HTTP 401" in wrong.stderr
    refused = CliRunner().invoke(cli, ["analyze", "--prometheus", url])
    assert refused.exit_code == 2
    assert f"{url}: HTTP 401 Unauthorized: it wants credentials" in refused.stderr
    bad = CliRunner().invoke(cli, ["analyze", "--prometheus", url, "--header", "no colon"])
    assert bad.exit_code == 2
    assert "expected NAME:VALUE" in bad.stderr
