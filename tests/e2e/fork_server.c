/* E2E test server that forks per connection (seed 002): fork_held.
 *
 * Usage: fork_server PORT_FILE [good]
 * Serves 127.0.0.1:<ephemeral> (port written to PORT_FILE, see common.h).
 * For each connection serve() forks; the child, in handle_child(), echoes
 * until recv() returns 0, then close()s the socket (E2E:close) and _exit(0)s.
 *
 * BUG (deliberate, default): the parent never closes its copy of the accepted
 * fd, so the child's close() sends no FIN: the client sees no EOF and the
 * socket stays in CLOSE_WAIT, held by the parent. With "good" the parent
 * closes its copy right after fork() (E2E:parent_close), and nothing leaks.
 *
 * Children are reaped from a SIGCHLD handler. Runs until killed (SIGTERM,
 * default action).
 */
#include "common.h"

#include <signal.h>
#include <sys/wait.h>

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

E2E_NOINLINE void handle_child(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0); /* E2E:eof_recv */
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("fork_server: recv");
      _exit(1);
    }
    if (e2e_send_all(fd, buf, (size_t)n) != 0) {
      perror("fork_server: send");
      _exit(1);
    }
  }
  if (close(fd) != 0) { /* E2E:close */
    perror("fork_server: close");
    _exit(1);
  }
  _exit(0);
}

E2E_NOINLINE void serve(int listen_fd, int good) {
  for (;;) {
    int fd = accept(listen_fd, NULL, NULL); /* E2E:accept */
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      e2e_die("accept");
    }
    pid_t pid = fork(); /* E2E:fork */
    if (pid < 0) e2e_die("fork");
    if (pid == 0) {
      if (close(listen_fd) != 0) {
        perror("fork_server: close listener in child");
        _exit(1);
      }
      handle_child(fd);
    }
    if (good) {
      if (close(fd) != 0) e2e_die("close"); /* E2E:parent_close */
    }
    /* else BUG (deliberate): the parent keeps fd open forever. */
  }
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "good") != 0 &&
                               strcmp(argv[2], "bad") != 0)) {
    fprintf(stderr, "usage: %s PORT_FILE [good|bad]\n",
            argc > 0 ? argv[0] : "fork_server");
    return 2;
  }
  int good = argc == 3 && strcmp(argv[2], "good") == 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  if (sigemptyset(&sa.sa_mask) != 0) e2e_die("sigemptyset");
  if (sigaction(SIGCHLD, &sa, NULL) != 0) e2e_die("sigaction SIGCHLD");
  int listen_fd = listen_on_loopback(argv[1]);
  serve(listen_fd, good);
  return 0;
}
