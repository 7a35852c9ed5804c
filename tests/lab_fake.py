"""A tiny fake libuv source tree for lab build and bisect tests: compiles in well under a second.

It exports just what the `loop-churn` scenario calls. Its uv_loop_init opens
/dev/null into the loop; with `leaky=True` uv_loop_close forgets to close it,
so loop-churn leaks one `file` fd per iteration.
"""

from __future__ import annotations

from pathlib import Path

VERSION_H = """#define UV_VERSION_MAJOR 1
#define UV_VERSION_MINOR {minor}
#define UV_VERSION_PATCH 0
#define UV_VERSION_IS_RELEASE 1
#define UV_VERSION_SUFFIX ""
"""

CORE_C = """#include <fcntl.h>
#include <stddef.h>
#include <unistd.h>
#include "uv.h"

struct fake_loop {{ int fd; }};

size_t uv_loop_size(void) {{ return sizeof(struct fake_loop); }}
int uv_loop_init(void* loop) {{
  ((struct fake_loop*) loop)->fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return 0;
}}
int uv_loop_close(void* loop) {{
  {close_stmt}
  return 0;
}}
const char* uv_version_string(void) {{ return "1.{minor}.0"; }}
const char* uv_err_name(int err) {{ (void) err; return "EFAKE"; }}
/* revision {revision} */
"""

MAKEFILE_AM = """lib_LTLIBRARIES = libuv.la
libuv_la_SOURCES = src/unix/core.c
if WINNT
libuv_la_SOURCES += src/win/core.c
endif
"""


def write_fake_libuv(root: Path, *, leaky: bool, minor: int = 99, revision: int = 0) -> Path:
    """Write (or rewrite) the fake tree under `root`; returns `root`."""
    (root / "include" / "uv").mkdir(parents=True, exist_ok=True)
    (root / "src" / "unix").mkdir(parents=True, exist_ok=True)
    (root / "include" / "uv.h").write_text("#include \"uv/version.h\"\n")
    (root / "include" / "uv" / "version.h").write_text(VERSION_H.format(minor=minor))
    close_stmt = "/* forgets the fd */" if leaky else "close(((struct fake_loop*) loop)->fd);"
    (root / "src" / "unix" / "core.c").write_text(
        CORE_C.format(close_stmt=close_stmt, minor=minor, revision=revision))
    (root / "Makefile.am").write_text(MAKEFILE_AM)
    return root
