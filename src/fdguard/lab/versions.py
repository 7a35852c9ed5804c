"""Resolve what `--libuv` names (a path, "system", "uvloop", a cached build) to a library."""

from __future__ import annotations

import ctypes.util
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from fdguard.errors import UsageError
from fdguard.lab.build import cached_builds

SYSTEM_LIBUV = "/usr/lib/x86_64-linux-gnu/libuv.so.1"


@dataclass(frozen=True)
class LibuvTarget:
    """A libuv to run scenarios against: where it is and what it is."""

    label: str  # "system", "uvloop", "1.20.3", or the path
    path: Path
    origin: str  # "system" | "uvloop-wheel" | "build" | "path"


def system_libuv() -> Path | None:
    """Debian's libuv1 shared library, if installed."""
    if Path(SYSTEM_LIBUV).exists():
        return Path(SYSTEM_LIBUV)
    found = ctypes.util.find_library("uv")
    return Path(found) if found and Path(found).is_absolute() else None


def uvloop_extension() -> Path | None:
    """uvloop's extension module, which links libuv statically and exports its uv_* symbols."""
    spec = importlib.util.find_spec("uvloop")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        for p in sorted(Path(loc).glob("loop.*.so")):
            return p
    return None


def resolve(spec: str, *, cache_dir: Path | None = None) -> LibuvTarget:
    """Turn a `--libuv` value into a target.

    "system" is Debian's libuv, "uvloop" the installed uvloop wheel's copy, a
    version ("1.20.3") or cache key names a build in the cache, anything else
    must be a path to a shared object exporting uv_*.

    Raises:
        UsageError: nothing by that name.
    """
    if spec == "system":
        p = system_libuv()
        if p is None:
            raise UsageError("no system libuv: install libuv1-dev (scripts/setup.sh does)")
        return LibuvTarget("system", p, "system")
    if spec == "uvloop":
        p = uvloop_extension()
        if p is None:
            raise UsageError("uvloop is not installed")
        return LibuvTarget("uvloop", p, "uvloop-wheel")
    path = Path(spec)
    if path.exists():
        if path.is_dir() and (path / "libuv.so").is_file():
            path = path / "libuv.so"
        return LibuvTarget(spec, path.resolve(), "path")
    if re.match(r"^\d+\.\d+\.\d+", spec):
        matches = [bld for bld in cached_builds(cache_dir)
                   if spec in (bld.key, bld.version) or bld.key.startswith(spec + "-")]
        if matches:
            return LibuvTarget(matches[-1].version, matches[-1].library, "build")
        raise UsageError(f"no cached libuv build {spec}: run `fdguard lab build SOURCE` first")
    raise UsageError(f"{spec}: not a path, 'system', 'uvloop' or a cached libuv version")
