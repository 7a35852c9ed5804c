"""Platform facts: the procfs/system parsers, and read_system over a fake machine tree."""

from __future__ import annotations

from pathlib import Path

from fdguard.procfs.system import (
    container_from_cgroup,
    cpuinfo_has_hypervisor,
    hypervisor_from_dmi,
    parse_file_nr,
    parse_int_file,
    parse_os_release,
    read_system,
)
from fdguard.report.platform import collect_platform

OS_RELEASE = b"""PRETTY_NAME="Alpine Linux v3.19"
NAME="Alpine Linux"
# a comment
ID=alpine
VERSION_ID=3.19.1
HOME_URL="https://alpinelinux.org/"
QUOTED='single \\"x\\"'
"""


def test_parse_os_release() -> None:
    osr = parse_os_release(OS_RELEASE)
    assert osr["PRETTY_NAME"] == "Alpine Linux v3.19"
    assert osr["ID"] == "alpine"
    assert osr["VERSION_ID"] == "3.19.1"
    assert osr["QUOTED"] == 'single "x"'
    assert "# a comment" not in osr


def test_container_and_hypervisor_names() -> None:
    assert container_from_cgroup(b"0::/kubepods/burstable/pod1/abc\n") == "kubernetes"
    assert container_from_cgroup(b"12:pids:/docker/0123abcd\n") == "docker"
    assert container_from_cgroup(b"0::/user.slice/user-1000.slice/session-2.scope\n") is None
    assert hypervisor_from_dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)") == "qemu"
    assert hypervisor_from_dmi("innotek GmbH", "VirtualBox") == "virtualbox"
    assert hypervisor_from_dmi("Dell Inc.", "PowerEdge R740") is None
    assert cpuinfo_has_hypervisor(b"processor: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n")
    assert not cpuinfo_has_hypervisor(b"flags\t\t: fpu vme lahf_lm\n")


def test_int_files() -> None:
    assert parse_int_file(b"9223372036854775807\n") == 9223372036854775807
    assert parse_int_file(b"") is None
    assert parse_file_nr(b"1896\t0\t2466177\n") == (1896, 0, 2466177)
    assert parse_file_nr(b"garbage") is None


def _tree(tmp_path: Path) -> dict[str, str]:
    files = {
        "etc/os-release": OS_RELEASE.decode(),
        "proc/sys/kernel/osrelease": "6.1.0-18-amd64\n",
        "proc/sys/kernel/version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1\n",
        "proc/sys/fs/file-max": "1000000\n",
        "proc/sys/fs/nr_open": "1048576\n",
        "proc/sys/fs/file-nr": "2048\t0\t1000000\n",
        "proc/1/cgroup": "0::/kubepods/besteffort/pod42/cafe\n",
        "proc/cpuinfo": "flags : fpu\n",
        "sys/class/dmi/id/sys_vendor": "QEMU\n",
        "sys/class/dmi/id/product_name": "Standard PC\n",
        "fs/lib/ld-musl-x86_64.so.1": "",
    }
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return {k: str(tmp_path / k) for k in ("proc", "sys", "etc", "fs")}


def test_read_system_over_a_fake_tree(tmp_path: Path) -> None:
    roots = _tree(tmp_path)
    f = read_system(**roots)
    assert f.os_release["PRETTY_NAME"] == "Alpine Linux v3.19"
    assert f.kernel_release == "6.1.0-18-amd64"
    assert f.file_max == 1000000
    assert f.nr_open == 1048576
    assert f.file_nr == (2048, 0, 1000000)
    assert f.container == "kubernetes"
    assert f.virtualization == "qemu"
    assert f.libc is not None
    assert f.libc.startswith("musl")
    rows = dict(collect_platform(None, facts=f).rows())
    assert rows["OS"] == "Alpine Linux v3.19"
    assert rows["fs.nr_open"] == "1048576"
    assert rows["container"].startswith("kubernetes")
    assert "RLIMIT_NOFILE of the target" not in rows


def test_missing_files_are_unknown_not_errors(tmp_path: Path) -> None:
    f = read_system(proc=str(tmp_path / "p"), sys=str(tmp_path / "s"),
                    etc=str(tmp_path / "e"), fs=str(tmp_path / "f"))
    assert f.os_release == {}
    assert f.file_max is None
    assert f.nr_open is None
    assert f.container is None
    assert f.virtualization is None
    assert f.notes
    rows = dict(collect_platform(None, facts=f).rows())
    assert rows["OS"] == "unknown"
    assert rows["fs.file-max"] == "unknown"
