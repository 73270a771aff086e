/* E2E test server that leaks an accepted socket into an exec'd program:
 * exec_inherited.
 *
 * Usage: spawn_server PORT_FILE fork|spawn
 * Serves 127.0.0.1:<ephemeral> (port written to PORT_FILE, see common.h).
 * Accepts ONE connection with a plain accept() (E2E:accept), so the new fd
 * lacks FD_CLOEXEC. Then it starts "/bin/sleep 3" (E2E:exec):
 *   fork   fork(), and execl() in the child;
 *   spawn  posix_spawn().
 * BUG (deliberate): the connection survives the exec into sleep, which never
 * uses it. The server waits for sleep to exit, then closes the connection and
 * exits 0 (1 if anything failed or sleep did not exit 0).
 */
#include "common.h"

#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

E2E_NOINLINE int accept_one(int listen_fd) {
  for (;;) {
    int fd = accept(listen_fd, NULL, NULL); /* E2E:accept */
    if (fd >= 0) return fd;
    if (errno != EINTR && errno != ECONNABORTED) e2e_die("accept");
  }
}

E2E_NOINLINE pid_t start_sleep_fork(void) {
  pid_t pid = fork();
  if (pid < 0) e2e_die("fork");
  if (pid == 0) {
    execl("/bin/sleep", "sleep", "3", (char *)NULL); /* E2E:exec */
    perror("spawn_server: execl /bin/sleep");
    _exit(127);
  }
  return pid;
}

E2E_NOINLINE pid_t start_sleep_spawn(void) {
  char *const args[] = {"sleep", "3", NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, "/bin/sleep", NULL, NULL, args, environ); /* E2E:spawn */
  if (rc != 0) {
    errno = rc;
    e2e_die("posix_spawn /bin/sleep");
  }
  return pid;
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[2], "fork") != 0 &&
                    strcmp(argv[2], "spawn") != 0)) {
    fprintf(stderr, "usage: %s PORT_FILE fork|spawn\n",
            argc > 0 ? argv[0] : "spawn_server");
    return 2;
  }
  int listen_fd = listen_on_loopback(argv[1]);
  int fd = accept_one(listen_fd);
  pid_t pid = strcmp(argv[2], "fork") == 0 ? start_sleep_fork()
                                           : start_sleep_spawn();
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) e2e_die("waitpid %ld", (long)pid);
  }
  if (close(fd) != 0) e2e_die("close"); /* E2E:close */
  if (close(listen_fd) != 0) e2e_die("close listener");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "spawn_server: sleep ended with status 0x%x\n", status);
    return 1;
  }
  return 0;
}
