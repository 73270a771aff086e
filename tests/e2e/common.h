/* Helpers shared by the end-to-end test programs (C11, libc only).
 *
 * Everything is `static inline` so that a program may use any subset of it
 * without -Wunused-function noise, and so that no separate object is needed.
 *
 * Protocol with tests/e2e/e2e.py:
 *   - A server is started as `prog PORT_FILE`.
 *   - listen_on_loopback(PORT_FILE) binds 127.0.0.1:0 and, once the socket is
 *     listening, publishes:
 *       PORT_FILE.sock  the value of $CLOSEAUDIT_SOCKET (only if it is set)
 *       PORT_FILE       the decimal port number followed by "\n"
 *     in that order, each atomically (write "<name>.tmp", then rename()).
 *     The driver polls for PORT_FILE, so when it appears the .sock file (if
 *     any) is already complete.
 */
#ifndef CLOSEAUDIT_TESTS_E2E_COMMON_H_
#define CLOSEAUDIT_TESTS_E2E_COMMON_H_

#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define E2E_NOINLINE __attribute__((noinline))

/* Print "prog: <message>: <strerror(errno)>" and exit(1). */
static inline void e2e_die(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));
static inline void e2e_die(const char *fmt, ...) {
  int saved = errno;
  va_list ap;
  fprintf(stderr, "e2e: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (saved != 0) fprintf(stderr, ": %s", strerror(saved));
  fputc('\n', stderr);
  exit(1);
}

/* Write `content` to `path` atomically: path.tmp, then rename(). */
static inline void e2e_write_file_atomic(const char *path, const char *content) {
  char tmp[4096];
  int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
  if (n < 0 || (size_t)n >= sizeof tmp) {
    errno = ENAMETOOLONG;
    e2e_die("path too long: %s", path);
  }
  FILE *f = fopen(tmp, "w");
  if (f == NULL) e2e_die("fopen %s", tmp);
  if (fputs(content, f) == EOF) e2e_die("write %s", tmp);
  if (fclose(f) != 0) e2e_die("fclose %s", tmp);
  if (rename(tmp, path) != 0) e2e_die("rename %s -> %s", tmp, path);
}

/* If $CLOSEAUDIT_SOCKET is set, write it to "<port_file>.sock". */
static inline void e2e_publish_collector_socket(const char *port_file) {
  const char *sock = getenv("CLOSEAUDIT_SOCKET");
  if (sock == NULL) return;
  char path[4096];
  int n = snprintf(path, sizeof path, "%s.sock", port_file);
  if (n < 0 || (size_t)n >= sizeof path) {
    errno = ENAMETOOLONG;
    e2e_die("path too long: %s", port_file);
  }
  e2e_write_file_atomic(path, sock);
}

/* socket()/bind(127.0.0.1:0)/listen(), then publish the port (see the top of
 * this file). Returns the listening fd; exits on any failure. */
static inline int listen_on_loopback(const char *port_file) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) e2e_die("socket");
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
    e2e_die("setsockopt SO_REUSEADDR");
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) e2e_die("bind");
  if (listen(fd, 128) != 0) e2e_die("listen");
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
    e2e_die("getsockname");

  if (port_file != NULL) {
    e2e_publish_collector_socket(port_file);
    char buf[32];
    snprintf(buf, sizeof buf, "%u\n", (unsigned)ntohs(addr.sin_port));
    e2e_write_file_atomic(port_file, buf);
  }
  return fd;
}

/* send() all of buf; returns 0, or -1 with errno set. */
static inline int e2e_send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Sleep for `ms` milliseconds of CLOCK_MONOTONIC, even across EINTR. */
static inline void e2e_sleep_ms(long ms) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) e2e_die("clock_gettime");
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1000000000L;
  }
  int rc;
  while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)) == EINTR) {
  }
  if (rc != 0) {
    errno = rc;
    e2e_die("clock_nanosleep");
  }
}

/* Common argv handling of the servers: exactly one PORT_FILE argument. */
static inline const char *e2e_port_file_arg(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT_FILE\n", argc > 0 ? argv[0] : "server");
    exit(2);
  }
  return argv[1];
}

#endif /* CLOSEAUDIT_TESTS_E2E_COMMON_H_ */
