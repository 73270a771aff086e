/* What a program sees of its own fd table, at every RLIMIT_NOFILE.
 *
 * Usage: fd_view [STAGE]
 *
 * Prints, at each stage, the fds listed in /proc/self/fd, the number of fds
 * that fcntl(F_GETFD) finds open below the soft limit, and the number the
 * next socket() returns. The transcript must be the same with and without
 * LD_PRELOAD=libcloseaudit.so (tests/torture/torture.py, case fd_view): any
 * fd the library kept, anywhere, at any moment, would show in one of them.
 *
 * Stages, each a new image (the library starts again in each):
 *   start   as started; then sets the soft limit to the hard one, execs "hard"
 *   hard    soft = hard; lowers the soft limit to 29 with fds 20 and 21 open
 *           (as CPython's test_close_fds_when_max_fd_is_lowered does), execs
 *           "low"
 *   low     soft = 29 from the start; lowers it to 8 and execs "tiny"
 *   tiny    soft = 8: sockets until EMFILE
 * Each stage makes sockets, reads an EOF and closes, once through a function
 * with no unwind information (libunwind then checks each address it reads
 * with its validation pipe, which must not exist as fds either).
 *
 * Exit status 0, or 1 with a message on stderr.
 */
#define _GNU_SOURCE 1

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* close() behind a frame with no unwind information: the unwinder falls back
 * to frame pointers and validates the addresses it reads. */
__asm__(
    ".text\n"
    ".globl fd_view_close_without_cfi\n"
    ".type fd_view_close_without_cfi, @function\n"
    "fd_view_close_without_cfi:\n"
    "  push %rbp\n"
    "  mov %rsp, %rbp\n"
    "  call close@PLT\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size fd_view_close_without_cfi, .-fd_view_close_without_cfi\n");
int fd_view_close_without_cfi(int fd);

static void out(const char *fmt, ...) {
  char line[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  (void)!write(1, line, (size_t)n);
}

static void die(const char *what) {
  char line[512];
  int n = snprintf(line, sizeof line, "fd_view: %s: %s\n", what,
                   errno ? strerror(errno) : "unexpected");
  (void)!write(2, line, (size_t)n);
  exit(1);
}

static rlim_t soft_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
  return rl.rlim_cur;
}

static void set_soft(rlim_t soft) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
  rl.rlim_cur = soft;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) die("setrlimit");
}

/* The whole view, as one line. */
static void view(const char *stage, const char *when) {
  char list[2048];
  size_t used = 0;
  list[0] = '\0';
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) die("opendir /proc/self/fd");
  int own = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || atoi(e->d_name) == own) continue;
    int n = snprintf(list + used, sizeof list - used, "%s%s",
                     used ? "," : "", e->d_name);
    if (n < 0 || (size_t)n >= sizeof list - used) break;
    used += (size_t)n;
  }
  closedir(d);
  rlim_t soft = soft_limit();
  rlim_t top = soft == RLIM_INFINITY || soft > (1u << 20) ? 1u << 20 : soft;
  long probed = 0;
  for (rlim_t fd = 0; fd < top; fd++) {
    if (fcntl((int)fd, F_GETFD) >= 0) probed++;
  }
  int next = socket(AF_INET, SOCK_STREAM, 0);
  int err = next < 0 ? errno : 0;
  if (next >= 0) close(next);
  out("%s %s: listed=%s probed=%ld next_socket=%d%s%s", stage, when, list,
      probed, next, err ? " errno=" : "", err ? strerrorname_np(err) : "");
}

/* Sockets, an EOF and closes: every stack the library takes. */
static void work(const char *stage) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
    out("%s work: socketpair errno=%s", stage, strerrorname_np(errno));
    return;
  }
  char c = 'x';
  ssize_t w = write(sv[1], &c, 1);
  int r1 = fd_view_close_without_cfi(sv[1]);
  ssize_t n1 = read(sv[0], &c, 1);
  ssize_t n2 = read(sv[0], &c, 1);
  int r2 = close(sv[0]);
  out("%s work: fds=%d,%d write=%zd close=%d read=%zd,%zd close=%d", stage,
      sv[0], sv[1], w, r1, n1, n2, r2);
}

static void exec_stage(const char *self, const char *stage) {
  char *args[] = {(char *)"fd_view", (char *)stage, NULL};
  execv(self, args);
  die("execv");
}

int main(int argc, char **argv) {
  const char *stage = argc > 1 ? argv[1] : "start";
  const char *self = "/proc/self/exe";
  view(stage, "at main");
  work(stage);
  view(stage, "after sockets");
  if (strcmp(stage, "start") == 0) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
    /* Keep the probe short where the hard limit is huge. */
    rlim_t hard = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536
                      ? 65536 : rl.rlim_max;
    set_soft(hard);
    out("soft limit set to the hard one");
    exec_stage(self, "hard");
  } else if (strcmp(stage, "hard") == 0) {
    /* Two fds of the program's own at 20 and 21, then a lower limit. */
    int a = dup2(0, 20), b = dup2(0, 21);
    set_soft(29);
    view(stage, "soft lowered to 29");
    out("dup2=%d,%d", a, b);
    close(a);
    close(b);
    exec_stage(self, "low");
  } else if (strcmp(stage, "low") == 0) {
    set_soft(8);
    exec_stage(self, "tiny");
  } else if (strcmp(stage, "tiny") == 0) {
    int count = 0, fd, last_err = 0;
    int fds[16];
    while (count < 16 && (fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0) {
      fds[count++] = fd;
    }
    last_err = errno;
    out("tiny: %d sockets before %s", count, strerrorname_np(last_err));
    for (int i = 0; i < count; i++) close(fds[i]);
    view(stage, "after EMFILE");
  }
  return 0;
}
