/* E2E test: many threads creating, duplicating and closing sockets at once.
 *
 * Usage: threaded [ITER]     (ITER defaults to 50)
 *
 * main() listens on 127.0.0.1:0 and starts NTHREADS threads sharing that
 * listener. Each thread, ITER times:
 *   extra  = socket()             a fresh socket, only to be replaced
 *   client = socket(); connect(client, listener)
 *   acc    = accept(listener)     any thread's connection; that is fine
 *   d      = dup(acc)
 *   dup2(d, extra)                implicitly closes the socket `extra` was
 *   send 1 byte on client, recv 1 byte on acc
 *   close(client)
 *   read(extra) until EOF         extra now refers to the accepted socket
 *   close(acc), close(d), close(extra)
 *
 * Every thread connects before it accepts, so the number of pending
 * connections always equals the number of threads waiting in accept(): no
 * accept() can wait forever. A thread sends its byte right after its accept(),
 * depending on nobody, so every 1-byte recv() completes; then every client is
 * closed, so every EOF read completes. The backlog (128) exceeds NTHREADS.
 *
 * Everything is closed properly, so closeaudit must report no findings.
 * On success prints exactly "sockets_created=N" (N = sockets created by
 * socket()/accept(): 1 + NTHREADS * ITER * 3) and exits 0; any failed call
 * prints a message and exits 1.
 */
#include "common.h"

#include <pthread.h>
#include <stdint.h>
#include <stdatomic.h>

#define NTHREADS 8

static int g_listen_fd = -1;
static struct sockaddr_in g_addr;
static long g_iter = 50;
static atomic_long g_sockets_created;

static void *worker(void *arg) {
  long id = (long)(intptr_t)arg;
  for (long i = 0; i < g_iter; i++) {
    int extra = socket(AF_INET, SOCK_STREAM, 0);
    if (extra < 0) e2e_die("thread %ld iter %ld: socket (extra)", id, i);
    atomic_fetch_add(&g_sockets_created, 1);

    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0) e2e_die("thread %ld iter %ld: socket (client)", id, i);
    atomic_fetch_add(&g_sockets_created, 1);

    int rc;
    do {
      rc = connect(client, (struct sockaddr *)&g_addr, sizeof g_addr);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) e2e_die("thread %ld iter %ld: connect", id, i);

    int acc;
    do {
      acc = accept(g_listen_fd, NULL, NULL);
    } while (acc < 0 && errno == EINTR);
    if (acc < 0) e2e_die("thread %ld iter %ld: accept", id, i);
    atomic_fetch_add(&g_sockets_created, 1);

    int d = dup(acc);
    if (d < 0) e2e_die("thread %ld iter %ld: dup", id, i);
    if (dup2(d, extra) != extra) e2e_die("thread %ld iter %ld: dup2", id, i);

    char out = (char)('a' + (id % 26));
    if (e2e_send_all(client, &out, 1) != 0)
      e2e_die("thread %ld iter %ld: send", id, i);

    char in;
    ssize_t n;
    do {
      n = recv(acc, &in, 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) e2e_die("thread %ld iter %ld: recv", id, i);
    if (n != 1) {
      errno = 0;
      e2e_die("thread %ld iter %ld: recv: unexpected EOF", id, i);
    }

    if (close(client) != 0) e2e_die("thread %ld iter %ld: close client", id, i);

    /* Drain to EOF through the dup2 target, so nothing stays in CLOSE_WAIT. */
    char buf[64];
    for (;;) {
      n = read(extra, buf, sizeof buf);
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        e2e_die("thread %ld iter %ld: read", id, i);
      }
      errno = 0;
      e2e_die("thread %ld iter %ld: read: %zd unexpected bytes", id, i, n);
    }

    if (close(acc) != 0) e2e_die("thread %ld iter %ld: close accepted", id, i);
    if (close(d) != 0) e2e_die("thread %ld iter %ld: close dup", id, i);
    if (close(extra) != 0) e2e_die("thread %ld iter %ld: close dup2 target", id, i);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 2) {
    fprintf(stderr, "usage: %s [ITER]\n", argv[0]);
    return 2;
  }
  if (argc == 2) {
    char *end = NULL;
    errno = 0;
    g_iter = strtol(argv[1], &end, 10);
    if (errno != 0 || end == argv[1] || *end != '\0' || g_iter < 0 ||
        g_iter > 1000000) {
      fprintf(stderr, "%s: bad ITER: %s\n", argv[0], argv[1]);
      return 2;
    }
  }

  g_listen_fd = listen_on_loopback(NULL);
  atomic_fetch_add(&g_sockets_created, 1);
  socklen_t len = sizeof g_addr;
  if (getsockname(g_listen_fd, (struct sockaddr *)&g_addr, &len) != 0)
    e2e_die("getsockname");

  pthread_t threads[NTHREADS];
  for (long t = 0; t < NTHREADS; t++) {
    int rc = pthread_create(&threads[t], NULL, worker, (void *)(intptr_t)t);
    if (rc != 0) {
      errno = rc;
      e2e_die("pthread_create");
    }
  }
  for (long t = 0; t < NTHREADS; t++) {
    int rc = pthread_join(threads[t], NULL);
    if (rc != 0) {
      errno = rc;
      e2e_die("pthread_join");
    }
  }
  if (close(g_listen_fd) != 0) e2e_die("close listener");

  long created = atomic_load(&g_sockets_created);
  long expected = 1 + (long)NTHREADS * g_iter * 3;
  if (created != expected) {
    errno = 0;
    e2e_die("internal: created %ld sockets, expected %ld", created, expected);
  }
  printf("sockets_created=%ld\n", created);
  if (fflush(stdout) != 0) e2e_die("fflush");
  return 0;
}
