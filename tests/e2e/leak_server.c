/* E2E test server with a CLOSE_WAIT leak.
 *
 * Usage: leak_server PORT_FILE
 * Serves 127.0.0.1:<ephemeral> (port written to PORT_FILE, see common.h),
 * one client at a time: echoes what it receives until the peer closes, then
 * returns WITHOUT closing the socket. Every client therefore leaves one socket
 * in CLOSE_WAIT. Runs until killed (SIGTERM, default action).
 *
 * e2e.py finds the line of the recv() that sees EOF by scanning this file for
 * the one line carrying the eof_recv marker comment (below), so keep that
 * recv() call and its marker comment on the same single line.
 */
#include "common.h"

E2E_NOINLINE void handle_client(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0); /* E2E:eof_recv */
    if (n == 0) {
      /* Peer closed. BUG (deliberate): no close(fd) here. */
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("leak_server: recv");
      close(fd);
      return;
    }
    if (e2e_send_all(fd, buf, (size_t)n) != 0) {
      perror("leak_server: send");
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
/* Built also as libleak_plugin.so, which plugin_host loads with dlopen()
 * after it has started: the same leak, in an object loaded late. */
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
