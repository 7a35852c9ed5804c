"""Build a libuv source tree (checkout, tarball, an sdist's vendored copy) into a cached libuv.so.

Sources are found, not assumed: SOURCE may be a libuv tree, a directory or
tarball that vendors one (uvloop's sdists carry `vendor/libuv`), or a git
checkout at any commit. The tree's identity is its version (from
include/uv/version.h, or include/uv-version.h before 1.21) plus a digest of
every file that goes into the library, so two commits with the same version
number never share a cache entry and rebuilding an unchanged tree is a cache
hit. Each entry is a directory:

    <cache>/libuv/<version>-<digest12>/libuv.so, libuv.so.1 -> libuv.so,
                                      include/, build.json

Two build methods, both without the test suite:
- cmake (trees that have CMakeLists.txt, 1.21+): only the shared `uv` target,
  BUILD_TESTING/LIBUV_BUILD_TESTS off.
- gcc (older trees, autotools only): the source list of Makefile.am's
  `libuv_la_SOURCES` with the automake conditionals evaluated for Linux,
  compiled and linked directly, so no autogen/libtool is needed.
Assertions stay on in both (no -DNDEBUG): a lab run is a debugging run, and
libuv's asserts are how "calls on a closing handle" show up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fdguard.errors import LabBuildError, ToolMissing

CACHE_ENV = "FDGUARD_CACHE"


def default_cache_dir() -> Path:
    """$FDGUARD_CACHE, else $XDG_CACHE_HOME/fdguard, else ~/.cache/fdguard."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fdguard"


@dataclass(frozen=True)
class LibuvBuild:
    """A built (or cached) libuv shared library."""

    version: str
    key: str
    library: Path
    include: Path
    method: str  # "cmake" | "gcc"
    source: str
    commit: str | None
    cached: bool  # True when this call reused an existing build
    seconds: float  # build time when it was built


_VERSION_RE = re.compile(rb"#define\s+UV_VERSION_(MAJOR|MINOR|PATCH|IS_RELEASE|SUFFIX)\s+(\S+)")


def parse_version_header(data: bytes) -> str:
    """"1.44.2" (or "1.45.0-dev") from the text of uv/version.h."""
    fields = {m.group(1).decode(): m.group(2).decode() for m in _VERSION_RE.finditer(data)}
    try:
        v = f"{int(fields['MAJOR'])}.{int(fields['MINOR'])}.{int(fields['PATCH'])}"
    except (KeyError, ValueError) as err:
        raise LabBuildError(f"not a libuv version header: {err}") from err
    suffix = fields.get("SUFFIX", '""').strip('"')
    if fields.get("IS_RELEASE", "1") == "0" and suffix:
        v += f"-{suffix}"
    return v


def version_key(version: str) -> tuple[int, ...]:
    """Sort key for "1.44.2" / "1.45.0-dev": numbers first, a pre-release before its release."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)(-.+)?", version)
    if not m:
        return (0,)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if m.group(4) else 1)


def _version_header(root: Path) -> Path:
    for rel in ("include/uv/version.h", "include/uv-version.h"):
        if (root / rel).is_file():
            return root / rel
    raise LabBuildError(f"{root} has no include/uv/version.h")


def find_libuv_root(source: Path) -> Path:
    """The libuv tree inside `source`: itself, vendor/libuv, or one directory down."""
    candidates = [source, source / "vendor" / "libuv", source / "deps" / "uv"]
    if source.is_dir():
        for child in sorted(source.iterdir()):
            if child.is_dir():
                candidates += [child, child / "vendor" / "libuv", child / "deps" / "uv"]
    for c in candidates:
        if (c / "include" / "uv.h").is_file() and (c / "src" / "unix" / "core.c").is_file():
            return c
    raise LabBuildError(f"no libuv source tree (include/uv.h + src/unix/core.c) in {source}")


def tree_digest(root: Path) -> str:
    """A digest of everything that goes into the library: sources, headers, build files."""
    h = hashlib.sha256()
    files: list[Path] = []
    for sub in ("src", "include"):
        files += [p for p in (root / sub).rglob("*") if p.is_file() and "win" not in p.parts]
    files += [root / n for n in ("CMakeLists.txt", "Makefile.am") if (root / n).is_file()]
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


# -- autotools source list ---------------------------------------------------

_TRUE_CONDITIONS = frozenset({"LINUX"})


def makefile_am_sources(text: str) -> list[str]:
    """The .c files of `libuv_la_SOURCES` for Linux, automake conditionals evaluated."""
    joined = re.sub(r"\\\n", " ", text)
    stack: list[bool] = []
    out: list[str] = []
    for line in joined.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "if" and len(words) > 1:
            cond = words[1]
            val = cond.lstrip("!") in _TRUE_CONDITIONS
            stack.append(not val if cond.startswith("!") else val)
            continue
        if words[0] == "else" and stack:
            stack[-1] = not stack[-1]
            continue
        if words[0] == "endif" and stack:
            stack.pop()
            continue
        if not all(stack):
            continue
        if words[0] == "libuv_la_SOURCES" and len(words) > 1 and words[1] in ("=", "+="):
            out += [w for w in words[2:] if w.endswith(".c")]
    return list(dict.fromkeys(out))


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise ToolMissing(cmd[0], "scripts/setup.sh installs cmake and gcc") from err
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise LabBuildError(f"{' '.join(cmd[:3])}... failed ({proc.returncode}):\n{tail}")


CFLAGS = ["-O1", "-g", "-fPIC", "-fno-strict-aliasing"]


def _build_gcc(root: Path, out: Path, work: Path, jobs: int) -> None:
    sources = makefile_am_sources((root / "Makefile.am").read_text())
    if not sources:
        raise LabBuildError(f"no Linux sources found in {root / 'Makefile.am'}")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ToolMissing("gcc", "scripts/setup.sh installs it")
    defs = ["-D_GNU_SOURCE", "-D_LARGEFILE_SOURCE", "-D_FILE_OFFSET_BITS=64"]
    incs = [f"-I{root / 'include'}", f"-I{root / 'src'}", f"-I{root / 'src' / 'unix'}"]
    objs = [work / (s.replace("/", "_") + ".o") for s in sources]

    def compile_one(pair: tuple[str, Path]) -> None:
        src, obj = pair
        _run([cc, *CFLAGS, "-pthread", *defs, *incs, "-c", str(root / src), "-o", str(obj)])

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(compile_one, zip(sources, objs, strict=True)))
    _run([cc, "-shared", "-pthread", "-Wl,-soname,libuv.so.1", "-o", str(out),
          *map(str, objs), "-ldl", "-lrt"])


def _build_cmake(root: Path, out: Path, work: Path, jobs: int) -> None:
    if shutil.which("cmake") is None:
        raise ToolMissing("cmake", "scripts/setup.sh installs it")
    _run(["cmake", "-S", str(root), "-B", str(work), "-DBUILD_TESTING=OFF",
          "-DLIBUV_BUILD_TESTS=OFF", "-DLIBUV_BUILD_BENCH=OFF",
          f"-DCMAKE_C_FLAGS={' '.join(CFLAGS)}"])
    _run(["cmake", "--build", str(work), "--target", "uv", "--", f"-j{jobs}"])
    built = sorted((p for p in work.glob("libuv.so*") if p.is_file() and not p.is_symlink()),
                   key=lambda p: len(p.name))
    if not built:
        raise LabBuildError(f"cmake built no libuv.so in {work}")
    shutil.copyfile(built[-1], out)


def _git_commit(root: Path) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0 and (root / ".git").exists():
            return proc.stdout.strip()
    return None


@contextlib.contextmanager
def _unpacked(source: Path) -> Iterator[Path]:
    if source.is_dir():
        yield source
        return
    if not tarfile.is_tarfile(source):
        raise LabBuildError(f"{source} is neither a directory nor a tarball")
    with tempfile.TemporaryDirectory(prefix="fdguard-src-") as tmp, tarfile.open(source) as tar:
        tar.extractall(tmp, filter="data")
        yield Path(tmp)


def _load_entry(entry: Path, cached: bool) -> LibuvBuild:
    meta = json.loads((entry / "build.json").read_text())
    return LibuvBuild(meta["version"], entry.name, entry / "libuv.so", entry / "include",
                      meta["method"], meta["source"], meta.get("commit"), cached,
                      float(meta["seconds"]))


def build(
    source: str | os.PathLike[str],
    *,
    cache_dir: Path | None = None,
    method: str = "auto",
    jobs: int = 2,
    commit: str | None = None,
) -> LibuvBuild:
    """Build `source` into a cached libuv.so, or return the cached build of the same tree.

    Args:
        source: a libuv tree, a directory or tarball vendoring one, or a git checkout.
        cache_dir: the cache root (default `default_cache_dir()`); entries go under libuv/.
        method: "auto" (cmake when the tree has CMakeLists.txt, else gcc), "cmake" or "gcc".
        jobs: parallel compile jobs.
        commit: the commit the tree was exported from, recorded in build.json.

    Raises:
        LabBuildError, ToolMissing.
    """
    src = Path(source).resolve()
    if not src.exists():
        raise LabBuildError(f"{src} does not exist")
    cache = (cache_dir or default_cache_dir()) / "libuv"
    with _unpacked(src) as unpacked:
        root = find_libuv_root(unpacked)
        version = parse_version_header(_version_header(root).read_bytes())
        key = f"{version}-{tree_digest(root)[:12]}"
        entry = cache / key
        if (entry / "build.json").is_file() and (entry / "libuv.so").is_file():
            return _load_entry(entry, cached=True)
        chosen = method
        if chosen == "auto":
            chosen = "cmake" if (root / "CMakeLists.txt").is_file() else "gcc"
        if chosen == "gcc" and not (root / "Makefile.am").is_file():
            raise LabBuildError(f"{root} has no Makefile.am to take the source list from")
        cache.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        # Build into a sibling temp dir and rename: a crashed or concurrent build
        # never leaves a half-written entry that later looks like a cache hit.
        with tempfile.TemporaryDirectory(prefix=f".{key}-", dir=cache) as tmp:
            staging = Path(tmp) / "entry"
            staging.mkdir()
            work = Path(tmp) / "work"
            work.mkdir()
            lib = staging / "libuv.so"
            if chosen == "cmake":
                _build_cmake(root, lib, work, jobs)
            else:
                _build_gcc(root, lib, work, jobs)
            (staging / "libuv.so.1").symlink_to("libuv.so")
            shutil.copytree(root / "include", staging / "include")
            meta = {
                "version": version, "method": chosen, "source": str(src),
                "commit": commit or _git_commit(root),
                "seconds": round(time.monotonic() - started, 2),
            }
            (staging / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
            try:
                staging.rename(entry)
            except OSError:
                if not (entry / "build.json").is_file():
                    raise
    return _load_entry(entry, cached=False)


def cached_builds(cache_dir: Path | None = None) -> list[LibuvBuild]:
    """Every build in the cache, oldest version first."""
    cache = (cache_dir or default_cache_dir()) / "libuv"
    if not cache.is_dir():
        return []
    out = [_load_entry(e, cached=True) for e in cache.iterdir()
           if (e / "build.json").is_file() and (e / "libuv.so").is_file()]
    return sorted(out, key=lambda x: version_key(x.version))
