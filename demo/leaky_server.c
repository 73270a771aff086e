/* leaky_server: a tiny "order service" with a classic CLOSE_WAIT leak.
 *
 * Usage: leaky_server PORT_FILE
 *   Listens on 127.0.0.1:<ephemeral port> and writes that port to PORT_FILE.
 *   Protocol: one request line per connection, one reply line, then close.
 *     ORDER <item> <qty>   ->  OK order <id>
 *     STATUS <id>          ->  OK <id> shipped | ERR no such order
 *
 * Try it:
 *   closeaudit run --json report.json -- ./leaky_server /tmp/port &
 *   printf 'ORDER coffee 2\n' | nc -q1 127.0.0.1 $(cat /tmp/port)   # fine
 *   nc -z 127.0.0.1 $(cat /tmp/port)         # connect and hang up: leaks
 *   ss -tan state close-wait                 # ...and here it is
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int next_order_id = 1000;

static void reply(int fd, const char *text) {
  send(fd, text, strlen(text), MSG_NOSIGNAL);  /* best effort */
}

/* Reads one request line and answers it. */
__attribute__((noinline)) static void handle_request(int fd) {
  char line[256];
  size_t used = 0;

  while (used < sizeof line - 1 && memchr(line, '\n', used) == NULL) {
    ssize_t n = recv(fd, line + used, sizeof line - 1 - used, 0);
    if (n == 0) {
      /* The client hung up before sending a full request (a health check, a
       * cancelled request, a load balancer probing the port). Nothing to
       * answer, so we bail out... and forget close(fd). The kernel has
       * already seen the client's FIN, so this socket now sits in CLOSE_WAIT
       * holding an fd until the process exits. Every probe leaks one more. */
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return;
    }
    used += (size_t)n;
  }
  line[used] = '\0';
  line[strcspn(line, "\r\n")] = '\0';

  char item[64];
  int qty, id;
  char out[128];
  if (sscanf(line, "ORDER %63s %d", item, &qty) == 2 && qty > 0) {
    snprintf(out, sizeof out, "OK order %d\n", next_order_id++);
    reply(fd, out);
  } else if (sscanf(line, "STATUS %d", &id) == 1) {
    if (id >= 1000 && id < next_order_id)
      snprintf(out, sizeof out, "OK %d shipped\n", id);
    else
      snprintf(out, sizeof out, "ERR no such order\n");
    reply(fd, out);
  } else {
    reply(fd, "ERR bad request\n");
  }
  close(fd);  /* the normal path remembers to close */
}

static void write_port_file(const char *path, unsigned port) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 ||
      rename(tmp, path) != 0) {
    perror(path);
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT_FILE\n", argv[0]);
    return 2;
  }
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      listen(lfd, 64) != 0 ||
      getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
    perror("listen");
    return 1;
  }
  write_port_file(argv[1], ntohs(addr.sin_port));
  fprintf(stderr, "order service listening on 127.0.0.1:%u\n",
          ntohs(addr.sin_port));

  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      perror("accept");
      return 1;
    }
    handle_request(fd);
  }
}
