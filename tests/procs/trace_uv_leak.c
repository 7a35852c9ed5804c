/* A C program on the system libuv that leaks fds on command, for `fdguard trace` tests.
 *
 * Reads commands from stdin (through a libuv pipe handle), one per line, and
 * answers each with one line on stdout once done:
 *   connect PORT  uv_tcp_connect to 127.0.0.1:PORT; on failure the handle is
 *                 never closed (its socket stays open in state CLOSE: the fd is
 *                 created inside libuv, and a live handle owns it)
 *   open          open() a file from inside the read callback and never close it
 *                 (the application's own leak, on a libuv call path)
 *   fsopen        uv_fs_open (synchronous) and never uv_fs_close
 * Prints "ready" once the loop is running.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static uv_loop_t *loop;
static uv_pipe_t in;
static char line[256];
static size_t used;

static void reply(const char *text) {
    printf("%s\n", text);
    fflush(stdout);
}

static void on_connect(uv_connect_t *req, int status) {
    char buf[128];
    /* The bug under test: on failure the handle is neither closed nor freed. */
    snprintf(buf, sizeof buf, "connect %s", status < 0 ? uv_err_name(status) : "ok");
    free(req);
    reply(buf);
}

static void leaky_connect(int port) {
    uv_tcp_t *tcp = malloc(sizeof *tcp);
    uv_connect_t *req = malloc(sizeof *req);
    struct sockaddr_in addr;
    uv_tcp_init(loop, tcp);
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_connect(req, tcp, (const struct sockaddr *)&addr, on_connect);
}

static void __attribute__((noinline)) leaky_open(void) {
    int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
    char buf[64];
    snprintf(buf, sizeof buf, "open %d", fd);
    reply(buf);
}

static void leaky_fs_open(void) {
    uv_fs_t req;
    int fd = uv_fs_open(loop, &req, "/etc/hostname", O_RDONLY, 0, NULL);
    uv_fs_req_cleanup(&req);
    char buf[64];
    snprintf(buf, sizeof buf, "fsopen %d", fd);
    reply(buf);
}

static void run_command(const char *cmd) {
    if (strncmp(cmd, "connect ", 8) == 0)
        leaky_connect(atoi(cmd + 8));
    else if (strcmp(cmd, "open") == 0)
        leaky_open();
    else if (strcmp(cmd, "fsopen") == 0)
        leaky_fs_open();
    else
        reply("unknown");
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
    (void)h;
    (void)size;
    buf->base = line + used;
    buf->len = sizeof line - used - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    (void)buf;
    if (n < 0) {
        uv_close((uv_handle_t *)s, NULL);
        uv_stop(loop);
        return;
    }
    used += (size_t)n;
    char *nl;
    while ((nl = memchr(line, '\n', used)) != NULL) {
        *nl = '\0';
        run_command(line);
        size_t rest = used - (size_t)(nl + 1 - line);
        memmove(line, nl + 1, rest);
        used = rest;
    }
}

int main(void) {
    loop = uv_default_loop();
    uv_pipe_init(loop, &in, 0);
    uv_pipe_open(&in, 0);
    uv_read_start((uv_stream_t *)&in, on_alloc, on_read);
    reply("ready");
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
