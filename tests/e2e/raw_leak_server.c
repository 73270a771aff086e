/* E2E test server that makes and uses its sockets with raw system calls, as
 * Go programs do, and leaks every connection in CLOSE_WAIT: raw_leak_server.
 *
 * Usage: raw_leak_server PORT_FILE
 * Serves 127.0.0.1:<ephemeral> like leak_server (the port in PORT_FILE, its
 * pid in PORT_FILE.pid, see common.h and client.h), one client at a time:
 * echoes what it receives until the peer closes, then leaves the socket open
 * (BUG, deliberate) and takes the next client. Runs until killed. socket,
 * bind, listen, accept4, getsockname, recvfrom and sendto are all syscall(2)
 * calls, and nothing is ever closed, so the library follows none of it: the
 * e2e cases build it statically, or mark it as a Go program, and only the
 * kernel can say what became of its sockets.
 */
#include "client.h"

#include <sys/syscall.h>

static long raw_or_die(long rc, const char *what) {
  if (rc < 0) e2e_die("%s", what);
  return rc;
}

static void serve_one(int fd) {
  char buf[4096];
  for (;;) {
    long n = syscall(SYS_recvfrom, fd, buf, sizeof buf, 0, NULL, NULL);
    if (n == 0) return; /* the peer closed; this side never does */
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (long sent = 0; sent < n;) {
      long m = syscall(SYS_sendto, fd, buf + sent, (size_t)(n - sent),
                       MSG_NOSIGNAL, NULL, 0);
      if (m < 0 && errno != EINTR) return;
      if (m > 0) sent += m;
    }
  }
}

int main(int argc, char **argv) {
  const char *port_file = e2e_port_file_arg(argc, argv);
  int fd = (int)raw_or_die(
      syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
  struct sockaddr_in addr = e2e_loopback_addr(0);
  raw_or_die(syscall(SYS_bind, fd, &addr, sizeof addr), "bind");
  raw_or_die(syscall(SYS_listen, fd, 16), "listen");
  socklen_t len = sizeof addr;
  raw_or_die(syscall(SYS_getsockname, fd, &addr, &len), "getsockname");
  char text[32];
  snprintf(text, sizeof text, "%ld\n", (long)getpid());
  e2e_write_side_file(port_file, ".pid", text);
  snprintf(text, sizeof text, "%u\n", (unsigned)ntohs(addr.sin_port));
  e2e_write_file_atomic(port_file, text);
  for (;;) {
    long conn = syscall(SYS_accept4, fd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      e2e_die("accept4");
    }
    serve_one((int)conn);
  }
}
