"""Serve the watcher's latest state as Prometheus metrics (a custom prometheus_client Collector).

Names: `process_open_fds` and `process_max_fds` keep the names and meanings
exporters already publish (prometheus/client_python's process collector,
node_exporter's textfile users), so existing dashboards and the common
`process_open_fds / process_max_fds` alert work unchanged; here they carry
`pid`, `name` and `target` labels because one fdguard watches many processes.
fdguard's own series are prefixed `fdguard_`: per-kind and per-TCP-state
counts, leak verdict, confidence, growth rate and ETA.

Cardinality is bounded by construction: label values are the PID, the kernel's
15-byte comm, the target spec the operator wrote, an `FdKind` value and a
`TcpState` value — never a path, a port or an address. At most `max_targets`
processes are exported (the highest counts first); the number left out is
exported too, so a truncation is visible.

The collector reads `Watcher.views()` (an immutable tuple swapped atomically
each round), so a scrape never blocks the sampling loop and never sees a half
round. A process that vanished simply yields no samples (as client_python does).
The HTTP server binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from fdguard.model import FdKind, TcpState
from fdguard.watch import TargetView

_KINDS = frozenset(k.value for k in FdKind)
_STATES = frozenset(s.value for s in TcpState)
_LABELS = ["pid", "name", "target"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9639


class WatchCollector(Collector):
    """Metrics for every target of a watcher (see the module comment)."""

    def __init__(
        self, views: Callable[[], Sequence[TargetView]], *, max_targets: int = 200
    ) -> None:
        self._views = views
        self.max_targets = max_targets

    def describe(self) -> Iterable[Metric]:
        # Nothing to describe up front: registering must not trigger a collect().
        return []

    def collect(self) -> Iterable[Metric]:
        views = [v for v in self._views() if v.count is not None]
        views.sort(key=lambda v: -(v.count or 0))
        dropped = max(0, len(views) - self.max_targets)
        views = views[: self.max_targets]

        open_fds = GaugeMetricFamily(
            "process_open_fds", "Number of open file descriptors.", labels=_LABELS
        )
        max_fds = GaugeMetricFamily(
            "process_max_fds",
            "Maximum number of open file descriptors (the soft RLIMIT_NOFILE).",
            labels=_LABELS,
        )
        hard = GaugeMetricFamily("fdguard_max_fds_hard", "The hard RLIMIT_NOFILE.", labels=_LABELS)
        by_kind = GaugeMetricFamily(
            "fdguard_open_fds_by_kind",
            "Open fds by kind, from the latest full snapshot.",
            labels=[*_LABELS, "kind"],
        )
        by_state = GaugeMetricFamily(
            "fdguard_tcp_sockets_by_state",
            "TCP socket fds by state (ss names), from the latest full snapshot.",
            labels=[*_LABELS, "state"],
        )
        leak = GaugeMetricFamily(
            "fdguard_leak", "1 when the detector calls a leak of the total.", labels=_LABELS
        )
        confidence = GaugeMetricFamily(
            "fdguard_leak_confidence", "The detector's confidence (0..1).", labels=_LABELS
        )
        confirming = GaugeMetricFamily(
            "fdguard_leak_confirming",
            "1 while a rise of the total is being confirmed (not yet called a leak).",
            labels=_LABELS,
        )
        warmup = GaugeMetricFamily(
            "fdguard_leak_warmup_seconds",
            "Seconds of history the detector still needs before it judges (0 once it does).",
            labels=_LABELS,
        )
        rate = GaugeMetricFamily(
            "fdguard_leak_rate_per_hour",
            "Estimated fd growth in fds per hour (while a leak is called).",
            labels=_LABELS,
        )
        eta = GaugeMetricFamily(
            "fdguard_leak_eta_seconds",
            "Estimated seconds until the soft limit is reached (while a leak is called).",
            labels=_LABELS,
        )
        kind_leak = GaugeMetricFamily(
            "fdguard_kind_leak",
            "1 when the detector calls a leak of one kind or TCP state (tcp:STATE).",
            labels=[*_LABELS, "kind"],
        )
        firing = GaugeMetricFamily(
            "fdguard_alert_firing", "1 for each alert rule firing.", labels=[*_LABELS, "rule"]
        )
        samples = GaugeMetricFamily(
            "fdguard_samples", "Samples taken of this process so far.", labels=_LABELS
        )
        for v in views:
            lv = [str(v.target.ref.pid), v.target.comm, v.target.spec.label]
            open_fds.add_metric(lv, float(v.count or 0))
            samples.add_metric(lv, float(v.samples))
            if v.soft_limit is not None:
                max_fds.add_metric(lv, float(v.soft_limit))
            if v.hard_limit is not None:
                hard.add_metric(lv, float(v.hard_limit))
            for k, n in v.by_kind.items():
                if k in _KINDS:
                    by_kind.add_metric([*lv, k], float(n))
            for s, n in v.by_tcp_state.items():
                if s in _STATES:
                    by_state.add_metric([*lv, s], float(n))
            verdict = v.verdict
            if verdict is not None:
                leak.add_metric(lv, 1.0 if verdict.leak else 0.0)
                confidence.add_metric(lv, float(verdict.confidence))
                held = bool(getattr(verdict, "confirming", False))  # LeakVerdict's
                confirming.add_metric(lv, 1.0 if held else 0.0)
                left = getattr(verdict, "warmup_left", None)  # LeakVerdict's
                warmup.add_metric(lv, float(left or 0.0))
                if verdict.leak and verdict.rate_per_hour is not None:
                    rate.add_metric(lv, float(verdict.rate_per_hour))
                if verdict.leak and verdict.eta_seconds is not None:
                    eta.add_metric(lv, float(verdict.eta_seconds))
            for k, kv in v.kind_verdicts.items():
                base = k.removeprefix("tcp:")
                if base in _KINDS or base in _STATES:
                    kind_leak.add_metric([*lv, k], 1.0 if kv.leak else 0.0)
            for rule in v.firing:
                firing.add_metric([*lv, rule], 1.0)
        targets = GaugeMetricFamily("fdguard_targets", "Processes followed.")
        targets.add_metric([], float(len(views) + dropped))
        left_out = GaugeMetricFamily(
            "fdguard_targets_not_exported",
            "Processes followed but left out of this scrape (over max_targets).",
        )
        left_out.add_metric([], float(dropped))
        yield from (open_fds, max_fds, hard, by_kind, by_state, leak, confidence, confirming)
        yield from (warmup, rate, eta)
        yield from (kind_leak, firing, samples, targets, left_out)


@dataclass
class MetricsServer:
    """A running /metrics endpoint; `close()` stops it and releases its socket."""

    server: WSGIServer
    thread: threading.Thread
    registry: CollectorRegistry

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve(
    collector: Collector, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> MetricsServer:
    """Serve `collector` on http://HOST:PORT/metrics in a background thread.

    A fresh registry is used: the default one carries the exporter's own
    process collector, whose `process_open_fds` would clash with ours.
    Port 0 picks a free port (see `MetricsServer.port`).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread, registry)
