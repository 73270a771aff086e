/* E2E test program: a libuv server whose read callback ignores UV_EOF.
 *
 * Usage: uv_server DONE_FILE bad|good
 *
 * A uv_tcp_t listener on loopback; each connection is accepted into a
 * uv_tcp_t and read with uv_read_start(..., on_read). A thread of the
 * program is the client: 3 connections, each sends a line and closes.
 *
 *   bad:  on_read (E2E:uv_handler) returns on UV_EOF without uv_close(): the
 *         handle, and its socket, stay open in CLOSE_WAIT. libuv reads the
 *         EOF inside uv_run; on_read is the code that should have closed.
 *   good: on_read calls uv_close() on UV_EOF.
 *
 * After 2.5 s (past the driver's 1 s grace period) the loop stops, DONE_FILE
 * gets "done\n" and the program exits 0.
 */
#include "client.h"

#include <pthread.h>
#include <stdlib.h>
#include <uv.h>

static int g_good;
static uv_loop_t *g_loop;
static struct sockaddr_in g_addr;

static void on_alloc(uv_handle_t *handle, size_t size, uv_buf_t *buf) {
  (void)handle;
  static char storage[4096];
  (void)size;
  *buf = uv_buf_init(storage, sizeof storage);
}

static void on_closed(uv_handle_t *handle) { free(handle); }

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) { /* E2E:uv_handler */
  (void)buf;
  if (nread >= 0) return;
  /* UV_EOF, or an error. The bug: returning without uv_close(). */
  if (g_good) uv_close((uv_handle_t *)stream, on_closed);
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  uv_tcp_t *client = malloc(sizeof *client);
  if (client == NULL) e2e_die("malloc");
  uv_tcp_init(g_loop, client);
  if (uv_accept(server, (uv_stream_t *)client) != 0) { /* E2E:accept */
    uv_close((uv_handle_t *)client, on_closed);
    return;
  }
  uv_read_start((uv_stream_t *)client, on_alloc, on_read); /* E2E:read_start */
}

static void on_timeout(uv_timer_t *timer) { uv_stop(timer->loop); }

static void *clients(void *arg) {
  (void)arg;
  for (int i = 0; i < 3; ++i) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&g_addr, sizeof g_addr) != 0) {
      e2e_die("connect");
    }
    if (write(c, "hello\n", 6) != 6) e2e_die("write");
    close(c);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[2], "bad") != 0 && strcmp(argv[2], "good") != 0)) {
    fprintf(stderr, "usage: uv_server DONE_FILE bad|good\n");
    return 2;
  }
  g_good = strcmp(argv[2], "good") == 0;
  g_loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(g_loop, &server);
  g_addr = e2e_loopback_addr(0);
  int len = sizeof g_addr;
  if (uv_tcp_bind(&server, (const struct sockaddr *)&g_addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&server, 16, on_connection) != 0 ||
      uv_tcp_getsockname(&server, (struct sockaddr *)&g_addr, &len) != 0) {
    e2e_die("listen on loopback");
  }
  uv_timer_t timer;
  uv_timer_init(g_loop, &timer);
  uv_timer_start(&timer, on_timeout, 2500, 0);
  pthread_t thread;
  if (pthread_create(&thread, NULL, clients, NULL) != 0) e2e_die("pthread_create");
  uv_run(g_loop, UV_RUN_DEFAULT); /* E2E:loop */
  pthread_join(thread, NULL);
  e2e_write_file_atomic(argv[1], "done\n");
  return 0;
}
