"""Durations on the command line: `500ms`, `60s`, `2m`, `1h`, `7d`, `1w` or plain seconds."""

from __future__ import annotations

import re

from fdguard.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT = {
    "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0
}


def parse_duration(text: str) -> float:
    """`60s`, `2m`, `500ms`, `1h`, `7d`, `1w` or plain seconds -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"not a duration: {text!r} (use e.g. 60s, 2m, 500ms, 7d)")
    value = float(m.group(1)) * _UNIT[m.group(2)]
    if value <= 0:
        raise UsageError(f"a duration must be longer than 0s, got {text!r}")
    return value
