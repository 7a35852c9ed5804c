"""Handle views: what libuv and the application say they hold, as one runtime-neutral type.

A view comes from Node.js's diagnostic report (its `libuv` section lists every
handle of the main loop with the fd of each stream), from fdguard's Python
agent (the loop's transports, servers, sockets and files), or from an
application publishing its own list. Views are data only; `attribute` joins
them with the fds the kernel shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What owning an fd means for the verdict: a libuv handle or a Python object
# wrapping a socket is the application's "handle"; a file object is "fs".
OWNER_HANDLE = "handle"
OWNER_FS = "fs"
OWNER_INTERNAL = "loop-internal"
_OWNERS = frozenset({OWNER_HANDLE, OWNER_FS, OWNER_INTERNAL})


@dataclass(frozen=True, slots=True)
class Handle:
    """One thing that says it owns an fd (or, for fd None, owns no fd: timers, asyncs...).

    Attributes:
        type: the runtime's word for it ("tcp", "pipe", "udp", "tty", "socket", "file"...).
        fd: the fd it owns, if any.
        owns: OWNER_HANDLE, OWNER_FS or OWNER_INTERNAL.
        active / referenced / closing: libuv's flags when known.
        detail: a short description (endpoints, path, the Python object's type).
    """

    type: str
    fd: int | None
    owns: str = OWNER_HANDLE
    active: bool | None = None
    referenced: bool | None = None
    closing: bool | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.owns not in _OWNERS:
            raise ValueError(f"owns must be one of {sorted(_OWNERS)}, not {self.owns!r}")

    def describe(self) -> str:
        parts = [self.type]
        if self.active is not None:
            parts.append("active" if self.active else "inactive")
        if self.closing:
            parts.append("closing")
        if self.referenced is False:
            parts.append("unref'd")
        text = " ".join(parts)
        if self.detail:
            text += f" ({self.detail})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "fd": self.fd,
            "owns": self.owns,
            "active": self.active,
            "referenced": self.referenced,
            "closing": self.closing,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class HandleView:
    """Everything one source says the process holds.

    Attributes:
        source: where the view came from ("node-report:signal", "agent:python", ...).
        handles: every handle listed, with or without an fd.
        complete: True when the source lists every fd-owning object it knows of
            (a Node report covers the main loop's handles but not fs.open fds).
        versions: versions the source reports (e.g. {"node": "v20.20.2", "uv": "1.46.0"}).
        notes: caveats of this source.
    """

    source: str
    handles: tuple[Handle, ...]
    versions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def by_fd(self) -> dict[int, Handle]:
        out: dict[int, Handle] = {}
        for h in self.handles:
            if h.fd is not None and h.fd >= 0:
                # A handle beats a Python wrapper of the same fd: keep the first libuv-ish one.
                out.setdefault(h.fd, h)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "handles": len(self.handles),
            "with_fd": sum(1 for h in self.handles if h.fd is not None and h.fd >= 0),
            "versions": dict(self.versions),
            "notes": list(self.notes),
        }
