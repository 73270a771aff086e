/* E2E test server that daemonizes, then leaks like leak_server.
 *
 * Usage: daemon_server PORT_FILE
 * The original process forks; the intermediate child calls setsid() and
 * forks again, then _exit(0)s; the original reaps it and then waits for
 * SIGTERM (default action: it dies of it, status 143), so that
 * `closeaudit run`, which follows its direct child, keeps running while the
 * grandchild serves.
 *
 * The grandchild (the daemon) calls close_range(3, ~0U, 0) like daemons do,
 * writes its pid to PORT_FILE.pid, then listens on 127.0.0.1:<ephemeral>
 * (PORT_FILE, see common.h) and serves like leak_server: echoes each client
 * until EOF (E2E:eof_recv) and returns WITHOUT closing the socket. It runs
 * until killed: it is in its own session, so the driver must kill it by the
 * pid in PORT_FILE.pid.
 */
#include "client.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

E2E_NOINLINE void handle_client(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0); /* E2E:eof_recv */
    if (n == 0) {
      /* Peer closed. BUG (deliberate): no close(fd) here. */
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("daemon_server: recv");
      close(fd);
      return;
    }
    if (e2e_send_all(fd, buf, (size_t)n) != 0) {
      perror("daemon_server: send");
      close(fd);
      return;
    }
  }
}

E2E_NOINLINE void serve(int listen_fd) {
  for (;;) {
    int fd = accept(listen_fd, NULL, NULL); /* E2E:accept */
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      e2e_die("accept");
    }
    handle_client(fd);
  }
}

E2E_NOINLINE void close_inherited_fds(void) {
#if defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  if (close_range(3, ~0U, 0) != 0) e2e_die("close_range"); /* E2E:close_range */
#else
  if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) e2e_die("close_range");
#endif
}

E2E_NOINLINE void run_daemon(const char *port_file) {
  close_inherited_fds();
  char buf[32];
  snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  e2e_write_side_file(port_file, ".pid", buf);
  int listen_fd = listen_on_loopback(port_file);
  serve(listen_fd);
}

int main(int argc, char **argv) {
  const char *port_file = e2e_port_file_arg(argc, argv);
  pid_t child = fork(); /* E2E:fork1 */
  if (child < 0) e2e_die("fork");
  if (child == 0) {
    if (setsid() < 0) {
      perror("daemon_server: setsid");
      _exit(1);
    }
    pid_t grandchild = fork(); /* E2E:fork2 */
    if (grandchild < 0) {
      perror("daemon_server: second fork");
      _exit(1);
    }
    if (grandchild == 0) {
      run_daemon(port_file);
      _exit(0);
    }
    _exit(0);
  }
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) e2e_die("waitpid");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "daemon_server: intermediate child ended with 0x%x\n",
            status);
    return 1;
  }
  /* Wait for SIGTERM (default action: terminate). */
  for (;;) pause();
}
