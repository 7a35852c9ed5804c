"""Charts from the store: a restarted service's two series, kinds, limit, alerts; bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from fdguard.errors import UsageError
from fdguard.model import ProcessRef
from fdguard.plot import plot_history
from fdguard.store import Store


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_of_a_restarted_service_with_alerts(tmp_path: Path) -> None:
    t0 = 1.7e9
    with Store(tmp_path / "fd.db") as s:
        a = s.target_id(ProcessRef(10, 1), ("node", "app.js"), t0, "name:node")
        b = s.target_id(ProcessRef(11, 2), ("node", "app.js"), t0 + 3600, "name:node")
        s.add_samples([(a, t0 + i * 10, 20 + i // 6, 1024) for i in range(360)])
        s.add_samples([(b, t0 + 3600 + i * 10, 20, 2048) for i in range(360)])
        for i in range(0, 360, 60):
            s.add_kind_counts(a, t0 + i * 10, {"tcp": 10 + i // 6, "file": 5, "pipe": 5},
                              {"CLOSE-WAIT": i // 6})
        s.add_alert(a, t0 + 1800, rule="trend", state="firing", severity="warning", message="m")
        s.add_alert(a, t0 + 3590, rule="trend", state="resolved", severity="warning",
                    message="m")
        # (The autouse guard also checks that no font file stays open afterwards.)
        out = plot_history(s, [a, b], tmp_path / "chart.png", width=10, height=5)
        assert _png_size(out) == (1000, 500)
        # A narrower range that has no samples is a usage error, not an empty chart.
        with pytest.raises(UsageError):
            plot_history(s, [a, b], tmp_path / "x.png", since=t0 + 10 * 86400)
        with pytest.raises(UsageError):
            plot_history(s, [], tmp_path / "x.png")
