"""Ask `explain` (fdguard.attribute) which fds a live libuv handle owns, when it can say.

`trace` does not depend on attribute.py at import time: the handle view is
an optional join. Whatever shape of per-fd verdict attribute offers is
mapped here onto `Ownership`; anything unexpected means "no handle view".
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from fdguard.trace.report import Owner, Ownership

# explain's fds[].verdict values (DESIGN.md) -> ownership.
_BY_VERDICT: dict[str, Ownership] = {
    "handle": Ownership.HANDLE,
    "loop-internal": Ownership.LOOP,
    "unowned": Ownership.NONE,
    "stdio": Ownership.NONE,
    "inherited": Ownership.NONE,
    "fs": Ownership.NONE,
}


def map_verdicts(verdicts: Mapping[int, tuple[str, bool, str | None]]) -> dict[int, Owner]:
    """explain's (verdict, certain, evidence) per fd -> Owner ("unknown" for anything else)."""
    return {
        fd: Owner(_BY_VERDICT.get(v, Ownership.UNKNOWN), certain, evidence)
        for fd, (v, certain, evidence) in verdicts.items()
    }


def _verdicts_from(result: Any) -> dict[int, tuple[str, bool, str | None]] | None:
    to_json = getattr(result, "to_json", None)
    doc = to_json() if callable(to_json) else result
    if not isinstance(doc, dict):
        return None
    fds = doc.get("fds")
    if not isinstance(fds, list):
        return None
    out: dict[int, tuple[str, bool, str | None]] = {}
    for item in fds:
        if isinstance(item, dict) and isinstance(item.get("fd"), int):
            verdict = item.get("verdict")
            if isinstance(verdict, str):
                # A verdict without a "certain" flag is taken as a guess.
                certain = item.get("certain") is True
                evidence = item.get("evidence")
                out[item["fd"]] = (
                    verdict,
                    certain,
                    evidence if isinstance(evidence, str) else None,
                )
    return out


def from_attribute(pid: int) -> tuple[dict[int, Owner], str] | None:
    """Per-fd ownership from fdguard.attribute.explain(pid), or None if unavailable."""
    try:
        mod = importlib.import_module("fdguard.attribute")
    except ImportError:
        return None
    explain = getattr(mod, "explain", None)
    if not callable(explain):
        return None
    try:
        result = explain(pid, timeout=5.0)
    except TypeError:
        try:
            result = explain(pid)
        except Exception:  # an optional join must not sink the trace report
            return None
    except Exception:  # an optional join must not sink the trace report
        return None
    verdicts = _verdicts_from(result)
    if verdicts is None:
        return None
    return map_verdicts(verdicts), "fdguard.attribute.explain"
