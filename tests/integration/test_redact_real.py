"""A real Node.js service whose command line, environment and log carry planted secrets: the
report written by the real CLI (Markdown, HTML with its inlined images, GitHub body and
attachments, charts) contains none of them, and says what it redacted."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from fdguard.cli.main import cli
from fdguard.store import Store
from fdguard.targets import SpecKind, TargetSet, TargetSpec
from fdguard.trace import trace_pid
from fdguard.watch import WatchConfig, Watcher

PROCS = Path(__file__).parent.parent / "procs"

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BEARER = "tkn_9f8e7d6c5b4a39281706"
DB_PASSWORD = "Pa55w0rd-plant3d"
DB_URL = f"postgres://appuser:{DB_PASSWORD}@db.internal.example:5432/orders"
SESSION = "sess-4c1d2e3f4a5b6c7d8e9f"
ENV_ONLY = "never-printed-env-value-77"
CUSTOM = "corp-493817"
USER = "alicetest"

SECRETS = [AWS_KEY, AWS_SECRET, BEARER, DB_PASSWORD, "db.internal.example", SESSION, ENV_ONLY,
           CUSTOM, USER, "appuser", "10.20.30.40"]


def _texts(out: Path) -> dict[str, str]:
    """Every file of the report as text, with the data URIs of the HTML decoded too."""
    texts: dict[str, str] = {}
    for p in out.rglob("*"):
        if not p.is_file():
            continue
        raw = p.read_bytes()
        texts[str(p)] = raw.decode("utf-8", "replace")
        if p.suffix == ".html":
            for i, m in enumerate(re.finditer(rb"data:[\w/+.-]+;base64,([A-Za-z0-9+/=]+)", raw)):
                texts[f"{p}#data{i}"] = base64.b64decode(m.group(1)).decode("utf-8", "replace")
    return texts


@pytest.mark.node
def test_planted_secrets_never_reach_the_report(spawn, node: str, tmp_path: Path) -> None:
    app = tmp_path / "home" / USER / "app"
    app.mkdir(parents=True)
    shutil.copy(PROCS / "report_secret_service.js", app / "server.js")
    log = app / "service.log"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home" / USER),
        "AWS_ACCESS_KEY_ID": AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "UPSTREAM_TOKEN": BEARER,
        "DATABASE_URL": DB_URL,
        "SESSION_SECRET": SESSION,
        "PLANTED_ONLY_IN_ENV": ENV_ONLY,
    }
    argv = ["prlimit", "--nofile=64:64", node, str(app / "server.js"),
            "--log-file", str(log), "--db", DB_URL, "--aws-key", AWS_KEY,
            "--header", f"Authorization: Bearer {BEARER}", "--password", DB_PASSWORD,
            "--replica", "10.20.30.40:5432", "--tenant", CUSTOM]
    svc = spawn(argv, env=env, cwd=str(app))
    port = json.loads(svc.ready)["port"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def requests(n: int) -> None:
        for _ in range(n):
            conn.request("GET", f"/orders?api_key={SESSION}")
            conn.getresponse().read()

    db = tmp_path / "fd.db"
    try:
        with Store(db) as store:
            w = Watcher(TargetSet([TargetSpec(SpecKind.PID, str(svc.pid))]), store=store,
                        config=WatchConfig(interval=0.05, snapshot_every=0.5))
            th = threading.Thread(target=lambda: w.run(duration=3.0))
            th.start()
            try:
                requests(30)
            finally:
                th.join()
        # Traced into EMFILE: the log then carries the error line with the session secret.
        rep = trace_pid(svc.pid, 4.0, on_attached=lambda: requests(60))
    finally:
        conn.close()
    trace_file = tmp_path / "trace.json"
    trace_file.write_text(json.dumps(rep.to_json()))
    assert "EMFILE" in log.read_text()
    assert SESSION in log.read_text()

    out = tmp_path / "report"
    result = CliRunner().invoke(cli, [
        "report", str(svc.pid), "--store", str(db), "--trace", str(trace_file),
        "--log", str(log), "--format", "github", "--redact-extra", r"corp-\d{6}",
        "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "redacted:" in result.output
    # The same process named through the store only (no PID argument).
    out2 = tmp_path / "report-from-store"
    result = CliRunner().invoke(cli, [
        "report", "--from-store", str(svc.pid), "--store", str(db), "--log", str(log),
        "--redact-extra", r"corp-\d{6}", "--out", str(out2),
    ])
    assert result.exit_code == 0, result.output
    assert "(running)" in (out2 / "report.md").read_text()

    texts = _texts(out) | _texts(out2)
    assert any(k.endswith("report.md") for k in texts)
    assert any(k.endswith("issue.md") for k in texts)
    assert any("#data" in k for k in texts)  # the inlined chart was decoded and checked
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {name}"
    md = (out / "report.md").read_text()
    # The report still says what happened, and what it redacted (kinds and counts).
    assert "EMFILE" in md
    for kind in ("aws access key", "authorization header", "password in url",
                 "user name in path", "custom pattern", "address", "secret argument"):
        assert re.search(rf"\d+ {kind}\b", md), kind
    # Environment variables are never listed, not even by name.
    assert "PLANTED_ONLY_IN_ENV" not in md
    assert "UPSTREAM_TOKEN" not in md
