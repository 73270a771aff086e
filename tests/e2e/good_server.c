/* E2E test server without a leak: leak_server.c with the close() in place.
 *
 * Usage: good_server PORT_FILE
 * Echoes each client's data until the peer closes, then closes its socket
 * right away. closeaudit must report no findings for it.
 */
#include "common.h"

E2E_NOINLINE void handle_client(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0); /* E2E:eof_recv */
    if (n == 0) {
      /* Peer closed: so do we. */
      if (close(fd) != 0) perror("good_server: close");
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("good_server: recv");
      close(fd);
      return;
    }
    if (e2e_send_all(fd, buf, (size_t)n) != 0) {
      perror("good_server: send");
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

#ifdef E2E_PLUGIN
/* Built also as libgood_plugin.so: the correct twin of libleak_plugin.so. */
__attribute__((visibility("default"))) void plugin_serve(int listen_fd) {
  serve(listen_fd);
}
#else
int main(int argc, char **argv) {
  const char *port_file = e2e_port_file_arg(argc, argv);
  int listen_fd = listen_on_loopback(port_file);
  serve(listen_fd);
  return 0;
}
#endif
