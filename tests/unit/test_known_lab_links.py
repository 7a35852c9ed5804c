"""Every known bug that names a lab scenario names one that exists."""

from __future__ import annotations

from fdguard.known.base import load_bugs
from fdguard.lab.scenarios import CATALOGUE


def test_lab_scenarios_named_by_the_base_exist() -> None:
    named = {b.id: b.lab_scenario for b in load_bugs() if b.lab_scenario}
    assert len(named) >= 4
    missing = {bug: s for bug, s in named.items() if s not in CATALOGUE}
    assert not missing, f"known bugs name lab scenarios that do not exist: {missing}"
