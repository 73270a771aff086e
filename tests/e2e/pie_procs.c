/* E2E test program: one bug in many processes of one position-independent
 * executable, each loaded at its own address (ASLR).
 *
 * Usage: pie_procs N [good]     start N copies of this program and wait
 *                               for them
 *        pie_procs child [good] (what each copy runs)
 *
 * The parent starts the N copies together with fork() and execv() of
 * /proc/self/exe, so that every copy is a new image with its own load
 * address, and exits 0 when all of them exited 0. Each copy, from the same
 * lines: listens on 127.0.0.1:0 (CLOEXEC), connects to itself
 * (E2E:connect), accepts the connection (E2E:accept), closes the connecting
 * end (E2E:client_close), and reads on the accepted end until the EOF
 * (E2E:eof_recv). BUG (deliberate): it never closes the accepted socket.
 * It sleeps 1.5 s (the e2e case's grace period is 1 s) and exits 0. Each
 * copy first prints "pie_procs: pid P has leak_one at ADDRESS" on stderr.
 * With "good", each copy closes the accepted socket at the EOF instead.
 */
#include "common.h"

#include <sys/wait.h>

E2E_NOINLINE int accept_one(int listen_fd) {
  for (;;) {
    int fd = accept(listen_fd, NULL, NULL); /* E2E:accept */
    if (fd >= 0) return fd;
    if (errno != EINTR) e2e_die("accept");
  }
}

static int g_good;

E2E_NOINLINE void read_until_eof(int fd) {
  char buf[256];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0); /* E2E:eof_recv */
    if (n == 0) { /* BUG (deliberate): fd is never closed */
      if (g_good && close(fd) != 0) e2e_die("close");
      return;
    }
    if (n < 0 && errno != EINTR) e2e_die("recv");
  }
}

E2E_NOINLINE void leak_one(void) {
  int listen_fd = listen_on_loopback(NULL);
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  if (getsockname(listen_fd, (struct sockaddr *)&addr, &len) != 0)
    e2e_die("getsockname");
  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (client < 0) e2e_die("socket");
  if (connect(client, (struct sockaddr *)&addr, len) != 0) /* E2E:connect */
    e2e_die("connect");
  int fd = accept_one(listen_fd);
  if (close(client) != 0) e2e_die("close"); /* E2E:client_close */
  read_until_eof(fd);
  if (close(listen_fd) != 0) e2e_die("close listener");
  e2e_sleep_ms(1500);
}

int main(int argc, char **argv) {
  g_good = argc == 3 && strcmp(argv[2], "good") == 0;
  if ((argc == 2 || g_good) && strcmp(argv[1], "child") == 0) {
    /* For the driver: where this image's code is, to see that ASLR moved it. */
    fprintf(stderr, "pie_procs: pid %ld has leak_one at %p\n", (long)getpid(),
            (void *)leak_one);
    leak_one();
    return 0;
  }
  if (argc != 2 && !g_good) {
    fprintf(stderr, "usage: %s N [good] | child [good]\n",
            argc > 0 ? argv[0] : "pie_procs");
    return 2;
  }
  int n = atoi(argv[1]);
  if (n < 1 || n > 64) {
    fprintf(stderr, "pie_procs: N must be 1..64\n");
    return 2;
  }
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) e2e_die("fork");
    if (pid == 0) {
      char *args[] = {argv[0], "child", g_good ? "good" : NULL, NULL};
      execv("/proc/self/exe", args);
      perror("pie_procs: execv /proc/self/exe");
      _exit(127);
    }
  }
  int failed = 0;
  for (int i = 0; i < n; i++) {
    int status;
    pid_t pid;
    while ((pid = wait(&status)) < 0 && errno == EINTR) {
    }
    if (pid < 0) e2e_die("wait");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  }
  return failed;
}
