/* E2E test server that closes, but too late.
 *
 * Usage: late_close_server PORT_FILE
 * Echoes a client's data until the peer closes, then sleeps LATE_CLOSE_MS
 * (8 s) with the socket in CLOSE_WAIT and only then closes it. Clients are
 * served one at a time on the main thread, so while it sleeps nobody else is
 * served (the test uses a single client). With --grace 2s closeaudit must
 * report a close_wait_leak whose example has closed_after_ms ~= 8000.
 */
#include "common.h"

#define LATE_CLOSE_MS 8000L

E2E_NOINLINE void handle_client(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0); /* E2E:eof_recv */
    if (n == 0) {
      /* Peer closed; we dawdle before closing our end. */
      e2e_sleep_ms(LATE_CLOSE_MS);
      if (close(fd) != 0) perror("late_close_server: close");
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("late_close_server: recv");
      close(fd);
      return;
    }
    if (e2e_send_all(fd, buf, (size_t)n) != 0) {
      perror("late_close_server: send");
      close(fd);
      return;
    }
  }
}

E2E_NOINLINE void serve(int listen_fd) {
  for (;;) {
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      e2e_die("accept");
    }
    handle_client(fd);
  }
}

int main(int argc, char **argv) {
  const char *port_file = e2e_port_file_arg(argc, argv);
  int listen_fd = listen_on_loopback(port_file);
  serve(listen_fd);
  return 0;
}
