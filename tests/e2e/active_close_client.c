/* E2E test client that closes first: time_wait.
 *
 * Usage: active_close_client PORT_FILE N [LINGER_MS]
 * Reads the port of a listener on 127.0.0.1 from PORT_FILE (written by the
 * driver, which reads each connection until EOF and then closes it). N times:
 * connects, sends a line and close()s first (E2E:close), before the peer has
 * closed, so each of our ends goes through FIN_WAIT into TIME_WAIT. Then
 * sleeps LINGER_MS milliseconds (default 1500) so the TIME_WAIT sockets can be
 * seen while we still run, and exits 0.
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

E2E_NOINLINE void talk_and_close(int fd) {
  static const char msg[] = "hello, bye\n";
  if (e2e_send_all(fd, msg, sizeof msg - 1) != 0) e2e_die("send");
  if (close(fd) != 0) e2e_die("close"); /* E2E:close */
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: %s PORT_FILE N [LINGER_MS]\n",
            argc > 0 ? argv[0] : "active_close_client");
    return 2;
  }
  long n = e2e_parse_long("N", argv[2], 1, 1000);
  long linger_ms = argc == 4 ? e2e_parse_long("LINGER_MS", argv[3], 0, 600000)
                             : 1500;
  unsigned short port = e2e_read_port(argv[1]);
  for (long i = 0; i < n; i++) talk_and_close(connect_to(port));
  e2e_sleep_ms(linger_ms);
  return 0;
}
