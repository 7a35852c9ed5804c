"""C bodies of the catalogue's scenarios for the reproducer emitter, one per scenario.

Each body defines `static int setup(void)` and `static const char* iterate(int i)`
in the same steps as the Python scenario in `fdguard.lab.scenarios`, and its
outcome string is formatted exactly as the lab formats it, so a test can
compare the lab's run and the compiled reproducer's run line by line. Bodies
are built from shared fragments (the loop, a listening server, spawn, IPC fd
passing, a failing allocator); every helper is `UNUSED` so each program
compiles without warnings whatever it takes from them.

The fragments are C text inserted verbatim (no %-formatting): `repro.render`
only %-formats its own prelude and main.
"""

from __future__ import annotations

# Always first: the shared loop, handle/request memory, closing, status lists,
# a scratch directory, loopback ports held by a plain socket.
_COMMON = r"""
#include <sys/stat.h>
#define UNUSED __attribute__((unused))

static uv_loop_t* loop;
static int close_done;

static UNUSED void* new_handle(uv_handle_type t) { return calloc(1, UV(uv_handle_size)(t)); }
static UNUSED void* new_req(uv_req_type t) { return calloc(1, UV(uv_req_size)(t)); }
static UNUSED void on_close_free(uv_handle_t* h) { free(h); }
static UNUSED void on_close_done(uv_handle_t* h) { close_done++; free(h); }

static UNUSED int init_loop(void) {
  loop = calloc(1, UV(uv_loop_size)());
  return UV(uv_loop_init)(loop);
}

/* Close a handle and turn the loop until its close callback ran. NOWAIT turns,
 * not UV_RUN_DEFAULT: a listening server on the loop would keep DEFAULT waiting. */
static UNUSED void close_and_run(void* h) {
  int k;
  if (UV(uv_is_closing)(h)) return;
  close_done = 0;
  UV(uv_close)(h, on_close_done);
  for (k = 0; k < 1000 && !close_done; k++) UV(uv_run)(loop, UV_RUN_NOWAIT);
}

/* Statuses in the lab's notation: "A,B" (style 0), "['A', 'B']" (1), "[0, 1]" (2). */
static UNUSED const char* fmt_list(const int* v, int n, int style) {
  static char bufs[4][256];
  static int next;
  char* out = bufs[next++ % 4];
  size_t used = 0;
  int k;
  out[0] = '\0';
  if (style) used += snprintf(out + used, 256 - used, "[");
  for (k = 0; k < n && used < 200; k++) {
    const char* sep = k == 0 ? "" : (style ? ", " : ",");
    if (style == 2) used += snprintf(out + used, 256 - used, "%s%d", sep, v[k]);
    else if (style == 1) used += snprintf(out + used, 256 - used, "%s'%s'", sep, err_name(v[k]));
    else used += snprintf(out + used, 256 - used, "%s%s", sep, err_name(v[k]));
  }
  if (style) snprintf(out + used, 256 - used, "]");
  return out;
}

static char workdir[64];
static char workdir_rm[128];
static UNUSED void remove_workdir(void) {
  if (system(workdir_rm) != 0) fprintf(stderr, "could not remove %s\n", workdir);
}
/* A scratch directory, removed at exit (after every count was taken). */
static UNUSED int make_workdir(void) {
  strcpy(workdir, "/tmp/fdguard-repro-XXXXXX");
  if (mkdtemp(workdir) == NULL) return -1;
  snprintf(workdir_rm, sizeof(workdir_rm), "rm -rf '%s'", workdir);
  at_end = remove_workdir;
  return 0;
}
static char scratch_file[128];
static UNUSED int make_scratch_file(void) {
  FILE* f;
  snprintf(scratch_file, sizeof(scratch_file), "%s/data.txt", workdir);
  f = fopen(scratch_file, "w");
  if (f == NULL) return -1;
  fputs("lab\n", f);
  return fclose(f);
}

/* A loopback port held by a plain socket of this process for the whole run:
 * bound only (a SYN gets a RST), or listening (connects complete in its backlog). */
static int holder = -1;
static UNUSED int hold_port(int type, int do_listen) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  holder = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (holder < 0 || bind(holder, (struct sockaddr*) &a, sizeof(a)) != 0) return -1;
  if (do_listen && (listen(holder, 64) != 0 || fcntl(holder, F_SETFL, O_NONBLOCK) != 0))
    return -1;
  getsockname(holder, (struct sockaddr*) &a, &len);
  return ntohs(a.sin_port);
}
/* Accept and close whatever connected to the listening holder. */
static UNUSED void drain(void) {
  int c;
  while ((c = accept4(holder, NULL, NULL, SOCK_CLOEXEC)) >= 0) close(c);
}

static UNUSED struct sockaddr* ip4(int port) {
  static struct sockaddr_in a;
  UV(uv_ip4_addr)("127.0.0.1", port, &a);
  return (struct sockaddr*) &a;
}

static int seen[16];
static int nseen;
static UNUSED void push_seen(int st) { if (nseen < 16) seen[nseen++] = st; }
static UNUSED void on_connect_record(uv_connect_t* req, int st) { (void) req; push_seen(st); }
/* Record the status and close the handle, as the lab's callback does. */
static UNUSED void on_connect_close(uv_connect_t* req, int st) {
  push_seen(st);
  UV(uv_close)((uv_handle_t*) req->handle, on_close_free);
}
static UNUSED void on_listen_noop(uv_stream_t* s, int st) { (void) s; (void) st; }
"""

# A uv TCP server on 127.0.0.1:<ephemeral> that accepts and closes each connection.
_TCP_SERVER = r"""
static int port;
static int statuses[16];
static int nstatuses;
static void push_status(int st) { if (nstatuses < 16) statuses[nstatuses++] = st; }
static void on_tcp_connection(uv_stream_t* srv, int status) {
  uv_tcp_t* client;
  push_status(status);
  if (status != 0) return;
  client = new_handle(UV_TCP);
  UV(uv_tcp_init)(loop, client);
  push_status(UV(uv_accept)(srv, (uv_stream_t*) client));
  UV(uv_close)((uv_handle_t*) client, on_close_free);
}
static int setup(void) {
  struct sockaddr_in a;
  int len = sizeof(a);
  uv_tcp_t* server;
  if (init_loop() != 0) return -1;
  server = new_handle(UV_TCP);
  if (UV(uv_tcp_init)(loop, server) != 0) return -1;
  if (UV(uv_tcp_bind)(server, ip4(0), 0) != 0) return -1;
  if (UV(uv_listen)((uv_stream_t*) server, 64, on_tcp_connection) != 0) return -1;
  UV(uv_tcp_getsockname)(server, (struct sockaddr*) &a, &len);
  port = ntohs(a.sin_port);
  return 0;
}
/* A blocking loopback client: the kernel completes the handshake into the backlog. */
static int connect_client(void) {
  struct sockaddr_in a;
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(c, (struct sockaddr*) &a, sizeof(a)) != 0) { perror("connect"); exit(2); }
  return c;
}
"""

# A uv pipe server on <workdir>/lab.sock that accepts and closes each connection.
_PIPE_SERVER = r"""
static char sock_path[128];
static int accepted[16];
static int naccepted;
static void push_accepted(int st) { if (naccepted < 16) accepted[naccepted++] = st; }
static void on_pipe_connection(uv_stream_t* srv, int status) {
  uv_pipe_t* client;
  push_accepted(status);
  if (status != 0) return;
  client = new_handle(UV_NAMED_PIPE);
  UV(uv_pipe_init)(loop, client, 0);
  push_accepted(UV(uv_accept)(srv, (uv_stream_t*) client));
  UV(uv_close)((uv_handle_t*) client, on_close_free);
}
static int setup(void) {
  uv_pipe_t* server;
  if (init_loop() != 0 || make_workdir() != 0) return -1;
  snprintf(sock_path, sizeof(sock_path), "%s/lab.sock", workdir);
  server = new_handle(UV_NAMED_PIPE);
  if (UV(uv_pipe_init)(loop, server, 0) != 0) return -1;
  if (UV(uv_pipe_bind)(server, sock_path) != 0) return -1;
  return UV(uv_listen)((uv_stream_t*) server, 64, on_pipe_connection);
}
"""

# As root, become nobody for the scenario (root passes every permission check),
# keeping root as the saved uid to clean up at exit; stay dumpable so that
# /proc/self/fd stays readable.
_UNPRIVILEGED = r"""
#include <grp.h>
#include <sys/prctl.h>
static char locked[128];
static void regain_and_remove(void) {
  if (setresuid(0, 0, 0) != 0 || setresgid(0, 0, 0) != 0) perror("setresuid");
  remove_workdir();
}
static int setup(void) {
  if (init_loop() != 0 || make_workdir() != 0) return -1;
  snprintf(locked, sizeof(locked), "%s/locked", workdir);
  if (mkdir(locked, 0555) != 0 || chmod(workdir, 0755) != 0) return -1;
  if (geteuid() == 0) {
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 0) != 0 ||
        setresuid(65534, 65534, 0) != 0 || prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
      return -1;
    at_end = regain_and_remove;
  }
  return 0;
}
"""

# uv_spawn with a stdout pipe; `free_fds` >= 0 squeezes the fd table around it.
_SPAWN = r"""
static int exits[4];
static int nexits;
static void on_exit_cb(uv_process_t* p, int64_t status, int sig) {
  (void) sig;
  if (nexits < 4) exits[nexits++] = (int) status;
  UV(uv_close)((uv_handle_t*) p, on_close_free);
}
static int setup(void) { return init_loop() != 0 || make_workdir() != 0 ? -1 : 0; }
static const char* spawn_outcome(const char* file, int free_fds) {
  static char outcome[96];
  uv_process_t* proc = new_handle(UV_PROCESS);
  uv_pipe_t* out = new_handle(UV_NAMED_PIPE);
  uv_stdio_container_t stdio[3];
  uv_process_options_t opts;
  char* args[2];
  int rc;
  UV(uv_pipe_init)(loop, out, 0);
  memset(stdio, 0, sizeof(stdio));
  memset(&opts, 0, sizeof(opts));
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t*) out;
  stdio[2].flags = UV_IGNORE;
  args[0] = (char*) file;
  args[1] = NULL;
  opts.exit_cb = on_exit_cb;
  opts.file = file;
  opts.args = args;
  opts.stdio_count = 3;
  opts.stdio = stdio;
  nexits = 0;
  if (free_fds >= 0) squeeze(free_fds);
  rc = UV(uv_spawn)(loop, proc, &opts);
  if (free_fds >= 0) undo_squeeze();
  if (rc != 0) UV(uv_close)((uv_handle_t*) proc, on_close_free);
  UV(uv_close)((uv_handle_t*) out, on_close_free);
  UV(uv_run)(loop, UV_RUN_DEFAULT);
  snprintf(outcome, sizeof(outcome), "spawn=%s exit=%s", err_name(rc),
           fmt_list(exits, nexits, 2));
  return outcome;
}
"""

# `nfds` fds in one SCM_RIGHTS message to an IPC pipe; accepted or left pending.
# `arm_alloc`, when a scenario sets it, makes an allocation fail while the fds arrive.
_IPC = r"""
static void (*arm_alloc)(int n);
static char readbuf[65536];
static int nreads;
static int first_read;
static int accept_them;
static int ipc_accepted[16];
static int nipc_accepted;
static void on_alloc(uv_handle_t* h, size_t size, uv_buf_t* buf) {
  (void) h; (void) size;
  buf->base = readbuf;
  buf->len = sizeof(readbuf);
}
static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  (void) buf;
  if (nreads++ == 0) first_read = (int) n;
  while (accept_them && UV(uv_pipe_pending_count)((uv_pipe_t*) s) > 0) {
    uv_pipe_t* client = new_handle(UV_NAMED_PIPE);
    int rc;
    UV(uv_pipe_init)(loop, client, 0);
    rc = UV(uv_accept)(s, (uv_stream_t*) client);
    if (nipc_accepted < 16) ipc_accepted[nipc_accepted++] = rc;
    UV(uv_close)((uv_handle_t*) client, on_close_free);
  }
}
static const char* ipc_receive(int accept, int nfds) {
  static char outcome[128];
  char cbuf[CMSG_SPACE(4 * sizeof(int))];
  struct msghdr msg;
  struct iovec iov;
  struct cmsghdr* cm;
  char byte = 'x';
  int sv[2];
  int pass[4];
  int k;
  int rc;
  uv_pipe_t* pipe = new_handle(UV_NAMED_PIPE);
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  UV(uv_pipe_init)(loop, pipe, 1);
  rc = UV(uv_pipe_open)(pipe, sv[0]);
  if (rc != 0) close(sv[0]);
  for (k = 0; k < nfds; k += 2) socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pass + k);
  memset(&msg, 0, sizeof(msg));
  memset(cbuf, 0, sizeof(cbuf));
  iov.iov_base = &byte;
  iov.iov_len = 1;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
  cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
  memcpy(CMSG_DATA(cm), pass, nfds * sizeof(int));
  if (sendmsg(sv[1], &msg, 0) != 1) return "sendmsg failed";
  for (k = 0; k < ((nfds + 1) / 2) * 2; k++) close(pass[k]);
  accept_them = accept;
  nreads = 0;
  nipc_accepted = 0;
  UV(uv_read_start)((uv_stream_t*) pipe, on_alloc, on_read);
  if (arm_alloc != NULL) arm_alloc(1);
  for (k = 0; k < 1000 && nreads == 0; k++) UV(uv_run)(loop, UV_RUN_NOWAIT);
  if (arm_alloc != NULL) arm_alloc(0);
  close_and_run(pipe);
  close(sv[1]);
  snprintf(outcome, sizeof(outcome), "read=%s accepted=%s",
           nreads ? err_name(first_read) : "None", fmt_list(ipc_accepted, nipc_accepted, 1));
  return outcome;
}
"""

_FS = r"""
static UNUSED int fs_open(const char* path, int flags) {
  uv_fs_t* req = new_req(UV_FS);
  int rc = UV(uv_fs_open)(loop, req, path, flags, 0644, NULL);
  UV(uv_fs_req_cleanup)(req);
  free(req);
  return rc;
}
static UNUSED int fs_close(int fd) {
  uv_fs_t* req = new_req(UV_FS);
  int rc = UV(uv_fs_close)(loop, req, fd, NULL);
  UV(uv_fs_req_cleanup)(req);
  free(req);
  return rc;
}
static UNUSED const char* open_outcome(int fd) {
  static char outcome[64];
  if (fd >= 0) fs_close(fd);
  snprintf(outcome, sizeof(outcome), "open=%s", fd >= 0 ? "fd" : err_name(fd));
  return outcome;
}
"""

_COPYFILE = r"""
static int copyfile(const char* dst) {
  uv_fs_t* req = new_req(UV_FS);
  int rc = UV(uv_fs_copyfile)(loop, req, scratch_file, dst, 0, NULL);
  UV(uv_fs_req_cleanup)(req);
  free(req);
  return rc;
}
"""

_SETUP_LOOP = "\nstatic int setup(void) { return init_loop(); }\n"
_SETUP_LOOP_DIR = (
    "\nstatic int setup(void) { return init_loop() != 0 || make_workdir() != 0 ? -1 : 0; }\n")
_SETUP_SCRATCH = (
    "\nstatic int setup(void) {\n"
    "  return init_loop() != 0 || make_workdir() != 0 || make_scratch_file() != 0 ? -1 : 0;\n"
    "}\n")


def _hold(kind: str, listen: int) -> str:
    return (f"\nstatic int port;\nstatic int setup(void) {{\n"
            f"  if (init_loop() != 0) return -1;\n"
            f"  port = hold_port({kind}, {listen});\n  return port < 0 ? -1 : 0;\n}}\n")


_FAILING_ALLOC = r"""
/* libuv's allocator, replaced: the Nth allocation after arming fails. */
static int fail_countdown;
static int failed;
static int failing(void) {
  if (fail_countdown <= 0 || --fail_countdown != 0) return 0;
  failed++;
  return 1;
}
static void* f_malloc(size_t n) { return failing() ? NULL : malloc(n); }
static void* f_realloc(void* p, size_t n) { return failing() ? NULL : realloc(p, n); }
static void* f_calloc(size_t c, size_t n) { return failing() ? NULL : calloc(c, n); }
static int replace_allocator(void) {
  return UV(uv_replace_allocator)(f_malloc, f_realloc, f_calloc, free);
}
"""

_FS_EVENT_CB = r"""
static void on_fs_event(uv_fs_event_t* h, const char* f, int e, int s) {
  (void) h; (void) f; (void) e; (void) s;
}
"""

BODIES: dict[str, str] = {
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
    "tcp-connect-refused": _COMMON + _hold("SOCK_STREAM", 0) + r"""
/* uv_tcp_connect to a loopback port bound but not listening (a SYN gets a RST);
 * the connect callback records the status and closes the handle. */
static const char* iterate(int i) {
  static char outcome[96];
  uv_tcp_t* tcp = new_handle(UV_TCP);
  uv_connect_t* req = new_req(UV_CONNECT);
  int rc;
  (void) i;
  nseen = 0;
  UV(uv_tcp_init)(loop, tcp);
  rc = UV(uv_tcp_connect)(req, tcp, ip4(port), on_connect_close);
  if (rc != 0) UV(uv_close)((uv_handle_t*) tcp, on_close_free);
  UV(uv_run)(loop, UV_RUN_DEFAULT);
  free(req);
  snprintf(outcome, sizeof(outcome), "connect=%s cb=%s", err_name(rc), fmt_list(seen, nseen, 0));
  return outcome;
}
""",
    "pipe-ipc-queue-enomem": _COMMON + _FAILING_ALLOC + _IPC + r"""
static void arm_countdown(int n) { fail_countdown = n; }
static int setup(void) {
  if (replace_allocator() != 0) return -1;
  arm_alloc = arm_countdown;
  return init_loop();
}

/* Three fds (unix sockets) in one SCM_RIGHTS message to an IPC pipe: libuv
 * keeps the first as the pipe's accepted fd and must queue the other two;
 * the allocation of that queue fails. Then the pipe is closed unaccepted. */
static const char* iterate(int i) { (void) i; return ipc_receive(0, 3); }
""",
    "tcp-bind-in-use": _COMMON + _hold("SOCK_STREAM", 1) + r"""
/* Bind a uv TCP handle to the port a listening socket holds (EADDRINUSE; some
 * releases defer the error to listen()), then close it. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_tcp_t* tcp = new_handle(UV_TCP);
  int rc;
  int lrc = 0;
  (void) i;
  UV(uv_tcp_init)(loop, tcp);
  rc = UV(uv_tcp_bind)(tcp, ip4(port), 0);
  if (rc == 0) lrc = UV(uv_listen)((uv_stream_t*) tcp, 8, on_listen_noop);
  close_and_run(tcp);
  snprintf(outcome, sizeof(outcome), "bind=%s listen=%s", err_name(rc), err_name(lrc));
  return outcome;
}
""",
    "tcp-close-pending-connect": _COMMON + _hold("SOCK_STREAM", 1) + r"""
/* Start a connect to a listening port and close the handle before the loop
 * runs: the connect callback gets ECANCELED and the socket must be closed. */
static const char* iterate(int i) {
  static char outcome[96];
  uv_tcp_t* tcp = new_handle(UV_TCP);
  uv_connect_t* req = new_req(UV_CONNECT);
  int rc;
  (void) i;
  nseen = 0;
  UV(uv_tcp_init)(loop, tcp);
  rc = UV(uv_tcp_connect)(req, tcp, ip4(port), on_connect_record);
  UV(uv_close)((uv_handle_t*) tcp, on_close_free);
  UV(uv_run)(loop, UV_RUN_DEFAULT);
  free(req);
  drain();
  snprintf(outcome, sizeof(outcome), "connect=%s cb=%s", err_name(rc), fmt_list(seen, nseen, 0));
  return outcome;
}
""",
    "tcp-connect-emfile": _COMMON + _hold("SOCK_STREAM", 0) + r"""
/* uv_tcp_connect with no free fd: the socket cannot be created (EMFILE). */
static const char* iterate(int i) {
  static char outcome[96];
  uv_tcp_t* tcp = new_handle(UV_TCP);
  uv_connect_t* req = new_req(UV_CONNECT);
  struct sockaddr* addr = ip4(port);
  int rc;
  (void) i;
  nseen = 0;
  UV(uv_tcp_init)(loop, tcp);
  squeeze(0);
  rc = UV(uv_tcp_connect)(req, tcp, addr, on_connect_record);
  undo_squeeze();
  close_and_run(tcp);
  UV(uv_run)(loop, UV_RUN_DEFAULT);
  free(req);
  snprintf(outcome, sizeof(outcome), "connect=%s cb=%s", err_name(rc), fmt_list(seen, nseen, 0));
  return outcome;
}
""",
    "tcp-listen-accept": _COMMON + _TCP_SERVER + r"""
/* A loopback client connects; the uv server accepts and closes the connection. */
static const char* iterate(int i) {
  static char outcome[64];
  int client;
  (void) i;
  nstatuses = 0;
  client = connect_client();
  while (nstatuses == 0) UV(uv_run)(loop, UV_RUN_ONCE);
  UV(uv_run)(loop, UV_RUN_NOWAIT);
  close(client);
  snprintf(outcome, sizeof(outcome), "cb=%s", fmt_list(statuses, nstatuses, 0));
  return outcome;
}
""",
    "tcp-accept-emfile": _COMMON + _TCP_SERVER + r"""
/* A client connects while no fd is free: accept() fails with EMFILE, libuv
 * closes its reserve fd, accepts and drops the connection, reopens the reserve. */
static const char* iterate(int i) {
  static char outcome[64];
  int client;
  (void) i;
  nstatuses = 0;
  client = connect_client();
  squeeze(0);
  UV(uv_run)(loop, UV_RUN_NOWAIT);
  UV(uv_run)(loop, UV_RUN_NOWAIT);
  undo_squeeze();
  UV(uv_run)(loop, UV_RUN_NOWAIT);
  close(client);
  UV(uv_run)(loop, UV_RUN_NOWAIT);
  snprintf(outcome, sizeof(outcome), "cb=%s", fmt_list(statuses, nstatuses, 0));
  return outcome;
}
""",
    "tcp-close-twice": _COMMON + _SETUP_LOOP + r"""
/* uv_close a second time on a handle that is already closing (a caller bug:
 * a build with assertions aborts). */
static const char* iterate(int i) {
  uv_tcp_t* tcp = new_handle(UV_TCP);
  (void) i;
  UV(uv_tcp_init)(loop, tcp);
  UV(uv_close)((uv_handle_t*) tcp, NULL);
  UV(uv_close)((uv_handle_t*) tcp, NULL);
  UV(uv_run)(loop, UV_RUN_DEFAULT);
  return "closed twice";
}
""",
    "pipe-connect-accept": _COMMON + _PIPE_SERVER + r"""
/* uv_pipe_connect to the uv pipe server; it accepts and closes; the client
 * closes in its connect callback. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_pipe_t* pipe = new_handle(UV_NAMED_PIPE);
  static uv_connect_t* req;
  (void) i;
  if (req == NULL) req = new_req(UV_CONNECT);
  nseen = 0;
  naccepted = 0;
  UV(uv_pipe_init)(loop, pipe, 0);
  UV(uv_pipe_connect)(req, pipe, sock_path, on_connect_close);
  while (!(nseen && naccepted)) UV(uv_run)(loop, UV_RUN_ONCE);
  UV(uv_run)(loop, UV_RUN_NOWAIT);
  snprintf(outcome, sizeof(outcome), "connect=%s", fmt_list(seen, nseen, 0));
  return outcome;
}
""",
    "pipe-connect-enoent": _COMMON + _SETUP_LOOP_DIR + r"""
/* uv_pipe_connect to a unix socket path that does not exist; close in the callback. */
static const char* iterate(int i) {
  static char outcome[64];
  static uv_connect_t* req;
  char path[128];
  uv_pipe_t* pipe = new_handle(UV_NAMED_PIPE);
  (void) i;
  if (req == NULL) req = new_req(UV_CONNECT);
  snprintf(path, sizeof(path), "%s/nobody.sock", workdir);
  nseen = 0;
  UV(uv_pipe_init)(loop, pipe, 0);
  UV(uv_pipe_connect)(req, pipe, path, on_connect_close);
  UV(uv_run)(loop, UV_RUN_DEFAULT);
  snprintf(outcome, sizeof(outcome), "connect=%s", fmt_list(seen, nseen, 0));
  return outcome;
}
""",
    "pipe-connect-emfile": _COMMON + _PIPE_SERVER + r"""
/* uv_pipe_connect with no free fd (EMFILE), to a listening uv pipe server. */
static const char* iterate(int i) {
  static char outcome[64];
  static uv_connect_t* req;
  uv_pipe_t* pipe = new_handle(UV_NAMED_PIPE);
  int k;
  (void) i;
  if (req == NULL) req = new_req(UV_CONNECT);
  nseen = 0;
  UV(uv_pipe_init)(loop, pipe, 0);
  squeeze(0);
  UV(uv_pipe_connect)(req, pipe, sock_path, on_connect_record);
  undo_squeeze();
  for (k = 0; k < 100 && !nseen; k++) UV(uv_run)(loop, UV_RUN_NOWAIT);
  close_and_run(pipe);
  snprintf(outcome, sizeof(outcome), "connect=%s", fmt_list(seen, nseen, 0));
  return outcome;
}
""",
    "pipe-bind-in-use": _COMMON + _PIPE_SERVER + r"""
/* uv_pipe_bind to the path the server is bound to (EADDRINUSE); close. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_pipe_t* pipe = new_handle(UV_NAMED_PIPE);
  int rc;
  (void) i;
  UV(uv_pipe_init)(loop, pipe, 0);
  rc = UV(uv_pipe_bind)(pipe, sock_path);
  close_and_run(pipe);
  snprintf(outcome, sizeof(outcome), "bind=%s", err_name(rc));
  return outcome;
}
""",
    "pipe-bind-eacces": _COMMON + _UNPRIVILEGED + r"""
/* uv_pipe_bind to a path in a directory the process may not write (EACCES). */
static const char* iterate(int i) {
  static char outcome[64];
  char path[160];
  uv_pipe_t* pipe = new_handle(UV_NAMED_PIPE);
  int rc;
  (void) i;
  snprintf(path, sizeof(path), "%s/s.sock", locked);
  UV(uv_pipe_init)(loop, pipe, 0);
  rc = UV(uv_pipe_bind)(pipe, path);
  close_and_run(pipe);
  snprintf(outcome, sizeof(outcome), "bind=%s", err_name(rc));
  return outcome;
}
""",
    "pipe-open-close": _COMMON + _SETUP_LOOP + r"""
/* uv_pipe_open on one end of a socketpair: the handle owns it, uv_close closes it. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_pipe_t* pipe = new_handle(UV_NAMED_PIPE);
  int sv[2];
  int rc;
  (void) i;
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  UV(uv_pipe_init)(loop, pipe, 0);
  rc = UV(uv_pipe_open)(pipe, sv[0]);
  if (rc != 0) close(sv[0]);
  close_and_run(pipe);
  close(sv[1]);
  snprintf(outcome, sizeof(outcome), "open=%s", err_name(rc));
  return outcome;
}
""",
    "pipe-ipc-accept": _COMMON + _IPC + _SETUP_LOOP + r"""
/* Two fds received over an IPC pipe in one SCM_RIGHTS message; both accepted; close. */
static const char* iterate(int i) { (void) i; return ipc_receive(1, 2); }
""",
    "pipe-ipc-close-pending": _COMMON + _IPC + _SETUP_LOOP + r"""
/* Two fds received over an IPC pipe and never accepted; the IPC pipe is closed,
 * which must close the received fds it still holds. */
static const char* iterate(int i) { (void) i; return ipc_receive(0, 2); }
""",
    "udp-bind-send": _COMMON + _SETUP_LOOP + r"""
/* uv_udp_bind on 127.0.0.1:0, uv_udp_try_send a datagram to itself, close. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_udp_t* udp = new_handle(UV_UDP);
  struct sockaddr_in a;
  int len = sizeof(a);
  uv_buf_t buf;
  int rc;
  (void) i;
  UV(uv_udp_init)(loop, udp);
  if (UV(uv_udp_bind)(udp, ip4(0), 0) != 0) return "bind failed";
  UV(uv_udp_getsockname)(udp, (struct sockaddr*) &a, &len);
  buf.base = "lab";
  buf.len = 3;
  rc = UV(uv_udp_try_send)(udp, &buf, 1, ip4(ntohs(a.sin_port)));
  close_and_run(udp);
  snprintf(outcome, sizeof(outcome), "try_send=%s", err_name(rc));
  return outcome;
}
""",
    "udp-bind-in-use": _COMMON + _hold("SOCK_DGRAM", 0) + r"""
/* uv_udp_bind to a loopback port another UDP socket holds (EADDRINUSE); close. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_udp_t* udp = new_handle(UV_UDP);
  int rc;
  (void) i;
  UV(uv_udp_init)(loop, udp);
  rc = UV(uv_udp_bind)(udp, ip4(port), 0);
  close_and_run(udp);
  snprintf(outcome, sizeof(outcome), "bind=%s", err_name(rc));
  return outcome;
}
""",
    "udp-bind-emfile": _COMMON + _SETUP_LOOP + r"""
/* uv_udp_bind with no free fd: the socket cannot be created (EMFILE); close. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_udp_t* udp = new_handle(UV_UDP);
  struct sockaddr* addr = ip4(0);
  int rc;
  (void) i;
  UV(uv_udp_init)(loop, udp);
  squeeze(0);
  rc = UV(uv_udp_bind)(udp, addr, 0);
  undo_squeeze();
  close_and_run(udp);
  snprintf(outcome, sizeof(outcome), "bind=%s", err_name(rc));
  return outcome;
}
""",
    "tty-init-close": _COMMON + _SETUP_LOOP + r"""
/* uv_tty_init on a pseudo-terminal (libuv reopens it), then uv_close: the fd
 * libuv reopened is closed with the handle; the caller's fd stays the caller's. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_tty_t* tty = new_handle(UV_TTY);
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  int slave;
  int rc;
  (void) i;
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) return "openpty failed";
  slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  rc = UV(uv_tty_init)(loop, tty, slave, 0);
  if (rc == 0) close_and_run(tty);
  else free(tty);
  close(master);
  close(slave);
  snprintf(outcome, sizeof(outcome), "init=%s", err_name(rc));
  return outcome;
}
""",
    "fs-open-close": _COMMON + _SETUP_SCRATCH + _FS + r"""
/* Synchronous uv_fs_open + uv_fs_close. */
static const char* iterate(int i) {
  (void) i;
  return open_outcome(fs_open(scratch_file, O_RDONLY));
}
""",
    "fs-open-emfile": _COMMON + _SETUP_SCRATCH + _FS + r"""
/* uv_fs_open with no free fd (EMFILE). */
static const char* iterate(int i) {
  int fd;
  (void) i;
  squeeze(0);
  fd = fs_open(scratch_file, O_RDONLY);
  undo_squeeze();
  return open_outcome(fd);
}
""",
    "fs-open-enoent": _COMMON + _SETUP_LOOP_DIR + _FS + r"""
/* uv_fs_open of a path that does not exist. */
static const char* iterate(int i) {
  char path[128];
  (void) i;
  snprintf(path, sizeof(path), "%s/missing", workdir);
  return open_outcome(fs_open(path, O_RDONLY));
}
""",
    "fs-open-eacces": _COMMON + _UNPRIVILEGED + _FS + r"""
/* uv_fs_open(O_CREAT) in a directory the process may not write (EACCES). */
static const char* iterate(int i) {
  char path[160];
  (void) i;
  snprintf(path, sizeof(path), "%s/f", locked);
  return open_outcome(fs_open(path, O_CREAT | O_WRONLY));
}
""",
    "fs-copyfile": _COMMON + _SETUP_SCRATCH + _FS + _COPYFILE + r"""
/* uv_fs_copyfile (opens source and destination internally). */
static const char* iterate(int i) {
  static char outcome[64];
  char dst[128];
  int rc;
  (void) i;
  snprintf(dst, sizeof(dst), "%s/copy.txt", workdir);
  rc = copyfile(dst);
  unlink(dst);
  snprintf(outcome, sizeof(outcome), "copyfile=%s", err_name(rc));
  return outcome;
}
""",
    "fs-copyfile-enoent-dst": _COMMON + _SETUP_SCRATCH + _FS + _COPYFILE + r"""
/* uv_fs_copyfile into a directory that does not exist: the source was already open. */
static const char* iterate(int i) {
  static char outcome[64];
  char dst[160];
  (void) i;
  snprintf(dst, sizeof(dst), "%s/no-such-dir/copy.txt", workdir);
  snprintf(outcome, sizeof(outcome), "copyfile=%s", err_name(copyfile(dst)));
  return outcome;
}
""",
    "fs-copyfile-emfile": _COMMON + _SETUP_SCRATCH + _FS + _COPYFILE + r"""
/* uv_fs_copyfile with one free fd: the source opens, the destination hits EMFILE. */
static const char* iterate(int i) {
  static char outcome[64];
  char dst[128];
  int rc;
  (void) i;
  snprintf(dst, sizeof(dst), "%s/copy.txt", workdir);
  squeeze(1);
  rc = copyfile(dst);
  undo_squeeze();
  unlink(dst);
  snprintf(outcome, sizeof(outcome), "copyfile=%s", err_name(rc));
  return outcome;
}
""",
    "fs-scandir": _COMMON + _SETUP_SCRATCH + r"""
/* Synchronous uv_fs_scandir (opens the directory). */
static const char* iterate(int i) {
  static char outcome[64];
  uv_fs_t* req = new_req(UV_FS);
  int rc;
  (void) i;
  rc = UV(uv_fs_scandir)(loop, req, workdir, 0, NULL);
  UV(uv_fs_req_cleanup)(req);
  free(req);
  snprintf(outcome, sizeof(outcome), "scandir=%s", rc >= 0 ? "n" : err_name(rc));
  return outcome;
}
""",
    "fs-event-start-stop": _COMMON + _SETUP_LOOP_DIR + _FS_EVENT_CB + r"""
/* uv_fs_event_start on a directory, stop, close (inotify watch added and removed). */
static const char* iterate(int i) {
  static char outcome[64];
  uv_fs_event_t* h = new_handle(UV_FS_EVENT);
  int rc;
  (void) i;
  UV(uv_fs_event_init)(loop, h);
  rc = UV(uv_fs_event_start)(h, on_fs_event, workdir, 0);
  if (rc == 0) UV(uv_fs_event_stop)(h);
  close_and_run(h);
  snprintf(outcome, sizeof(outcome), "start=%s", err_name(rc));
  return outcome;
}
""",
    "fs-event-enoent": _COMMON + _SETUP_LOOP_DIR + _FS_EVENT_CB + r"""
/* uv_fs_event_start on a path that does not exist; close. */
static const char* iterate(int i) {
  static char outcome[64];
  char path[128];
  uv_fs_event_t* h = new_handle(UV_FS_EVENT);
  int rc;
  (void) i;
  snprintf(path, sizeof(path), "%s/missing", workdir);
  UV(uv_fs_event_init)(loop, h);
  rc = UV(uv_fs_event_start)(h, on_fs_event, path, 0);
  close_and_run(h);
  snprintf(outcome, sizeof(outcome), "start=%s", err_name(rc));
  return outcome;
}
""",
    "fs-event-emfile": _COMMON + _FS_EVENT_CB + r"""
static int setup(void) { return make_workdir(); }

/* On a fresh loop, uv_fs_event_start with no free fd: the loop's inotify fd
 * cannot be created. Close the handle and the loop. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_fs_event_t* h;
  int rc;
  int close_rc;
  (void) i;
  if (init_loop() != 0) return "loop init failed";
  h = new_handle(UV_FS_EVENT);
  UV(uv_fs_event_init)(loop, h);
  squeeze(0);
  rc = UV(uv_fs_event_start)(h, on_fs_event, workdir, 0);
  undo_squeeze();
  close_and_run(h);
  close_rc = UV(uv_loop_close)(loop);
  if (close_rc == 0) free(loop);
  snprintf(outcome, sizeof(outcome), "start=%s loop_close=%s", err_name(rc), err_name(close_rc));
  return outcome;
}
""",
    "fs-poll-start-stop": _COMMON + _SETUP_SCRATCH + r"""
static void on_fs_poll(uv_fs_poll_t* h, int st, const uv_stat_t* p, const uv_stat_t* c) {
  (void) h; (void) st; (void) p; (void) c;
}

/* uv_fs_poll_start on a file, one loop turn, stop, close. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_fs_poll_t* h = new_handle(UV_FS_POLL);
  int rc;
  (void) i;
  UV(uv_fs_poll_init)(loop, h);
  rc = UV(uv_fs_poll_start)(h, on_fs_poll, scratch_file, 1000);
  UV(uv_run)(loop, UV_RUN_NOWAIT);
  if (rc == 0) UV(uv_fs_poll_stop)(h);
  close_and_run(h);
  snprintf(outcome, sizeof(outcome), "start=%s", err_name(rc));
  return outcome;
}
""",
    "signal-start-stop": _COMMON + _SETUP_LOOP + r"""
#include <signal.h>
static void on_signal(uv_signal_t* h, int n) { (void) h; (void) n; }

/* uv_signal_init + uv_signal_start(SIGUSR2) + stop + close. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_signal_t* h = new_handle(UV_SIGNAL);
  int rc;
  (void) i;
  UV(uv_signal_init)(loop, h);
  rc = UV(uv_signal_start)(h, on_signal, SIGUSR2);
  if (rc == 0) UV(uv_signal_stop)(h);
  close_and_run(h);
  snprintf(outcome, sizeof(outcome), "start=%s", err_name(rc));
  return outcome;
}
""",
    "async-init-close": _COMMON + _SETUP_LOOP + r"""
static void on_async(uv_async_t* h) { (void) h; }

/* uv_async_init + uv_async_send + one loop turn + close. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_async_t* h = new_handle(UV_ASYNC);
  int rc;
  (void) i;
  rc = UV(uv_async_init)(loop, h, on_async);
  if (rc == 0) {
    UV(uv_async_send)(h);
    UV(uv_run)(loop, UV_RUN_NOWAIT);
    close_and_run(h);
  }
  snprintf(outcome, sizeof(outcome), "init=%s", err_name(rc));
  return outcome;
}
""",
    "spawn-pipe": _COMMON + _SPAWN + r"""
/* uv_spawn /bin/true with a stdout pipe; wait for the exit; close process and pipe. */
static const char* iterate(int i) { (void) i; return spawn_outcome("/bin/true", -1); }
""",
    "spawn-enoent": _COMMON + _SPAWN + r"""
/* uv_spawn of a program that does not exist, with a stdout pipe (ENOENT): uv_spawn
 * fails and must close both ends of the stdio pipe it created. */
static const char* iterate(int i) {
  char path[128];
  (void) i;
  snprintf(path, sizeof(path), "%s/no-such-program", workdir);
  return spawn_outcome(path, -1);
}
""",
    "spawn-emfile": _COMMON + _SPAWN + r"""
/* uv_spawn with a stdout pipe and one free fd: the pipe pair cannot be made (EMFILE). */
static const char* iterate(int i) { (void) i; return spawn_outcome("/bin/true", 1); }
""",
    "dlopen-dlclose": _COMMON + r"""
static int setup(void) { return 0; }

/* uv_dlopen + uv_dlclose of libm. */
static const char* iterate(int i) {
  static char outcome[64];
  uv_lib_t lib;
  int rc;
  (void) i;
  rc = UV(uv_dlopen)("libm.so.6", &lib);
  UV(uv_dlclose)(&lib);
  snprintf(outcome, sizeof(outcome), "dlopen=%s", rc == 0 ? "ok" : "error");
  return outcome;
}
""",
    "tcp-bind-eacces": _COMMON + _UNPRIVILEGED + r"""
/* uv_tcp_bind + uv_listen on privileged loopback port 1 without the privilege (EACCES). */
static const char* iterate(int i) {
  static char outcome[64];
  uv_tcp_t* tcp = new_handle(UV_TCP);
  int rc;
  int lrc = 0;
  (void) i;
  UV(uv_tcp_init)(loop, tcp);
  rc = UV(uv_tcp_bind)(tcp, ip4(1), 0);
  if (rc == 0) lrc = UV(uv_listen)((uv_stream_t*) tcp, 8, on_listen_noop);
  close_and_run(tcp);
  snprintf(outcome, sizeof(outcome), "bind=%s listen=%s", err_name(rc), err_name(lrc));
  return outcome;
}
""",
    "loop-init-enomem": _COMMON + _FAILING_ALLOC + r"""
/* The first loop also creates libuv's process-global signal lock pipe: make it
 * before any allocation is made to fail. */
static int setup(void) {
  if (replace_allocator() != 0) return -1;
  if (init_loop() != 0) return -1;
  UV(uv_loop_close)(loop);
  free(loop);
  return 0;
}

/* uv_loop_init with the Nth allocation failing, N = iteration: the failure point
 * sweeps through init. A loop whose init failed is not freed (libuv may still
 * point into it). */
static const char* iterate(int i) {
  static char outcome[96];
  int before = failed;
  int rc;
  loop = calloc(1, UV(uv_loop_size)());
  fail_countdown = i;
  rc = UV(uv_loop_init)(loop);
  fail_countdown = 0;
  if (rc == 0) {
    UV(uv_loop_close)(loop);
    free(loop);
  }
  snprintf(outcome, sizeof(outcome), "init=%s%s", err_name(rc),
           failed > before ? " (allocation failed)" : "");
  return outcome;
}
""",
}
