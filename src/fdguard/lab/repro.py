"""Write a lab scenario as a standalone C program: the reproducer for an upstream libuv issue.

The program loads the libuv named on its command line with dlopen() and sizes
loops and handles with uv_loop_size()/uv_handle_size(), like the lab's ctypes
binding, so one binary runs against every release (uv.h is needed only for
prototypes and constants; any 1.x header will do). It runs the same
iterations as the lab, prints the fd count after each, the fds that appeared
after the warm-up iteration, and expected against observed behaviour. Exit
status: 0 no leak, 1 leak, 2 setup failure (an abort inside libuv kills it
with the signal, as it does the lab's child). Every catalogue scenario has a
C body in `fdguard.lab.repro_c`.

    cc -o repro repro.c -ldl && ./repro /path/to/libuv.so.1 10
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fdguard.errors import UsageError
from fdguard.lab.repro_c import BODIES
from fdguard.lab.scenarios import CATALOGUE

BUILD_COMMAND = "cc -O0 -g -Wall -o repro repro.c -ldl"

_PRELUDE = r"""/* fdguard lab reproducer: %(name)s
 *
 * %(summary)s
 *
 * Expected: %(expect)s.
 * The first iteration is a warm-up (libuv creates some fds once, on first use);
 * every fd open after the last iteration that was not open after the warm-up
 * is reported as leaked.
 *
 * Build: %(build)s
 *   (uv.h from any libuv 1.x: libuv1-dev, or -I<libuv>/include)
 * Run:   ./repro /path/to/libuv.so [iterations]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <uv.h>

static const char* libuv_path;
static void* lib;
/* Resolve a libuv function from the library given on the command line. */
#define UV(fn) ((__typeof__(&fn)) sym(#fn))
static void* sym(const char* name) {
  void* p = dlsym(lib, name);
  if (p == NULL) { fprintf(stderr, "%%s: no symbol %%s\n", libuv_path, name); exit(2); }
  return p;
}

#define MAXFD 4096
static char warm_fds[MAXFD][128];

/* Open fds of this process, excluding the directory stream used to list them. */
static int list_fds(char (*out)[128]) {
  DIR* d = opendir("/proc/self/fd");
  struct dirent* e;
  char path[64];
  int n = 0;
  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL) {
    int fd;
    if (e->d_name[0] == '.') continue;
    fd = atoi(e->d_name);
    if (fd == dirfd(d)) continue;
    n++;
    if (out != NULL && fd < MAXFD) {
      ssize_t len;
      snprintf(path, sizeof(path), "/proc/self/fd/%%d", fd);
      len = readlink(path, out[fd], sizeof(out[fd]) - 1);
      out[fd][len < 0 ? 0 : len] = '\0';
    }
  }
  closedir(d);
  return n;
}

/* Exhaust the fd table so that exactly `free_fds` more can be opened: fill
 * the holes below the highest open fd with placeholders, then set the soft
 * limit just past it. undo_squeeze() closes the placeholders and restores it. */
static struct rlimit saved_limit;
static int placeholders[MAXFD];
static int nplaceholders;
static __attribute__((unused)) void squeeze(int free_fds) {
  static char open_now[MAXFD][128];
  struct rlimit lim;
  int top = -1;
  int fd;
  memset(open_now, 0, sizeof(open_now));
  list_fds(open_now);
  for (fd = 0; fd < MAXFD; fd++) if (open_now[fd][0]) top = fd;
  nplaceholders = 0;
  for (fd = 0; fd < top; fd++)
    if (!open_now[fd][0])
      placeholders[nplaceholders++] = open("/dev/null", O_RDONLY | O_CLOEXEC);
  getrlimit(RLIMIT_NOFILE, &saved_limit);
  lim = saved_limit;
  lim.rlim_cur = top + 1 + free_fds;
  setrlimit(RLIMIT_NOFILE, &lim);
}
static __attribute__((unused)) void undo_squeeze(void) {
  int i;
  setrlimit(RLIMIT_NOFILE, &saved_limit);
  for (i = 0; i < nplaceholders; i++) close(placeholders[i]);
}

/* A libuv status as the lab prints it: the error's name, or the number if >= 0. */
static __attribute__((unused)) const char* err_name(int rc) {
  static char bufs[8][16];
  static int next;
  char* out;
  if (rc < 0) return UV(uv_err_name)(rc);
  out = bufs[next++ %% 8];
  snprintf(out, sizeof(bufs[0]), "%%d", rc);
  return out;
}

/* Run after the verdict (cleanup of a scratch directory, say); set by setup(). */
static void (*at_end)(void);
"""

_MAIN = r"""
int main(int argc, char** argv) {
  static char end_fds[MAXFD][128];
  int iterations;
  int i;
  int fd;
  int base;
  int warm = 0;
  int count = 0;
  int leaked = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: %%s /path/to/libuv.so [iterations]\n", argv[0]);
    return 2;
  }
  libuv_path = argv[1];
  iterations = argc > 2 ? atoi(argv[2]) : 10;
  lib = dlopen(libuv_path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) { fprintf(stderr, "dlopen: %%s\n", dlerror()); return 2; }
  printf("scenario %(name)s\n");
  printf("libuv %%s (%%s)\n", UV(uv_version_string)(), libuv_path);
  if (setup() != 0) { fprintf(stderr, "setup failed\n"); return 2; }
  base = list_fds(NULL);
  printf("setup fds %%d\n", base);
  for (i = 1; i <= iterations; i++) {
    const char* outcome = iterate(i);
    count = list_fds(i == 1 ? warm_fds : NULL);
    if (i == 1) warm = count;
    printf("iter %%d fds %%d delta %%+d %%s\n", i, count, count - warm, outcome);
    fflush(stdout);
  }
  list_fds(end_fds);
  for (fd = 0; fd < MAXFD; fd++) {
    if (end_fds[fd][0] && strcmp(end_fds[fd], warm_fds[fd]) != 0) {
      printf("leaked fd %%d -> %%s\n", fd, end_fds[fd]);
      leaked++;
    }
  }
  printf("expected: %(expect)s\n");
  printf("observed: %%+d fds over %%d iterations after the warm-up (%%d new fds open)\n",
         count - warm, iterations - 1, leaked);
  printf("verdict %%s\n", count > warm ? "leak" : "no-leak");
  fflush(stdout);
  if (at_end != NULL) at_end();
  return count > warm ? 1 : 0;
}
"""


def supported() -> list[str]:
    """Scenarios the emitter can write as C (an injected variant shares its twin's body)."""
    return sorted({*BODIES, *(n for n, s in CATALOGUE.items() if s.twin in BODIES)})


@dataclass(frozen=True)
class Reproducer:
    """A written reproducer: the C file, the build command, and how to run it."""

    scenario: str
    source: Path
    build_command: str
    run_command: str


def render(name: str) -> str:
    """The C source of scenario `name`'s reproducer.

    Raises:
        UsageError: unknown scenario, or no C version of it yet.
    """
    if name not in CATALOGUE:
        raise UsageError(f"no such scenario: {name}")
    # An ENFILE variant is its EMFILE twin's program run under strace: the
    # injected call fails before the kernel looks at the lowered limit.
    body = BODIES.get(CATALOGUE[name].twin or name)
    if body is None:
        raise UsageError(
            f"no C reproducer for {name} yet; scenarios with one: {', '.join(supported())}")
    sc = CATALOGUE[name]
    fields = {"name": name, "summary": sc.summary, "expect": sc.expect.replace('"', "'"),
              "build": BUILD_COMMAND}
    # The C text contains printf '%' conversions: the prelude/main are %-templates
    # (their own % are doubled), the body is inserted verbatim.
    return _PRELUDE % fields + body + _MAIN % fields


def write(name: str, out_dir: str | Path) -> Reproducer:
    """Write `repro.c` and `build.sh` for scenario `name` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = out / "repro.c"
    src.write_text(render(name))
    (out / "build.sh").write_text(f"#!/bin/sh\ncd \"$(dirname \"$0\")\" && {BUILD_COMMAND}\n")
    (out / "build.sh").chmod(0o755)
    run = "./repro /path/to/libuv.so [iterations]"
    inject = CATALOGUE[name].inject
    if inject is not None:
        syscall, errno, step = inject
        run = (f"strace -f -qq -o /dev/null -e trace={syscall} "
               f"-e inject={syscall}:error={errno}:when=K+{step} {run}"
               f"   (K: the number of the first {syscall} call made inside the squeezed call;"
               f" list them with `strace -e trace={syscall} {run}`)")
    return Reproducer(name, src, BUILD_COMMAND, run)
