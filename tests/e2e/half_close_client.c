/* E2E test client that half-closes and lingers (seed 003): fin_wait2_held.
 *
 * Usage: half_close_client PORT_FILE SECONDS
 * Reads the port of a listener on 127.0.0.1 from PORT_FILE (written by the
 * driver, which accepts the connection and keeps it open without ever closing
 * it), connects, calls shutdown(SHUT_WR) (E2E:shutdown) and then sleeps
 * SECONDS and exits 0 WITHOUT closing the socket. Meanwhile our side of the
 * connection sits in FIN_WAIT2: our FIN was acknowledged, the peer's never
 * comes.
 */
#include "client.h"

E2E_NOINLINE int connect_to(unsigned short port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0); /* E2E:socket */
  if (fd < 0) e2e_die("socket");
  struct sockaddr_in addr = e2e_loopback_addr(port);
  while (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    if (errno != EINTR) e2e_die("connect 127.0.0.1:%u", (unsigned)port);
  }
  return fd;
}

E2E_NOINLINE void half_close(int fd) {
  if (shutdown(fd, SHUT_WR) != 0) e2e_die("shutdown"); /* E2E:shutdown */
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s PORT_FILE SECONDS\n",
            argc > 0 ? argv[0] : "half_close_client");
    return 2;
  }
  long seconds = e2e_parse_long("SECONDS", argv[2], 0, 3600);
  unsigned short port = e2e_read_port(argv[1]);
  int fd = connect_to(port);
  half_close(fd);
  e2e_sleep_ms(seconds * 1000);
  /* BUG (deliberate): fd is never closed; exit() releases it. */
  return 0;
}
