"""Build the native test programs of the explain tests (a C service on the system
libuv, a leaking Node addon) with gcc; import it from tests via `load()`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is not installed: .ci/run installs build-essential")
    return gcc


def build_uvloops(outdir: Path) -> Path:
    """explain_uvloops.c linked against the system libuv (Debian libuv1-dev)."""
    exe = outdir / "explain_uvloops"
    subprocess.run([_gcc(), "-O2", "-Wall", "-o", str(exe), str(HERE / "explain_uvloops.c"),
                    "-luv", "-lpthread"], check=True, capture_output=True)
    return exe


def build_leak_addon(outdir: Path) -> Path:
    """explain_leak_addon.c as a Node N-API addon (headers from /usr/include/node)."""
    addon = outdir / "explain_leak.node"
    subprocess.run([_gcc(), "-shared", "-fPIC", "-O2", "-Wall", "-I/usr/include/node",
                    "-DNODE_GYP_MODULE_NAME=explain_leak", "-o", str(addon),
                    str(HERE / "explain_leak_addon.c")], check=True, capture_output=True)
    return addon
