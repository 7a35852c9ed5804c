"""The exporter scraped by a real Prometheus server, and the shipped rules checked and
unit-tested by the real promtool; the collector's names and bounded labels."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fdguard.clock import ManualClock
from fdguard.exporter import WatchCollector, serve
from fdguard.inspect import snapshot
from fdguard.targets import SpecKind, TargetSet, TargetSpec
from fdguard.watch import WatchConfig, Watcher
from tests.conftest import free_port, installed, python_proc, wait_until

CONTRIB = Path(__file__).parent.parent.parent / "contrib" / "prometheus"
RULES = CONTRIB / "fdguard.rules.yml"


def _tool(name: str) -> str:
    return installed(name, "prometheus")


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    promtool = _tool("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout
    test = subprocess.run([promtool, "test", "rules", "fdguard.rules.test.yml"], cwd=CONTRIB,
                          capture_output=True, text=True, timeout=60, check=False)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # The check is a real gate: a rule with a bad expression fails it.
    bad = tmp_path / "bad.yml"
    bad.write_text(RULES.read_text().replace("fdguard_leak_eta_seconds < 3600",
                                             "fdguard_leak_eta_seconds <"))
    res = subprocess.run([_tool("promtool"), "check", "rules", str(bad)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode != 0


def _metrics(collector: WatchCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def test_collector_names_values_and_bounded_labels(spawn) -> None:
    zoo = spawn(["prlimit", "--nofile=512:1024", *python_proc("fdzoo.py")])
    others = [spawn(python_proc("fdzoo.py")) for _ in range(2)]
    pids = [zoo.pid] + [o.pid for o in others]
    w = Watcher(TargetSet([TargetSpec(SpecKind.PID, str(p)) for p in pids]),
                config=WatchConfig(interval=1.0), clock=ManualClock())
    w.run(max_rounds=2)
    m = _metrics(WatchCollector(w.views, max_targets=2))
    snap = snapshot(zoo.pid)
    by_pid = {lbl["pid"]: v for lbl, v in m["process_open_fds"]}
    assert by_pid[str(zoo.pid)] == snap.count
    [(lbl, soft)] = [(lbl, v) for lbl, v in m["process_max_fds"] if lbl["pid"] == str(zoo.pid)]
    assert soft == 512
    assert lbl["target"] == f"pid:{zoo.pid}"
    kinds = {lbl["kind"]: v for lbl, v in m["fdguard_open_fds_by_kind"]
             if lbl["pid"] == str(zoo.pid)}
    assert kinds == {k: float(n) for k, n in snap.by_kind.items()}
    states = {lbl["state"]: v for lbl, v in m["fdguard_tcp_sockets_by_state"]
              if lbl["pid"] == str(zoo.pid)}
    assert states["CLOSE-WAIT"] >= 1
    assert states["LISTEN"] >= 1
    # Only 2 of 3 targets exported, and the truncation is visible.
    assert len(by_pid) == 2
    assert m["fdguard_targets"][0][1] == 3
    assert m["fdguard_targets_not_exported"][0][1] == 1
    # No label carries a path, port or address.
    for samples in m.values():
        for lbl, _ in samples:
            assert set(lbl) <= {"pid", "name", "target", "kind", "state", "rule"}
            assert not any(":" in v and v[0].isdigit() for v in lbl.values())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def exporter_on_watch(spawn) -> Iterator[tuple[int, int]]:
    zoo = spawn(["prlimit", "--nofile=40:1024", *python_proc("fdzoo.py")])
    w = Watcher(TargetSet([TargetSpec(SpecKind.PID, str(zoo.pid))]),
                config=WatchConfig(interval=0.2, snapshot_every=1.0))
    th = threading.Thread(target=w.run, kwargs={"duration": 120.0})
    th.start()
    server = serve(WatchCollector(w.views), port=0)
    try:
        yield zoo.pid, server.port
    finally:
        server.close()
        w.stop()
        th.join()


def test_real_prometheus_scrapes_the_exporter_and_evaluates_the_rules(
    spawn, exporter_on_watch: tuple[int, int], tmp_path: Path
) -> None:
    pid, port = exporter_on_watch
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: fdguard\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    spawn([_tool("prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{prom_port}"], ready=False)
    base = f"http://127.0.0.1:{prom_port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:
            return resp.status == 200

    # Until Prometheus listens, the HTTP API refuses connections: OSError is "not yet".
    scrape = {"ignore": (OSError,), "interval": 0.2}
    wait_until("prometheus to be ready", ready, **scrape)

    def query(q: str) -> list[dict[str, Any]]:
        doc = _get(f"{base}/api/v1/query?query={urllib.parse.quote(q)}")
        return list(doc["data"]["result"])

    [open_fds] = wait_until(
        "process_open_fds", lambda: query(f'process_open_fds{{pid="{pid}"}}'), **scrape
    )
    truth = snapshot(pid)
    assert float(open_fds["value"][1]) == truth.count
    assert open_fds["metric"]["job"] == "fdguard"
    assert open_fds["metric"]["target"] == f"pid:{pid}"
    tcp = wait_until(
        "tcp states",
        lambda: query(f'fdguard_tcp_sockets_by_state{{pid="{pid}",state="CLOSE-WAIT"}}'),
        **scrape,
    )
    assert float(tcp[0]["value"][1]) >= 1
    # The recording rule, evaluated by the real Prometheus over the real scrape.
    [ratio] = wait_until("the recording rule", lambda: query("fdguard:fd_usage:ratio"), **scrape)
    assert abs(float(ratio["value"][1]) - truth.count / 40) < 1e-9
    # fdzoo holds more than 80% of its 40-fd limit: FdUsageHigh is pending (its `for` is 5m).
    assert truth.count > 32

    def usage_alert() -> list[dict[str, Any]]:
        alerts = _get(f"{base}/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "FdUsageHigh"]

    [alert] = wait_until("FdUsageHigh pending", usage_alert, **scrape)
    assert alert["state"] == "pending"
    assert alert["labels"]["pid"] == str(pid)
    rules = _get(f"{base}/api/v1/rules")["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {
        "FdExhaustionImminent", "FdLeak", "FdLeakByKind", "FdUsageHigh", "fdguard:fd_usage:ratio"}
    # Every query of the shipped Grafana dashboard is valid PromQL for this Prometheus
    # and returns data from this exporter (or from the rules above).
    dash = json.loads((CONTRIB.parent / "grafana" / "fdguard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    with_data = 0
    for expr in exprs:
        q = expr.replace("$name", ".*").replace("$pid", ".*")
        doc = _get(f"{base}/api/v1/query?query={urllib.parse.quote(q)}")
        assert doc["status"] == "success", (expr, doc)
        with_data += bool(doc["data"]["result"])
    assert with_data >= 5
