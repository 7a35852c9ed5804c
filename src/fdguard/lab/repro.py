"""Write a lab scenario as a standalone C program: the reproducer for an upstream libuv issue.

The program loads the libuv named on its command line with dlopen() and sizes
loops and handles with uv_loop_size()/uv_handle_size(), like the lab's ctypes
binding, so one binary runs against every release (uv.h is needed only for
prototypes and constants; any 1.x header will do). It runs the same
iterations as the lab, prints the fd count after each, the fds that appeared
after the warm-up iteration, and expected against observed behaviour. Exit
status: 0 no leak, 1 leak, 2 setup failure (an abort inside libuv kills it
with the signal, as it does the lab's child). Every catalogue scenario has a
C body here or in `fdguard.lab.repro_c`.

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

# Per scenario: the body defining `static int setup(void)` and
# `static const char* iterate(int i)`, in the same steps as the Python scenario.
_BODIES: dict[str, str] = {
    "loop-churn": r"""
static int setup(void) { return 0; }

static const char* iterate(int i) {
  static char outcome[64];
  uv_loop_t* loop = calloc(1, UV(uv_loop_size)());
  int rc = UV(uv_loop_init)(loop);
  (void) i;
  if (rc == 0) UV(uv_loop_close)(loop);
  snprintf(outcome, sizeof(outcome), "init=%s", err_name(rc));
  free(loop);
  return outcome;
}
""",
    "loop-init-emfile": r"""
/* The first loop also creates libuv's process-global signal lock pipe, whose
 * failure aborts: create it before squeezing. */
static int setup(void) {
  uv_loop_t* loop = calloc(1, UV(uv_loop_size)());
  if (UV(uv_loop_init)(loop) != 0) return -1;
  UV(uv_loop_close)(loop);
  free(loop);
  return 0;
}

/* One free fd: the epoll fd fits, the next fd uv_loop_init needs does not. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_loop_t* loop = calloc(1, UV(uv_loop_size)());
  int rc;
  (void) i;
  squeeze(1);
  rc = UV(uv_loop_init)(loop);
  undo_squeeze();
  if (rc == 0) UV(uv_loop_close)(loop);
  snprintf(outcome, sizeof(outcome), "init=%s", err_name(rc));
  free(loop);
  return outcome;
}
""",
    "libuv-load-unload": r"""
static int setup(void) { return 0; }

/* dlopen a fresh copy of the libuv under test (a path already loaded would
 * only gain a reference and never unload), init and close a loop, dlclose. */
static const char* iterate(int i) {
  static char outcome[64];
  char copy[256];
  char cmd[600];
  void* h;
  void* loop;
  size_t (*loop_size)(void);
  int (*loop_init)(void*);
  int (*loop_close)(void*);
  int rc;
  snprintf(copy, sizeof(copy), "/tmp/fdguard-repro-%d-%d.so", (int) getpid(), i);
  snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", libuv_path, copy);
  if (system(cmd) != 0) return "copy failed";
  h = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) { unlink(copy); return "dlopen failed"; }
  *(void**) &loop_size = dlsym(h, "uv_loop_size");
  *(void**) &loop_init = dlsym(h, "uv_loop_init");
  *(void**) &loop_close = dlsym(h, "uv_loop_close");
  loop = calloc(1, loop_size());
  rc = loop_init(loop);
  if (rc == 0) loop_close(loop);
  free(loop);
  snprintf(outcome, sizeof(outcome), "init=%d dlclose=%d", rc, dlclose(h));
  unlink(copy);
  return outcome;
}
""",
    "pipe-ipc-queue-enomem": r"""
static uv_loop_t* loop;
static int fail_countdown; /* the Nth allocation from now fails; 0 = none */

static int failing(void) { return fail_countdown > 0 && --fail_countdown == 0; }
static void* f_malloc(size_t n) { return failing() ? NULL : malloc(n); }
static void* f_realloc(void* p, size_t n) { return failing() ? NULL : realloc(p, n); }
static void* f_calloc(size_t c, size_t n) { return failing() ? NULL : calloc(c, n); }

static int setup(void) {
  if (UV(uv_replace_allocator)(f_malloc, f_realloc, f_calloc, free) != 0) return -1;
  loop = calloc(1, UV(uv_loop_size)());
  return UV(uv_loop_init)(loop);
}

static char readbuf[65536];
static int got_read;
static ssize_t nread_seen;
static void on_alloc(uv_handle_t* h, size_t size, uv_buf_t* buf) {
  (void) h; (void) size;
  buf->base = readbuf;
  buf->len = sizeof(readbuf);
}
static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  (void) s; (void) buf;
  got_read = 1;
  nread_seen = n;
}
static void on_close(uv_handle_t* h) { free(h); }

/* Three fds (unix sockets) in one SCM_RIGHTS message to an IPC pipe: libuv
 * keeps the first as the pipe's accepted fd and must queue the other two;
 * the allocation of that queue fails. Then the pipe is closed unaccepted. */
static const char* iterate(int i) {
  static char outcome[64];
  char cbuf[CMSG_SPACE(3 * sizeof(int))];
  struct msghdr msg;
  struct iovec iov;
  struct cmsghdr* cm;
  char byte = 'x';
  int sv[2];
  int pass[4];
  int k;
  uv_pipe_t* pipe = calloc(1, UV(uv_handle_size)(UV_NAMED_PIPE));
  (void) i;
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  UV(uv_pipe_init)(loop, pipe, 1);
  UV(uv_pipe_open)(pipe, sv[0]);
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pass);
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pass + 2);
  memset(&msg, 0, sizeof(msg));
  memset(cbuf, 0, sizeof(cbuf));
  iov.iov_base = &byte;
  iov.iov_len = 1;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof(cbuf);
  cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(3 * sizeof(int));
  memcpy(CMSG_DATA(cm), pass, 3 * sizeof(int));
  if (sendmsg(sv[1], &msg, 0) != 1) return "sendmsg failed";
  for (k = 0; k < 4; k++) close(pass[k]);
  UV(uv_read_start)((uv_stream_t*) pipe, on_alloc, on_read);
  got_read = 0;
  fail_countdown = 1;
  for (k = 0; k < 1000 && !got_read; k++) UV(uv_run)(loop, UV_RUN_NOWAIT);
  fail_countdown = 0;
  UV(uv_close)((uv_handle_t*) pipe, on_close);
  UV(uv_run)(loop, UV_RUN_NOWAIT);
  close(sv[1]);
  snprintf(outcome, sizeof(outcome), "read=%s",
           nread_seen < 0 ? err_name((int) nread_seen) : "data");
  return outcome;
}
""",
    "tcp-connect-refused": r"""
static uv_loop_t* loop;
static int port;
static int holder;
static int status;

/* A loopback port bound but not listening: a SYN to it gets a RST. */
static int setup(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(holder, (struct sockaddr*) &a, sizeof(a)) != 0) return -1;
  getsockname(holder, (struct sockaddr*) &a, &len);
  port = ntohs(a.sin_port);
  loop = calloc(1, UV(uv_loop_size)());
  return UV(uv_loop_init)(loop);
}

static void on_close(uv_handle_t* h) { free(h); }

static void on_connect(uv_connect_t* req, int st) {
  status = st;
  UV(uv_close)((uv_handle_t*) req->handle, on_close);
  free(req);
}

static const char* iterate(int i) {
  static char outcome[64];
  struct sockaddr_in addr;
  uv_tcp_t* tcp = calloc(1, UV(uv_handle_size)(UV_TCP));
  uv_connect_t* req = calloc(1, UV(uv_req_size)(UV_CONNECT));
  int rc;
  (void) i;
  UV(uv_ip4_addr)("127.0.0.1", port, &addr);
  UV(uv_tcp_init)(loop, tcp);
  status = 1;
  rc = UV(uv_tcp_connect)(req, tcp, (const struct sockaddr*) &addr, on_connect);
  if (rc != 0) { UV(uv_close)((uv_handle_t*) tcp, on_close); free(req); }
  UV(uv_run)(loop, UV_RUN_DEFAULT);
  snprintf(outcome, sizeof(outcome), "connect=%s cb=%s", err_name(rc), err_name(status));
  return outcome;
}
""",
}


_BODIES.update(BODIES)


def supported() -> list[str]:
    """Scenarios the emitter can write as C (an injected variant shares its twin's body)."""
    return sorted({*_BODIES, *(n for n, s in CATALOGUE.items() if s.twin in _BODIES)})


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
    body = _BODIES.get(CATALOGUE[name].twin or name)
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
