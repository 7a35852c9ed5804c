"""Pure arithmetic of LimitsReport and LimitChange: headroom, gained fds, ETAs."""

from __future__ import annotations

import pytest

from fdguard.limits import LimitChange, LimitsReport
from fdguard.model import Limits, ProcessRef

REF = ProcessRef(42, 1000)


def test_report_share_and_headroom() -> None:
    rep = LimitsReport(REF, ("node",), Limits(1024, 4096), 256)
    assert rep.share == pytest.approx(0.25)
    assert rep.headroom == 768
    assert rep.eta_seconds(768.0) == pytest.approx(3600.0)
    assert rep.eta_seconds(0.0) is None
    assert rep.eta_seconds(-5.0) is None


def test_report_unlimited() -> None:
    rep = LimitsReport(REF, ("x",), Limits(None, None), 10)
    assert rep.share is None
    assert rep.headroom is None
    assert rep.eta_seconds(100.0) is None


def test_over_the_limit_has_no_headroom() -> None:
    rep = LimitsReport(REF, ("x",), Limits(10, 10), 12)
    assert rep.headroom == 0
    assert rep.eta_seconds(1.0) == 0.0


def test_change_eta_before_and_after() -> None:
    ch = LimitChange(REF, Limits(1024, 4096), Limits(4096, 4096), 1000)
    assert ch.changed
    assert ch.gained == 3072
    # 24 fds left before, 3096 after, at 24 fds/h.
    assert ch.eta_seconds(24.0, after=False) == pytest.approx(3600.0)
    assert ch.eta_seconds(24.0) == pytest.approx(3096 / 24 * 3600)
    assert ch.to_json()["after"] == {"soft": 4096, "hard": 4096}


def test_change_to_unlimited() -> None:
    ch = LimitChange(REF, Limits(1024, None), Limits(None, None), 5)
    assert ch.gained is None
    assert ch.eta_seconds(10.0) is None
