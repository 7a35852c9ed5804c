"""Fetch libuv sources from the package registries: the libuv that uvloop sdists on PyPI vendor.

Different uvloop releases vendor different libuv releases under vendor/libuv
(uvloop 0.9.1: libuv 1.17.0, 0.10.3: 1.20.3, 0.11.3: 1.22.0, 0.12.2: 1.23.0,
0.14.0: 1.33.1, 0.16.0: 1.42.0, 0.17.0: 1.43.0, 0.19.0: 1.46.0, 0.21.0 and
0.22.1: 1.48.0, read from each sdist's include/uv/version.h), so `pip
download` of an sdist is a way to get a libuv release's source tree with the
ordinary PyPI client. pip prepares the sdist's metadata even for a download;
with `wheel` installed that runs in the current environment
(--no-build-isolation) in seconds instead of building a Cython environment.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from fdguard.errors import LabBuildError

# uvloop release -> the libuv release its sdist vendors.
UVLOOP_VENDORED_LIBUV: dict[str, str] = {
    "0.9.1": "1.17.0", "0.10.3": "1.20.3", "0.11.3": "1.22.0", "0.12.2": "1.23.0",
    "0.14.0": "1.33.1", "0.16.0": "1.42.0", "0.17.0": "1.43.0", "0.19.0": "1.46.0",
    "0.21.0": "1.48.0", "0.22.1": "1.48.0",
}


def fetch_uvloop_sdist(version: str, dest: Path, *, timeout: float = 600) -> Path:
    """Download uvloop==`version`'s sdist into `dest` (reused if already there).

    Raises:
        LabBuildError: pip failed or produced no tarball.
    """
    dest.mkdir(parents=True, exist_ok=True)
    existing = dest / f"uvloop-{version}.tar.gz"
    if existing.is_file():
        return existing
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", f"uvloop=={version}", "-d", str(dest)]
    if importlib.util.find_spec("wheel") is not None:
        cmd.insert(cmd.index("--no-deps"), "--no-build-isolation")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise LabBuildError(f"pip download uvloop=={version} timed out") from err
    if proc.returncode != 0 or not existing.is_file():
        raise LabBuildError(f"pip download uvloop=={version} failed: {proc.stderr[-1500:]}")
    return existing
