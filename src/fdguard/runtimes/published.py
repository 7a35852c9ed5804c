"""Read the open-resource counts an application publishes about itself, in any language.

The convention (documented in README.md, section "fdguard explain"): a process
writes one JSON object to $FDGUARD_AGENT_DIR/PID.expected.json (default
/tmp/fdguard-UID/PID.expected.json), replacing it atomically (write a temporary
file, rename) whenever its counts change:

    {"expected_fds": 42, "resources": {"db_connections": 10, "open_logs": 2}}

Both keys are optional. `expected_fds` is the application's own idea of how
many fds it should hold; `explain` sets it against the actual count. The file
is trusted only if it belongs to the process's user and others cannot write it.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from typing import Any

from fdguard.errors import FdguardError
from fdguard.procfs.maps import read_in_root, stat_in_root
from fdguard.procfs.process import DEFAULT_ROOT
from fdguard.runtimes.agent_client import agent_file


@dataclass(frozen=True, slots=True)
class Published:
    """What the application says it holds."""

    path: str
    expected_fds: int | None
    resources: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "expected_fds": self.expected_fds,
                "resources": dict(self.resources)}


def parse_published(data: bytes, path: str) -> Published | None:
    """The published counts in `data`, or None if it is not the documented shape."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    expected = doc.get("expected_fds")
    if not (expected is None or (isinstance(expected, int) and expected >= 0)):
        return None
    res = doc.get("resources") or {}
    if not isinstance(res, dict):
        return None
    resources = {str(k): v for k, v in res.items() if isinstance(v, int)}
    return Published(path=path, expected_fds=expected, resources=resources)


def published_path(pid: int, *, root: str = DEFAULT_ROOT) -> str:
    """Where `pid` would publish its counts, as it sees it.

    Raises:
        NoSuchProcess, AccessDenied.
    """
    return agent_file(pid, ".expected.json", root=root)[0]


def read_published(pid: int, *, root: str = DEFAULT_ROOT) -> Published | None:
    """The counts `pid` publishes, or None (no file, untrusted file, or malformed).

    Raises:
        NoSuchProcess, AccessDenied: reading the process itself.
    """
    try:
        path, euid = agent_file(pid, ".expected.json", root=root)
    except FdguardError:
        return None  # no status to tell whose file to trust (fake trees): none
    try:
        st = stat_in_root(pid, path, root=root)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != euid or st.st_mode & 0o022:
            return None
        data = read_in_root(pid, path, root=root, limit=1 << 16)
    except OSError:
        return None
    return parse_published(data, path)
