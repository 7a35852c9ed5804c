"""Tell, from outside a process, which libuv runtime it runs and the exact libuv version.

Where libuv can live in a process, and how each is found:

- linked into the executable (Node.js builds from nodejs.org, NodeSource,
  most distributions' static builds): the executable defines `uv_version`;
- linked into a Python extension module (uvloop's loop.cpython-*.so, which
  vendors its own libuv): that module is in /proc/PID/maps and defines it;
- a shared libuv.so.1 (neovim, BIND, any C service, distribution-built Node
  linked against the system libuv): the library is in the maps.

The version is read from the object that defines the symbol (see `elf`), never
guessed from a package name: a wheel vendors whatever libuv it was built with.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from fdguard.errors import AccessDenied, NoSuchProcess
from fdguard.procfs.maps import (
    MappedObject,
    exe_path,
    list_in_root,
    open_exe,
    open_in_root,
    read_in_root,
    read_maps,
)
from fdguard.procfs.process import DEFAULT_ROOT
from fdguard.runtimes.elf import ElfError, LibuvBuild, read_libuv_build

_SHARED_LIBUV = re.compile(r"/libuv\.so(?:\.\d+)*$")
_UVLOOP_MODULE = re.compile(r"/uvloop/loop\.[^/]*\.so$")
_NODE_EXE = re.compile(r"/(?:node|nodejs)(?:\d+)?$")


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """The libuv runtime of a process.

    Attributes:
        name: "node", "uvloop" or "libuv" (any other program on libuv).
        libuv_version: what `uv_version_string()` of that build returns.
        source: how it was found, in words (which symbol, in which file).
        path: the file that carries libuv (executable, extension module or libuv.so).
        linkage: "executable", "extension" or "shared".
        versions: other versions that matter (e.g. {"uvloop": "0.23.0"}).
        notes: what could not be read, and why.
    """

    name: str
    libuv_version: str | None
    source: str
    path: str
    linkage: str
    versions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "libuv_version": self.libuv_version,
            "source": self.source,
            "path": self.path,
            "linkage": self.linkage,
            "versions": dict(self.versions),
            "notes": list(self.notes),
        }


def _build_of(fd: int, notes: list[str], path: str) -> LibuvBuild | None:
    try:
        return read_libuv_build(fd)
    except (ElfError, OSError, ValueError) as err:
        notes.append(f"could not read the libuv version of {path}: {err}")
        return None


def _build_in_root(pid: int, path: str, root: str, notes: list[str]) -> LibuvBuild | None:
    try:
        fd = open_in_root(pid, path, root=root)
    except OSError as err:
        notes.append(f"cannot open {path}: {err.strerror}")
        return None
    try:
        return _build_of(fd, notes, path)
    finally:
        os.close(fd)


def _uvloop_version(pid: int, module_path: str, root: str) -> str | None:
    """uvloop's version from its dist-info next to the package (or its _version.py)."""
    pkg_dir = os.path.dirname(module_path)
    site = os.path.dirname(pkg_dir)
    try:
        for name in list_in_root(pid, site, root=root):
            m = re.fullmatch(r"uvloop-(.+)\.dist-info", name)
            if m:
                return m.group(1)
    except OSError:
        pass
    try:
        text = read_in_root(pid, f"{pkg_dir}/_version.py", root=root).decode("utf-8", "replace")
    except OSError:
        return None
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return m.group(1) if m else None


def _describe(build: LibuvBuild, path: str, linkage: str) -> str:
    where = {
        "executable": "linked into the executable",
        "extension": "linked into the extension module",
        "shared": "shared library",
    }[linkage]
    return f"{build.method} of {path} ({where})"


def detect(pid: int, *, root: str = DEFAULT_ROOT) -> RuntimeInfo | None:
    """The libuv runtime of `pid`, or None when no libuv is found in it.

    Reads /proc/PID/maps and the ELF objects it names; never touches the process.

    Raises:
        NoSuchProcess, AccessDenied: reading the process's maps or executable.
    """
    maps = read_maps(pid, root=root)
    notes: list[str] = []
    try:
        exe: str | None = exe_path(pid, root=root)
    except NoSuchProcess:
        # Kernel threads (and fake trees) have no executable link; the process
        # itself may well exist: judge it by its maps alone.
        exe = None
    is_node = bool(exe and _NODE_EXE.search(exe))

    uvloop: MappedObject | None = None
    shared: MappedObject | None = None
    for obj in maps:
        if uvloop is None and _UVLOOP_MODULE.search(obj.path):
            uvloop = obj
        elif shared is None and _SHARED_LIBUV.search(obj.path):
            shared = obj

    # libuv inside the executable: Node.js, or a C program linked statically.
    exe_build = None
    if exe is not None:
        try:
            fd = open_exe(pid, root=root)
        except NoSuchProcess:
            fd = -1
        if fd >= 0:
            try:
                exe_build = _build_of(fd, notes, exe)
            finally:
                os.close(fd)
    if exe_build is not None and exe is not None:
        return RuntimeInfo(
            name="node" if is_node else "libuv",
            libuv_version=exe_build.version,
            source=_describe(exe_build, exe, "executable"),
            path=exe,
            linkage="executable",
            notes=tuple(notes),
        )

    if uvloop is not None:
        build = _build_in_root(pid, uvloop.path, root, notes)
        versions: dict[str, str] = {}
        uv_ver = _uvloop_version(pid, uvloop.path, root)
        if uv_ver is not None:
            versions["uvloop"] = uv_ver
        else:
            notes.append("uvloop's own version was not found (no dist-info, no _version.py)")
        return RuntimeInfo(
            name="uvloop",
            libuv_version=build.version if build else None,
            source=_describe(build, uvloop.path, "extension") if build else uvloop.path,
            path=uvloop.path,
            linkage="extension",
            versions=versions,
            notes=tuple(notes),
        )

    if shared is not None:
        build = _build_in_root(pid, shared.path, root, notes)
        return RuntimeInfo(
            name="node" if is_node else "libuv",
            libuv_version=build.version if build else None,
            source=_describe(build, shared.path, "shared") if build else shared.path,
            path=shared.path,
            linkage="shared",
            notes=tuple(notes),
        )
    return None


def detect_json(pid: int, *, root: str = DEFAULT_ROOT) -> dict[str, Any]:
    """`runtime_json(detect(pid))`, except that a process whose maps fdguard may not
    read gets all-null names and says why, instead of failing the caller.

    Raises:
        NoSuchProcess: the process is gone.
    """
    try:
        return runtime_json(detect(pid, root=root))
    except AccessDenied:
        return {"name": None, "libuv_version": None,
                "source": "unknown: access denied reading its maps"}


def runtime_json(info: RuntimeInfo | None) -> dict[str, Any]:
    """The `runtime` object of the JSON contracts; all-null names when no libuv was found."""
    if info is None:
        return {"name": None, "libuv_version": None, "source": "no libuv found"}
    return info.to_json()
