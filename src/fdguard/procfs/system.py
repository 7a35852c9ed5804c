"""Read the machine's own facts for bug reports: os-release, kernel, libc, container, VM, fs limits.

Pure `parse_x(data)` functions plus one `read_system(...)` that does the I/O.
Every path is relative to roots given as parameters (`proc`, `sys`, `etc`,
`fs`), so tests point them at a committed fake tree. Nothing here raises for a
missing file: a fact that cannot be read is None and the reason goes to
`notes`, because a report with one unknown field beats no report.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# Substrings of /proc/1/cgroup (v1 paths, or the v2 "0::/..." line) that name a
# container runtime; checked in this order.
_CGROUP_RUNTIMES: tuple[tuple[str, str], ...] = (
    ("kubepods", "kubernetes"),
    ("docker", "docker"),
    ("libpod", "podman"),
    ("containerd", "containerd"),
    ("lxc", "lxc"),
    ("machine.slice", "systemd-nspawn"),
)

# /sys/class/dmi/id/{sys_vendor,product_name} values that name a hypervisor.
_DMI_HYPERVISORS: tuple[tuple[str, str], ...] = (
    ("qemu", "qemu"),
    ("kvm", "kvm"),
    ("vmware", "vmware"),
    ("virtualbox", "virtualbox"),
    ("innotek", "virtualbox"),
    ("microsoft corporation", "hyper-v"),
    ("xen", "xen"),
    ("amazon ec2", "amazon"),
    ("google compute engine", "google"),
    ("bochs", "bochs"),
    ("firecracker", "firecracker"),
    ("cloud hypervisor", "cloud-hypervisor"),
)

_MUSL_LOADER = re.compile(r"^ld-musl-[^/]+\.so\.1$")


@dataclass(frozen=True, slots=True)
class SystemFacts:
    """What the machine says about itself; None where it could not be read (see `notes`)."""

    os_release: dict[str, str]
    kernel_release: str | None
    kernel_version: str | None
    arch: str | None
    libc: str | None
    container: str | None
    container_evidence: str | None
    virtualization: str | None
    virtualization_evidence: str | None
    file_max: int | None
    nr_open: int | None
    file_nr: tuple[int, int, int] | None
    notes: tuple[str, ...] = ()


def parse_os_release(data: bytes) -> dict[str, str]:
    """KEY=value lines of os-release(5); quotes and backslash escapes removed."""
    out: dict[str, str] = {}
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            value = re.sub(r"\\(.)", r"\1", value)
        out[key.strip()] = value
    return out


def parse_int_file(data: bytes) -> int | None:
    """A /proc/sys integer (fs.file-max, fs.nr_open)."""
    try:
        return int(data.split()[0])
    except (IndexError, ValueError):
        return None


def parse_file_nr(data: bytes) -> tuple[int, int, int] | None:
    """/proc/sys/fs/file-nr: allocated file handles, unused allocated ones, the maximum."""
    parts = data.split()
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None


def container_from_cgroup(data: bytes) -> str | None:
    """The container runtime named in /proc/1/cgroup, or None."""
    text = data.decode("utf-8", "replace").lower()
    for needle, name in _CGROUP_RUNTIMES:
        if needle in text:
            return name
    return None


def hypervisor_from_dmi(vendor: str, product: str) -> str | None:
    """The hypervisor named by the DMI vendor or product string, or None."""
    both = f"{vendor} {product}".lower()
    for needle, name in _DMI_HYPERVISORS:
        if needle in both:
            return name
    return None


def cpuinfo_has_hypervisor(data: bytes) -> bool:
    """Whether the CPU flags include `hypervisor` (set by every x86 hypervisor)."""
    for line in data.split(b"\n"):
        if line.startswith((b"flags", b"Features")) and b":" in line:
            return b"hypervisor" in line.split(b":", 1)[1].split()
    return False


def _read(path: str, limit: int = 1 << 20) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_file_nr(*, proc: str = "/proc") -> tuple[int, int, int] | None:
    """fs.file-nr now (allocated file handles, unused ones, fs.file-max): the host's own
    table, whose exhaustion is ENFILE for every process. None if unreadable."""
    raw = _read(os.path.join(proc, "sys/fs/file-nr"))
    return parse_file_nr(raw) if raw else None


def _libc(fs: str) -> tuple[str | None, str | None]:
    """The C library of this machine: glibc's own version string, or musl's loader."""
    try:
        gnu = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        gnu = None
    if gnu and fs == "/":
        return gnu, None
    for d in ("lib", "usr/lib"):
        try:
            names = os.listdir(os.path.join(fs, d))
        except OSError:
            continue
        for name in names:
            if _MUSL_LOADER.match(name):
                return f"musl ({d}/{name})", None
    if gnu:
        return gnu, None
    return None, "no glibc version and no musl loader found"


def read_system(
    *,
    proc: str = "/proc",
    sys: str = "/sys",
    etc: str = "/etc",
    fs: str = "/",
) -> SystemFacts:
    """Read the machine's facts (see `SystemFacts`). Never raises for a missing file."""
    notes: list[str] = []
    osr = _read(os.path.join(etc, "os-release")) or _read(
        os.path.join(fs, "usr/lib/os-release")
    )
    os_release = parse_os_release(osr) if osr else {}
    if not os_release:
        notes.append("no os-release file")

    def text(path: str) -> str | None:
        data = _read(path)
        return data.decode("utf-8", "replace").strip() if data is not None else None

    kernel_release = text(os.path.join(proc, "sys/kernel/osrelease"))
    kernel_version = text(os.path.join(proc, "sys/kernel/version"))
    uname = os.uname()
    if kernel_release is None and proc == "/proc":
        kernel_release = uname.release
    arch = uname.machine if proc == "/proc" else None
    libc, libc_note = _libc(fs)
    if libc_note:
        notes.append(libc_note)

    container = evidence = None
    if os.path.exists(os.path.join(fs, ".dockerenv")):
        container, evidence = "docker", "/.dockerenv exists"
    elif os.path.exists(os.path.join(fs, "run/.containerenv")):
        container, evidence = "podman", "/run/.containerenv exists"
    else:
        cg = _read(os.path.join(proc, "1/cgroup"))
        name = container_from_cgroup(cg) if cg else None
        if name is not None:
            container, evidence = name, "named in /proc/1/cgroup"

    virt = virt_evidence = None
    vendor = text(os.path.join(sys, "class/dmi/id/sys_vendor")) or ""
    product = text(os.path.join(sys, "class/dmi/id/product_name")) or ""
    hv = hypervisor_from_dmi(vendor, product)
    if hv is not None:
        virt, virt_evidence = hv, f"DMI: {vendor} {product}".strip()
    elif os.path.exists(os.path.join(proc, "xen")):
        virt, virt_evidence = "xen", "/proc/xen exists"
    else:
        cpu = _read(os.path.join(proc, "cpuinfo"), 1 << 22)
        if cpu is not None and cpuinfo_has_hypervisor(cpu):
            virt, virt_evidence = "unknown hypervisor", "cpu flag 'hypervisor'"
    file_max_raw = _read(os.path.join(proc, "sys/fs/file-max"))
    nr_open_raw = _read(os.path.join(proc, "sys/fs/nr_open"))
    file_nr_raw = _read(os.path.join(proc, "sys/fs/file-nr"))
    if file_max_raw is None or nr_open_raw is None:
        notes.append("fs.file-max or fs.nr_open unreadable")
    return SystemFacts(
        os_release=os_release,
        kernel_release=kernel_release,
        kernel_version=kernel_version,
        arch=arch,
        libc=libc,
        container=container,
        container_evidence=evidence,
        virtualization=virt,
        virtualization_evidence=virt_evidence,
        file_max=parse_int_file(file_max_raw) if file_max_raw else None,
        nr_open=parse_int_file(nr_open_raw) if nr_open_raw else None,
        file_nr=parse_file_nr(file_nr_raw) if file_nr_raw else None,
        notes=tuple(notes),
    )


__all__ = [
    "SystemFacts",
    "container_from_cgroup",
    "cpuinfo_has_hypervisor",
    "hypervisor_from_dmi",
    "parse_file_nr",
    "parse_int_file",
    "parse_os_release",
    "read_file_nr",
    "read_system",
]
