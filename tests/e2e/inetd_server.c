/* E2E test server that hands each connection to a program it execs, on
 * purpose: inetd_server.
 *
 * Usage: inetd_server PORT_FILE inetd|activation
 *        inetd_server service LABEL   (what activation execs)
 * Serves 127.0.0.1:<ephemeral> (port written to PORT_FILE, see common.h) and
 * takes two connections, one at a time, each with a plain accept() (no
 * CLOEXEC). For each it forks; the child puts the connection where the
 * program it starts expects it, closes the original fd and execs; the
 * parent closes its copy (E2E:parent_close), waits for the child, and after
 * the second exits 0.
 *   inetd       the connection becomes the child's stdin and stdout
 *               (dup2 onto 0 and 1), and the child execs /bin/echo hello,
 *               as inetd starts a service.
 *   activation  the connection becomes fd 3 with LISTEN_FDS=1, as a
 *               service manager passes a socket (sd_listen_fds(3)), and the
 *               child execs this program as "service handed" with
 *               LISTEN_PID set to its own pid. For the second connection
 *               LISTEN_PID names another process (pid 1), so the socket is
 *               not the service's by that protocol, and the child execs
 *               "service stray": that one is a leak into the new program.
 * A service writes "hello\n" to fd 3 and exits 0 without reading.
 */
#include "common.h"

#include <sys/wait.h>

E2E_NOINLINE int accept_one(int listen_fd) {
  for (;;) {
    int fd = accept(listen_fd, NULL, NULL); /* E2E:accept */
    if (fd >= 0) return fd;
    if (errno != EINTR && errno != ECONNABORTED) e2e_die("accept");
  }
}

/* In the child: fd onto `to`, and the original closed. */
static void move_fd(int fd, int to) {
  if (fd == to) return;
  if (dup2(fd, to) != to) e2e_die("dup2 %d onto %d", fd, to);
}

E2E_NOINLINE void start_inetd_child(int conn) {
  move_fd(conn, 0);
  move_fd(conn, 1);
  if (conn > 1 && close(conn) != 0) e2e_die("close in the child");
  execl("/bin/echo", "echo", "hello", (char *)NULL);
  perror("inetd_server: execl /bin/echo");
  _exit(127);
}

E2E_NOINLINE void start_activated_child(int conn, int handed) {
  move_fd(conn, 3);
  if (conn != 3 && close(conn) != 0) e2e_die("close in the child");
  char pid[32];
  snprintf(pid, sizeof pid, "%ld", handed ? (long)getpid() : 1L);
  if (setenv("LISTEN_FDS", "1", 1) != 0 || setenv("LISTEN_PID", pid, 1) != 0)
    e2e_die("setenv");
  execl("/proc/self/exe", "inetd_server", "service",
        handed ? "handed" : "stray", (char *)NULL);
  perror("inetd_server: execl /proc/self/exe");
  _exit(127);
}

static int service(void) {
  static const char hello[] = "hello\n";
  return e2e_send_all(3, hello, sizeof hello - 1) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "service") == 0) return service();
  if (argc != 3 || (strcmp(argv[2], "inetd") != 0 &&
                    strcmp(argv[2], "activation") != 0)) {
    fprintf(stderr, "usage: %s PORT_FILE inetd|activation\n",
            argc > 0 ? argv[0] : "inetd_server");
    return 2;
  }
  int inetd = strcmp(argv[2], "inetd") == 0;
  int listen_fd = listen_on_loopback(argv[1]);
  int failed = 0;
  for (int i = 0; i < 2; i++) {
    int conn = accept_one(listen_fd);
    pid_t pid = fork();
    if (pid < 0) e2e_die("fork");
    if (pid == 0) {
      if (inetd) start_inetd_child(conn);
      start_activated_child(conn, i == 0);
    }
    if (close(conn) != 0) e2e_die("close"); /* E2E:parent_close */
    int status;
    while (waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) e2e_die("waitpid %ld", (long)pid);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  }
  if (close(listen_fd) != 0) e2e_die("close listener");
  return failed;
}
