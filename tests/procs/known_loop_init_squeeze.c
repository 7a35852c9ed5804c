/* Squeeze the fd limit and call uv_loop_init() repeatedly: every init that fails
 * after libuv created its epoll fd shows whether that epoll fd leaks
 * (known bug loop-init-epoll-leak, fixed in libuv 1.51.0).
 *
 * Protocol: prints "ready <libuv version>" after a warm-up loop (which creates
 * libuv's process-global signal lock pipe, whose failure would abort), waits for
 * a line on stdin, squeezes RLIMIT_NOFILE to 3 free fds, runs N inits, restores
 * the limit, prints "done fails=F ok=K", then waits for stdin to close.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

/* The smallest limit below which exactly `want` fd numbers are free (fds are
 * allocated lowest-first, and the limit caps new numbers, not open ones). */
static rlim_t limit_leaving(int want) {
  static char open_fd[4096];
  DIR* d = opendir("/proc/self/fd");
  struct dirent* e;
  int self = dirfd(d);
  int fd;
  int free_fds = 0;
  rlim_t lim = 0;
  while ((e = readdir(d)) != NULL) {
    fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd != self && fd < (int) sizeof(open_fd)) open_fd[fd] = 1;
  }
  closedir(d);
  while (free_fds < want) {
    if (!open_fd[lim]) free_fds++;
    lim++;
  }
  return lim;
}

int main(int argc, char** argv) {
  int tries = argc > 1 ? atoi(argv[1]) : 5;
  char line[64];
  uv_loop_t warm;
  struct rlimit saved;
  struct rlimit squeezed;
  int fails = 0;
  int ok = 0;
  int i;

  if (uv_loop_init(&warm) != 0 || uv_loop_close(&warm) != 0) return 2;
  printf("ready %s\n", uv_version_string());
  fflush(stdout);
  if (fgets(line, sizeof(line), stdin) == NULL) return 1;

  if (getrlimit(RLIMIT_NOFILE, &saved) != 0) return 3;
  squeezed = saved;
  squeezed.rlim_cur = limit_leaving(3);
  if (setrlimit(RLIMIT_NOFILE, &squeezed) != 0) return 4;
  for (i = 0; i < tries; i++) {
    uv_loop_t loop;
    if (uv_loop_init(&loop) == 0) {
      ok++;
      uv_loop_close(&loop);
    } else {
      fails++;
    }
  }
  if (setrlimit(RLIMIT_NOFILE, &saved) != 0) return 5;
  printf("done fails=%d ok=%d\n", fails, ok);
  fflush(stdout);
  while (fgets(line, sizeof(line), stdin) != NULL) {
  }
  return 0;
}
