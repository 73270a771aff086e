/* E2E test server in the pre-fork master/worker shape, done right.
 *
 * Usage: master_worker PORT_FILE
 * The master listens on 127.0.0.1:<ephemeral> (PORT_FILE, see common.h) and
 * forks NWORKERS workers that share the listener. Each worker accepts
 * connections in a loop (E2E:accept) and echoes each client until EOF, then
 * closes the socket (E2E:close). The master only waits. On SIGTERM the master
 * sends SIGTERM to every worker, reaps them, and then dies of SIGTERM itself
 * (status 143). If a worker dies first, the master stops the others and
 * exits 1. Nothing leaks: closeaudit must report no fork_held and no
 * close_wait_leak.
 */
#include "common.h"

#include <signal.h>
#include <sys/wait.h>

#define NWORKERS 3

static volatile sig_atomic_t g_term;
static volatile sig_atomic_t g_child_died;

static void on_signal(int sig) {
  if (sig == SIGTERM) g_term = 1;
  if (sig == SIGCHLD) g_child_died = 1;
}

E2E_NOINLINE void handle_client(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0); /* E2E:eof_recv */
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("master_worker: recv");
      break;
    }
    if (e2e_send_all(fd, buf, (size_t)n) != 0) {
      perror("master_worker: send");
      break;
    }
  }
  if (close(fd) != 0) e2e_die("close"); /* E2E:close */
}

E2E_NOINLINE void worker(int listen_fd) {
  for (;;) {
    int fd = accept(listen_fd, NULL, NULL); /* E2E:accept */
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      e2e_die("accept");
    }
    handle_client(fd);
  }
}

int main(int argc, char **argv) {
  const char *port_file = e2e_port_file_arg(argc, argv);

  /* Block SIGTERM and SIGCHLD until the master is ready to wait for them;
   * the workers restore the default actions and unblock them. */
  sigset_t blocked, old;
  if (sigemptyset(&blocked) != 0 || sigaddset(&blocked, SIGTERM) != 0 ||
      sigaddset(&blocked, SIGCHLD) != 0)
    e2e_die("sigset");
  if (sigprocmask(SIG_BLOCK, &blocked, &old) != 0) e2e_die("sigprocmask");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_NOCLDSTOP;
  if (sigemptyset(&sa.sa_mask) != 0) e2e_die("sigemptyset");
  if (sigaction(SIGTERM, &sa, NULL) != 0) e2e_die("sigaction SIGTERM");
  if (sigaction(SIGCHLD, &sa, NULL) != 0) e2e_die("sigaction SIGCHLD");

  int listen_fd = listen_on_loopback(port_file);
  pid_t workers[NWORKERS];
  for (int i = 0; i < NWORKERS; i++) {
    pid_t pid = fork(); /* E2E:fork */
    if (pid < 0) e2e_die("fork");
    if (pid == 0) {
      if (signal(SIGTERM, SIG_DFL) == SIG_ERR ||
          signal(SIGCHLD, SIG_DFL) == SIG_ERR)
        e2e_die("signal");
      if (sigprocmask(SIG_SETMASK, &old, NULL) != 0) e2e_die("sigprocmask");
      worker(listen_fd);
      _exit(0);
    }
    workers[i] = pid;
  }

  /* Wait for SIGTERM, or for a worker to die, which must not happen. */
  while (!g_term && !g_child_died) {
    sigsuspend(&old); /* returns -1/EINTR once a handler ran */
    if (errno != EINTR) e2e_die("sigsuspend");
  }
  int failed = !g_term;
  if (failed) fprintf(stderr, "master_worker: a worker died unexpectedly\n");
  for (int i = 0; i < NWORKERS; i++) {
    if (kill(workers[i], SIGTERM) != 0 && errno != ESRCH)
      e2e_die("kill worker %ld", (long)workers[i]);
  }
  for (int i = 0; i < NWORKERS; i++) {
    int status;
    while (waitpid(workers[i], &status, 0) < 0) {
      if (errno != EINTR) e2e_die("waitpid worker %ld", (long)workers[i]);
    }
  }
  if (close(listen_fd) != 0) e2e_die("close listener");
  if (failed) return 1;
  /* Die of SIGTERM, as a server without a handler would. */
  if (signal(SIGTERM, SIG_DFL) == SIG_ERR) e2e_die("signal");
  if (sigprocmask(SIG_SETMASK, &old, NULL) != 0) e2e_die("sigprocmask");
  if (raise(SIGTERM) != 0) e2e_die("raise");
  return 1;
}
