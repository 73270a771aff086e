/* E2E test client that closes abortively (seed 001): abortive_close.
 *
 * Usage: linger_client PORT_FILE
 * Reads the port of a listener on 127.0.0.1 from PORT_FILE (written by the
 * driver), connects, sends a few bytes, sets SO_LINGER {1, 0}
 * (E2E:setsockopt) and closes (E2E:close): the kernel resets the connection
 * (RST) instead of sending a FIN. Exits 0.
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

E2E_NOINLINE void abort_connection(int fd) {
  struct linger lg;
  lg.l_onoff = 1;
  lg.l_linger = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0) /* E2E:setsockopt */
    e2e_die("setsockopt SO_LINGER");
  if (close(fd) != 0) e2e_die("close"); /* E2E:close */
}

int main(int argc, char **argv) {
  const char *port_file = e2e_port_file_arg(argc, argv);
  unsigned short port = e2e_read_port(port_file);
  int fd = connect_to(port);
  static const char msg[] = "hello, then a reset\n";
  if (e2e_send_all(fd, msg, sizeof msg - 1) != 0) e2e_die("send");
  abort_connection(fd);
  return 0;
}
