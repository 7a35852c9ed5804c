"""The platform section of a bug report: OS, kernel, arch, libc, container/VM, fd limits.

The facts come from `fdguard.procfs.system` (the machine) and, when the target
still runs, from its own maps and limits (`fdguard.procfs`): the libc a process
maps can differ from the host's (a musl container on a glibc host), and its
RLIMIT_NOFILE is what it hits, not the shell's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fdguard.errors import FdguardError
from fdguard.model import Limits
from fdguard.procfs.maps import read_maps
from fdguard.procfs.pids import read_limits
from fdguard.procfs.process import DEFAULT_ROOT
from fdguard.procfs.system import SystemFacts, read_system

_LIBC_MAPPED = re.compile(r"/(?:libc\.so\.6|libc-[\d.]+\.so|ld-musl-[^/]+\.so\.1)$")


@dataclass(frozen=True, slots=True)
class Platform:
    """Everything the Platform section says, each fact with where it came from."""

    facts: SystemFacts
    target_limits: Limits | None
    target_limits_source: str | None
    target_libc: str | None

    @property
    def os_name(self) -> str | None:
        osr = self.facts.os_release
        return osr.get("PRETTY_NAME") or (
            f"{osr.get('NAME', '')} {osr.get('VERSION', '')}".strip() or None
        )

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) rows for a table; unknown facts say so instead of vanishing."""
        f = self.facts
        unknown = "unknown"

        def lim(v: int | None) -> str:
            return "unlimited" if v is None else str(v)

        rows = [
            ("OS", self.os_name or unknown),
            ("kernel", f.kernel_release or unknown),
            ("architecture", f.arch or unknown),
            ("libc (host)", f.libc or unknown),
        ]
        if self.target_libc is not None:
            rows.append(("libc (mapped by the target)", self.target_libc))
        rows.append(
            (
                "container",
                f"{f.container} ({f.container_evidence})" if f.container else "none detected",
            )
        )
        rows.append(
            (
                "virtualisation",
                f"{f.virtualization} ({f.virtualization_evidence})"
                if f.virtualization
                else "none detected",
            )
        )
        if self.target_limits is not None:
            rows.append(
                (
                    "RLIMIT_NOFILE of the target",
                    f"soft {lim(self.target_limits.soft)}, hard {lim(self.target_limits.hard)}"
                    f" ({self.target_limits_source})",
                )
            )
        rows.append(("fs.file-max", str(f.file_max) if f.file_max is not None else unknown))
        rows.append(("fs.nr_open", str(f.nr_open) if f.nr_open is not None else unknown))
        if f.file_nr is not None:
            rows.append(("fs.file-nr (allocated, free, max)", " ".join(map(str, f.file_nr))))
        return rows


def collect_platform(
    pid: int | None,
    *,
    recorded_limits: Limits | None = None,
    root: str = DEFAULT_ROOT,
    facts: SystemFacts | None = None,
) -> Platform:
    """The platform of this machine and, when `pid` runs, of the target.

    `recorded_limits` (the soft limit the store recorded) is used when the
    target is gone. Never raises for a fact that cannot be read.
    """
    facts = facts or read_system(proc=root)
    limits: Limits | None = None
    source: str | None = None
    libc: str | None = None
    if pid is not None:
        try:
            limits = read_limits(pid, root=root)
            source = "read from the live process"
        except FdguardError:
            limits = None
        try:
            for obj in read_maps(pid, root=root):
                if _LIBC_MAPPED.search(obj.path):
                    libc = obj.path
                    break
        except FdguardError:
            libc = None
    if limits is None and recorded_limits is not None:
        limits, source = recorded_limits, "as recorded by fdguard watch"
    return Platform(facts, limits, source, libc)


__all__ = ["Platform", "collect_platform"]
