/* A C service on the system libuv with N event loops, each running in its own
 * thread with one listening TCP socket on 127.0.0.1.
 *
 *   explain_uvloops NLOOPS [leak]
 *
 * "leak" also opens a socket that no handle owns (what a leak in native code
 * looks like). Once every loop has polled (so its epoll interest list is
 * registered) it prints one JSON line -- the ground truth -- and then blocks
 * until stdin closes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <uv.h>

#define MAX_LOOPS 8

struct loop_ctx {
  uv_loop_t loop;
  uv_tcp_t server;
  uv_idle_t idle;
  uv_check_t check;
  uv_thread_t thread;
  int port;
};

static uv_sem_t polled;
static struct loop_ctx loops[MAX_LOOPS];

static void on_conn(uv_stream_t* server, int status) { (void)server; (void)status; }
static void on_idle(uv_idle_t* i) { (void)i; }

/* Runs right after the loop's first poll phase, which registered every watcher
 * with epoll (an active idle handle makes that poll return at once). */
static void on_check(uv_check_t* c) {
  struct loop_ctx* ctx = c->data;
  uv_check_stop(c);
  uv_idle_stop(&ctx->idle);
  uv_sem_post(&polled);
}

static void run(void* arg) {
  struct loop_ctx* ctx = arg;
  uv_run(&ctx->loop, UV_RUN_DEFAULT);
}

static void die(const char* what, int err) {
  fprintf(stderr, "%s: %s\n", what, uv_strerror(err));
  exit(1);
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1;
  int leak = argc > 2 && strcmp(argv[2], "leak") == 0;
  int leaked = -1;
  int i, err;
  char buf[64];

  if (n < 1 || n > MAX_LOOPS) die("loops", UV_EINVAL);
  uv_sem_init(&polled, 0);
  for (i = 0; i < n; i++) {
    struct loop_ctx* ctx = &loops[i];
    struct sockaddr_in addr;
    struct sockaddr_storage name;
    int len = sizeof name;
    if ((err = uv_loop_init(&ctx->loop))) die("uv_loop_init", err);
    uv_tcp_init(&ctx->loop, &ctx->server);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if ((err = uv_tcp_bind(&ctx->server, (const struct sockaddr*)&addr, 0))) die("bind", err);
    if ((err = uv_listen((uv_stream_t*)&ctx->server, 16, on_conn))) die("listen", err);
    uv_tcp_getsockname(&ctx->server, (struct sockaddr*)&name, &len);
    ctx->port = ntohs(((struct sockaddr_in*)&name)->sin_port);
    uv_idle_init(&ctx->loop, &ctx->idle);
    uv_idle_start(&ctx->idle, on_idle);
    uv_check_init(&ctx->loop, &ctx->check);
    ctx->check.data = ctx;
    uv_check_start(&ctx->check, on_check);
  }
  if (leak) leaked = socket(AF_INET, SOCK_STREAM, 0);
  for (i = 0; i < n; i++) uv_thread_create(&loops[i].thread, run, &loops[i]);
  for (i = 0; i < n; i++) uv_sem_wait(&polled);

  printf("{\"uv_version_string\":\"%s\",\"leaked\":%d,\"loops\":[", uv_version_string(), leaked);
  for (i = 0; i < n; i++) {
    uv_os_fd_t fd;
    uv_fileno((uv_handle_t*)&loops[i].server, &fd);
    printf("%s{\"epoll_fd\":%d,\"server_fd\":%d,\"port\":%d}", i ? "," : "",
           uv_backend_fd(&loops[i].loop), fd, loops[i].port);
  }
  printf("]}\n");
  fflush(stdout);
  while (read(0, buf, sizeof buf) > 0) {}
  return 0;
}
