"""A real Node.js service leaking fds under load the test drives is found by watch, with an
ETA within 25% of the real time to EMFILE, and the alert reaches a webhook on loopback; the
same service without the leak, under the same load, raises nothing."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fdguard.alerts import AlertEngine, EtaRule, ThresholdRule, TrendRule, WebhookSink
from fdguard.store import Store
from fdguard.targets import SpecKind, TargetSet, TargetSpec
from fdguard.watch import WatchConfig, Watcher, WatchEvent, detector_config_for
from tests.integration.watching import watching

SERVICE = Path(__file__).parent.parent / "procs" / "fd_service.js"
LIMIT = 256
RATE = 15.0  # requests (so leaked fds, in leak mode) per second
# Scaled-down time: a 4 s "longest healthy cycle", sampled every 50 ms.
CONFIG = WatchConfig(
    interval=0.05,
    snapshot_every=1.0,
    suspicious_gap=0.5,
    rescan_every=1.0,
    detector=detector_config_for(4.0, bucket=0.1),
)


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        n = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), type("H", (_Hook,), {"received": received})
    )
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/fdguard", received
    srv.shutdown()
    srv.server_close()
    th.join()


def _watch_service(
    spawn: Any, node: str, mode: str, url: str, store: Store, *, seconds: float
) -> tuple[Any, Watcher, list[WatchEvent], int | None]:
    """Start fd_service.js in `mode` under a LIMIT, watch it in a thread while `_drive`
    loads it for `seconds`, then stop the watcher: (service, watcher, events, EMFILE ns)."""
    svc = spawn(["prlimit", f"--nofile={LIMIT}:{LIMIT}", node, str(SERVICE), mode])
    port = json.loads(svc.ready)["port"]
    assert svc.proc.stdout is not None
    events: list[WatchEvent] = []
    w = Watcher(
        TargetSet([TargetSpec(SpecKind.PID, str(svc.pid))]),
        config=CONFIG,
        store=store,
        alerts=AlertEngine([ThresholdRule(), TrendRule(), EtaRule()]),
        sinks=[WebhookSink(url)],
        on_event=events.append,
    )
    with watching(w):
        emfile_ns = _drive(port, svc.proc.stdout.fileno(), seconds=seconds)
    return svc, w, events, emfile_ns


def _drive(port: int, stdout_fd: int, *, seconds: float) -> int | None:
    """Send RATE requests/s on one keep-alive connection for `seconds` (bounded), or until
    the service reports EMFILE; return the EMFILE time (CLOCK_MONOTONIC ns) if it did."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    start = time.monotonic()
    try:
        for i in range(int(seconds * RATE)):
            # Pace on absolute deadlines so the leak rate is steady.
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.request("GET", "/work")
            resp = conn.getresponse()
            resp.read()
            ready, _, _ = select.select([stdout_fd], [], [], 0)
            if ready:
                line = os.read(stdout_fd, 4096).decode()
                assert line.startswith("EMFILE "), line
                return int(line.split()[1])
    finally:
        conn.close()
    return None


@pytest.mark.node
def test_leaking_node_service_is_detected_with_eta_and_webhook(
    spawn, node: str, webhook: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = webhook
    with Store(tmp_path / "fd.db") as store:
        svc, w, events, emfile_ns = _watch_service(spawn, node, "leak", url, store, seconds=40.0)
        assert emfile_ns is not None, "the service never reached EMFILE"
        emfile_at = emfile_ns / 1e9

        leaks = [e for e in events if e.type == "verdict" and e.data["kind"] is None]
        assert leaks, "watch did not find the leak"
        first = leaks[0].data
        assert first["leak"] is True
        # The verdict's timeline is the watcher's monotonic clock: the same
        # CLOCK_MONOTONIC node used for the EMFILE time. The ETA judged is the one
        # given with the first sample that called the leak.
        final = w.views()[0].verdict if w.views() else None
        assert final is not None
        assert final.detected_at is not None
        at_detection = next(e for e in events if e.type == "sample" and e.data["leak"])
        eta = at_detection.data["eta_seconds"]
        real = emfile_at - final.detected_at
        print(f"ETA at detection {eta:.2f} s, real time to EMFILE {real:.2f} s")
        assert real > 2.0, "detected too late to be useful"
        assert eta is not None
        assert abs(eta - real) <= 0.25 * real, f"ETA {eta:.1f}s vs real {real:.1f}s"
        assert 0.75 * RATE * 3600 <= first["rate_per_hour"] <= 1.25 * RATE * 3600

        # The alert reached the webhook, and the store recorded it.
        fired = {(a["rule"], a["state"]) for a in received if a["pid"] == svc.pid}
        assert ("trend", "firing") in fired
        assert ("eta", "firing") in fired
        [t] = store.targets()
        assert {(a.rule, a.state) for a in store.alerts(t.id)} >= {("trend", "firing")}
        # The leak is by kind too: the snapshots show it as files (/dev/null is a chardev).
        assert any(
            e.type == "snapshot" and e.data["reason"] == "suspicious" for e in events
        )
        kinds = w.views()[0].by_kind if w.views() else {}
        assert kinds.get("chardev", 0) > 100


@pytest.mark.node
def test_healthy_node_service_under_the_same_load_raises_nothing(
    spawn, node: str, webhook: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = webhook
    with Store(tmp_path / "fd.db") as store:
        # Two detector periods: long enough for the detector to judge.
        _svc, w, events, emfile = _watch_service(spawn, node, "healthy", url, store, seconds=9.0)
        assert emfile is None
        samples = [e for e in events if e.type == "sample"]
        assert len(samples) > 100
        assert not [e for e in events if e.type in ("verdict", "alert")]
        assert received == []
        [t] = store.targets()
        assert store.alerts(t.id) == []
        v = w.views()[0].verdict
        assert v is not None
        assert v.leak is False
        assert v.samples > 100
