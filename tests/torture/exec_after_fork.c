/* A server that forks a helper which execs, the way subprocess-style code
 * does, while it serves: what the library marks at an exec must be invisible,
 * and sockets the exec closed (CLOEXEC) must count as closed at the exec.
 *
 * Usage: exec_after_fork [sleeper SECONDS]
 *
 * Makes 3 loopback connections (accepted with SOCK_CLOEXEC, all CLOEXEC),
 * forks; the child first tries an exec that fails, prints its timer slack,
 * then execs itself as "sleeper 2", which prints its timer slack and sleeps.
 * Meanwhile the parent's clients close, the parent reads each EOF and closes
 * the connection, then waits for the child, and last posix_spawns itself
 * as "sleeper 0" (whose child execs inside libc). Nothing leaks: a report with an
 * error finding (fork_held: "the child still held it") is wrong. The
 * transcript (fds, results, timer slacks) is the same with and without the
 * library. Exit status 0, or 1 with a message on stderr.
 */
#define _GNU_SOURCE 1

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONNECTIONS 3

extern char **environ;

static void out(const char *fmt, ...) {
  char line[512];
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
  fprintf(stderr, "exec_after_fork: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "sleeper") == 0) {
    out("sleeper: timer slack %d", prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
    sleep((unsigned)atoi(argv[2]));
    return 0;
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      listen(lfd, 8) != 0 ||
      getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
    die("listener");
  }
  int clients[CONNECTIONS], served[CONNECTIONS];
  for (int i = 0; i < CONNECTIONS; i++) {
    clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (clients[i] < 0 ||
        connect(clients[i], (struct sockaddr *)&addr, sizeof addr) != 0) {
      die("connect");
    }
    served[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (served[i] < 0) die("accept4");
  }
  out("parent: listener %d, connections %d..%d", lfd, clients[0],
      served[CONNECTIONS - 1]);
  out("parent: timer slack %d", prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));

  /* The child's end closes at its exec (CLOEXEC): then the parent goes on. */
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) != 0) die("pipe2");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(gate[0]);
    char *missing[] = {(char *)"missing", NULL};
    int rc = execv("/nonexistent/exec_after_fork", missing);
    out("child: failed exec %d %s, timer slack %d", rc,
        strerrorname_np(errno), prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
    char *sleeper[] = {(char *)"exec_after_fork", (char *)"sleeper",
                       (char *)"2", NULL};
    execv("/proc/self/exe", sleeper);
    _exit(1);
  }
  close(gate[1]);
  char g;
  while (read(gate[0], &g, 1) < 0 && errno == EINTR) {
  }
  close(gate[0]);
  /* The clients leave; the server reads each EOF and closes at once (and
   * prints nothing until the child is gone: one transcript). */
  for (int i = 0; i < CONNECTIONS; i++) {
    if (close(clients[i]) != 0) die("close client");
    char c;
    ssize_t n;
    while ((n = recv(served[i], &c, 1, 0)) < 0 && errno == EINTR) {
    }
    if (n != 0) die("expected an EOF");
    if (close(served[i]) != 0) die("close served");
  }
  int status;
  if (waitpid(pid, &status, 0) != pid) die("waitpid");
  out("parent: read %d EOFs and closed", CONNECTIONS);
  /* posix_spawn's child execs inside libc, where no wrapper runs. */
  char *spawned[] = {(char *)"exec_after_fork", (char *)"sleeper", (char *)"0",
                     NULL};
  pid_t sp;
  int rc = posix_spawn(&sp, "/proc/self/exe", NULL, NULL, spawned, environ);
  if (rc != 0 || waitpid(sp, &status, 0) != sp) die("posix_spawn");
  out("parent: spawned child exited %d, timer slack %d",
      WIFEXITED(status) ? WEXITSTATUS(status) : -1,
      prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
  out("parent: child exited %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  close(lfd);
  return 0;
}
