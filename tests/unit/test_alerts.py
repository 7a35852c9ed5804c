"""Alert rules: hysteresis, de-duplication, and the sinks (webhook on a real loopback server)."""

from __future__ import annotations

import http.server
import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fdguard.alerts import (
    AlertEngine,
    CommandSink,
    EtaRule,
    LogSink,
    Observation,
    RateRule,
    StreamSink,
    ThresholdRule,
    TrendRule,
    WebhookSink,
    deliver,
)
from fdguard.model import ProcessRef

REF = ProcessRef(42, 4242)


@dataclass(frozen=True)
class V:
    leak: bool
    rate_per_hour: float | None = None
    eta_seconds: float | None = None
    confidence: float = 0.9
    reason: str = "steady growth"


def obs(t: float, count: int, limit: int | None = 100, verdict: V | None = None) -> Observation:
    return Observation(REF, "node", t, count, limit, verdict, label="pid:42")


def test_threshold_has_hysteresis_and_needs_consecutive_samples() -> None:
    eng = AlertEngine([ThresholdRule(fire_at=0.8, clear_at=0.7, for_samples=2)])
    seq = [79, 81, 79, 81, 82, 90, 75, 79, 81, 69, 85]
    out = [(c, [a.state for a in eng.evaluate(obs(i, c))]) for i, c in enumerate(seq)]
    states = [(c, s) for c, s in out if s]
    # fires on the 2nd consecutive >=80 (82), stays through 75..81 (no flap), clears at 69.
    assert states == [(82, ["firing"]), (69, ["resolved"])]
    assert eng.firing(REF) == []


def test_no_limit_never_fires_threshold() -> None:
    eng = AlertEngine([ThresholdRule(for_samples=1)])
    assert eng.evaluate(obs(0, 10**6, limit=None)) == []


def test_trend_rate_eta_fire_once_and_resolve() -> None:
    eng = AlertEngine([TrendRule(), RateRule(fire_per_hour=60, clear_per_hour=30),
                       EtaRule(fire_below=600, clear_above=900)])
    a = eng.evaluate(obs(0, 50, verdict=V(leak=True, rate_per_hour=120, eta_seconds=500)))
    assert sorted(x.rule for x in a) == ["eta", "rate", "trend"]
    assert all(x.state == "firing" for x in a)
    # Same condition again: de-duplicated.
    assert eng.evaluate(obs(1, 51, verdict=V(leak=True, rate_per_hour=121, eta_seconds=490))) == []
    # ETA rises into the hysteresis band: no change; past clear_above: resolved.
    assert eng.evaluate(obs(2, 51, verdict=V(leak=True, rate_per_hour=100, eta_seconds=800))) == []
    r = eng.evaluate(obs(3, 51, verdict=V(leak=True, rate_per_hour=100, eta_seconds=1000)))
    assert [(x.rule, x.state) for x in r] == [("eta", "resolved")]
    r = eng.evaluate(obs(4, 51, verdict=V(leak=False)))
    assert sorted((x.rule, x.state) for x in r) == [("rate", "resolved"), ("trend", "resolved")]


def test_repeat_every_re_sends_a_still_firing_alert() -> None:
    eng = AlertEngine([TrendRule()], repeat_every=10.0)
    v = V(leak=True, rate_per_hour=5)
    assert len(eng.evaluate(obs(0, 1, verdict=v))) == 1
    assert eng.evaluate(obs(5, 1, verdict=v)) == []
    assert [a.state for a in eng.evaluate(obs(10, 1, verdict=v))] == ["firing"]


def test_alert_json_shape() -> None:
    [a] = AlertEngine([EtaRule()]).evaluate(
        obs(7.5, 80, verdict=V(leak=True, rate_per_hour=360.0, eta_seconds=200.0))
    )
    doc = a.to_json()
    assert doc["type"] == "alert"
    assert doc["rule"] == "eta"
    assert doc["severity"] == "critical"
    assert (doc["pid"], doc["start_time"], doc["target"]) == (42, 4242, "pid:42")
    assert doc["eta_seconds"] == 200.0
    assert "3 min" in doc["message"]
    json.dumps(doc)


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, object]]

    def do_POST(self) -> None:
        n = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []
    handler = type("H", (_Hook,), {"received": received})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", received
    srv.shutdown()
    srv.server_close()
    th.join()


def test_sinks_deliver_to_webhook_stream_log_and_command(
    webhook: tuple[str, list[dict[str, object]]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, received = webhook
    [a] = AlertEngine([TrendRule()]).evaluate(obs(1, 5, verdict=V(leak=True, rate_per_hour=9)))
    out = io.StringIO()
    dest = tmp_path / "alert.json"
    cmd = CommandSink([sys.executable, "-c",
                       "import sys,os; open(sys.argv[1],'w').write(sys.stdin.read()"
                       "+os.environ['FDGUARD_ALERT_RULE'])", str(dest)])
    with caplog.at_level(logging.WARNING, logger="fdguard.alerts"):
        errors = deliver(a, [WebhookSink(url), StreamSink(out), LogSink(), cmd])
    assert errors == []
    assert received[0]["rule"] == "trend"
    assert received[0]["pid"] == 42
    assert json.loads(out.getvalue())["state"] == "firing"
    assert "trend firing pid 42" in caplog.text
    text = dest.read_text()
    assert text.endswith("trend")
    assert json.loads(text[: -len("trend")])["name"] == "node"


def test_failing_sinks_are_reported_not_raised() -> None:
    [a] = AlertEngine([TrendRule()]).evaluate(obs(1, 5, verdict=V(leak=True)))
    # A closed loopback port, and a command that fails.
    errors = deliver(a, [WebhookSink("http://127.0.0.1:9/x", timeout=2),
                         CommandSink([sys.executable, "-c", "raise SystemExit(3)"])])
    assert len(errors) == 2
    assert "exited with 3" in errors[1]
    with pytest.raises(ValueError, match="http"):
        WebhookSink("file:///etc/passwd")
