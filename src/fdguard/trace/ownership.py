"""Ask `explain` (fdguard.attribute) which fds a live libuv handle owns, when it can say.

`trace` does not depend on attribute.py at import time: the handle view is
an optional join. Whatever shape of per-fd verdict attribute offers is
mapped here onto `Ownership`; anything unexpected means "no handle view".
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from fdguard.trace.report import Ownership

# explain's fds[].verdict values (DESIGN.md) -> ownership.
_BY_VERDICT: dict[str, Ownership] = {
    "handle": Ownership.HANDLE,
    "loop-internal": Ownership.LOOP,
    "unowned": Ownership.NONE,
    "stdio": Ownership.NONE,
    "inherited": Ownership.NONE,
    "fs": Ownership.NONE,
}


def map_verdicts(verdicts: Mapping[int, str]) -> dict[int, Ownership]:
    """explain's verdict strings per fd -> Ownership ("unknown" for anything else)."""
    return {fd: _BY_VERDICT.get(v, Ownership.UNKNOWN) for fd, v in verdicts.items()}


def _verdicts_from(result: Any) -> dict[int, str] | None:
    to_json = getattr(result, "to_json", None)
    doc = to_json() if callable(to_json) else result
    if not isinstance(doc, dict):
        return None
    fds = doc.get("fds")
    if not isinstance(fds, list):
        return None
    out: dict[int, str] = {}
    for item in fds:
        if isinstance(item, dict) and isinstance(item.get("fd"), int):
            verdict = item.get("verdict")
            if isinstance(verdict, str):
                out[item["fd"]] = verdict
    return out


def from_attribute(pid: int) -> tuple[dict[int, Ownership], str] | None:
    """Per-fd ownership from fdguard.attribute.explain(pid), or None if unavailable."""
    try:
        mod = importlib.import_module("fdguard.attribute")
    except ImportError:
        return None
    explain = getattr(mod, "explain", None)
    if not callable(explain):
        return None
    try:
        result = explain(pid)
    except Exception:  # an optional join must not sink the trace report
        return None
    verdicts = _verdicts_from(result)
    if verdicts is None:
        return None
    return map_verdicts(verdicts), "fdguard.attribute.explain"
