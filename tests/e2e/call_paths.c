/* E2E test program: the same helper reached along different call paths.
 *
 * Usage: call_paths PORT_FILE
 * (PORT_FILE only receives "done\n", written atomically at the end.)
 *
 * Makes loopback connections to itself and leaks every accepted socket in
 * CLOSE_WAIT: the client side closes, the server side reads the EOF through
 * one helper, read_eof() (E2E:eof_recv), and never closes. The helper is
 * reached along three kinds of path, interleaved so that each path's capture
 * follows another path's through the same call site:
 *
 *   path_a -> read_eof                      3 connections
 *   path_b -> read_eof                      5 connections
 *   path_c -> descend(depth) -> read_eof    depth 1 twice, depth 3 twice
 *
 * A stack capture that mixed the paths up would merge findings or shift
 * counts; the driver expects one close_wait_leak per path and depth with
 * exactly these counts. The program then holds the sockets past the grace
 * period and exits 0.
 */
#include "client.h"

static int g_listener = -1;
static struct sockaddr_in g_addr;

E2E_NOINLINE static void read_eof(int fd) {
  char buf[16];
  ssize_t n = recv(fd, buf, sizeof buf, 0); /* E2E:eof_recv */
  if (n != 0) e2e_die("recv on fd %d returned %zd, expected EOF", fd, n);
}

/* One connection, already closed by its client. */
static int closed_connection(void) {
  int client = socket(AF_INET, SOCK_STREAM, 0);
  if (client < 0) e2e_die("socket");
  if (connect(client, (struct sockaddr *)&g_addr, sizeof g_addr) != 0) {
    e2e_die("connect");
  }
  int server = accept(g_listener, NULL, NULL); /* E2E:accept */
  if (server < 0) e2e_die("accept");
  if (close(client) != 0) e2e_die("close client");
  return server;
}

E2E_NOINLINE static void path_a(void) {
  read_eof(closed_connection()); /* E2E:path_a */
}

E2E_NOINLINE static void path_b(void) {
  read_eof(closed_connection()); /* E2E:path_b */
}

E2E_NOINLINE static void descend(int depth, int fd) {
  if (depth > 1) {
    descend(depth - 1, fd); /* E2E:descend_recurse */
  } else {
    read_eof(fd); /* E2E:descend_read */
  }
  __asm__ volatile("" ::: "memory"); /* no tail call: keep every frame */
}

E2E_NOINLINE static void path_c(int depth) {
  descend(depth, closed_connection()); /* E2E:path_c */
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: call_paths PORT_FILE\n");
    return 2;
  }
  g_listener = socket(AF_INET, SOCK_STREAM, 0);
  if (g_listener < 0) e2e_die("socket");
  g_addr = e2e_loopback_addr(0);
  socklen_t len = sizeof g_addr;
  if (bind(g_listener, (struct sockaddr *)&g_addr, sizeof g_addr) != 0 ||
      listen(g_listener, 16) != 0 ||
      getsockname(g_listener, (struct sockaddr *)&g_addr, &len) != 0) {
    e2e_die("listen on loopback");
  }
  /* a b c1 b a c3 b b c1 a c3 b */
  path_a();
  path_b();
  path_c(1);
  path_b();
  path_a();
  path_c(3);
  path_b();
  path_b();
  path_c(1);
  path_a();
  path_c(3);
  path_b();
  sleep(2); /* past the 1 s grace period, the leaks still open */
  e2e_write_file_atomic(argv[1], "done\n");
  return 0;
}
