/* Extra helpers for the end-to-end test programs that act as clients, or that
 * take more arguments than PORT_FILE (C11, libc only). Builds on common.h.
 *
 * A client is started as `prog PORT_FILE ...`: the driver (e2e.py) runs a
 * listener itself and writes its port to PORT_FILE ("<port>\n", atomically)
 * before it starts the program, so the file is complete when the program
 * reads it.
 */
#ifndef CLOSEAUDIT_TESTS_E2E_CLIENT_H_
#define CLOSEAUDIT_TESTS_E2E_CLIENT_H_

#include "common.h"

#include <limits.h>

/* Parse a decimal long in [lo, hi]; exits 2 with a message otherwise. */
static inline long e2e_parse_long(const char *what, const char *s, long lo,
                                  long hi) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "e2e: bad %s '%s': expected an integer in [%ld, %ld]\n",
            what, s, lo, hi);
    exit(2);
  }
  return v;
}

/* Read the port number from PORT_FILE ("<port>\n"); exits 1 on failure. */
static inline unsigned short e2e_read_port(const char *port_file) {
  FILE *f = fopen(port_file, "r");
  if (f == NULL) e2e_die("fopen %s", port_file);
  char buf[32];
  if (fgets(buf, sizeof buf, f) == NULL) {
    errno = 0;
    e2e_die("%s is empty", port_file);
  }
  if (fclose(f) != 0) e2e_die("fclose %s", port_file);
  buf[strcspn(buf, "\r\n")] = '\0';
  return (unsigned short)e2e_parse_long("port", buf, 1, 65535);
}

/* 127.0.0.1:port as a sockaddr_in. */
static inline struct sockaddr_in e2e_loopback_addr(unsigned short port) {
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  return addr;
}

/* Write "<path_prefix><suffix>" atomically with content (e.g. PORT_FILE.pid). */
static inline void e2e_write_side_file(const char *port_file,
                                       const char *suffix,
                                       const char *content) {
  char path[4096];
  int n = snprintf(path, sizeof path, "%s%s", port_file, suffix);
  if (n < 0 || (size_t)n >= sizeof path) {
    errno = ENAMETOOLONG;
    e2e_die("path too long: %s", port_file);
  }
  e2e_write_file_atomic(path, content);
}

#endif /* CLOSEAUDIT_TESTS_E2E_CLIENT_H_ */
