/* E2E test program: a client's connection pool that never reads its idle
 * connections.
 *
 * Usage: pool_client DONE_FILE
 *
 * The program is both ends. Its "pool" opens 3 connections (E2E:pool_open)
 * to a listener of its own; the "server" accepts each and closes it at once,
 * the way a server ends idle keep-alive connections. The pool never reads
 * them again, so it never learns: its 3 sockets sit in CLOSE_WAIT. After
 * 2.5 s (past the driver's 1 s grace period, with the kernel sampled
 * meanwhile) it writes DONE_FILE and exits 0.
 */
#include "client.h"

#define POOL 3

static int g_pool[POOL];

E2E_NOINLINE static int pool_open(const struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0); /* E2E:pool_open */
  if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
    e2e_die("connect");
  }
  return fd;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: pool_client DONE_FILE\n");
    return 2;
  }
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = e2e_loopback_addr(0);
  socklen_t len = sizeof addr;
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      listen(listener, POOL) != 0 ||
      getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
    e2e_die("listen on loopback");
  }
  for (int i = 0; i < POOL; ++i) {
    g_pool[i] = pool_open(&addr);
    int server = accept(listener, NULL, NULL);
    if (server < 0) e2e_die("accept");
    close(server); /* the server ends the idle connection */
  }
  sleep(2);
  usleep(500 * 1000);
  e2e_write_file_atomic(argv[1], "done\n");
  return 0;
}
