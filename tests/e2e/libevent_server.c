/* E2E test program: a libevent server with the two classic bufferevent bugs.
 *
 * Usage: libevent_server DONE_FILE bad|good
 *
 * Two listeners, each watched with event_new(); every accepted connection
 * becomes a bufferevent whose read callback drains what arrives and whose
 * event callback gets BEV_EVENT_EOF when the peer closes. The program is its
 * own client: it connects 3 times to listener A and 2 times to listener B,
 * sends a line on each and closes.
 *
 *   bad:  A's event callback ignores the EOF and never frees the
 *         bufferevent (E2E:handler_a); B frees it (E2E:freed_b), but B's
 *         bufferevents were made without BEV_OPT_CLOSE_ON_FREE
 *         (E2E:bev_new_b), so freeing one leaves its socket open. Both leak
 *         every connection in CLOSE_WAIT, and the EOF is read by the same
 *         code inside libevent in both: only the handlers tell them apart.
 *   good: both listeners make their bufferevents with BEV_OPT_CLOSE_ON_FREE
 *         and free them on BEV_EVENT_EOF.
 *
 * After 2.5 s (past the driver's 1 s grace period) the loop ends, DONE_FILE
 * gets "done\n" and the program exits 0.
 */
#include "client.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

static int g_good;

/* The bad mode leaks bufferevents on purpose, and neither mode tears the
 * event base down before it exits: LeakSanitizer (in the sanitizer builds)
 * must not turn that into a failed run. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

static void on_read(struct bufferevent *bev, void *arg) {
  (void)arg;
  evbuffer_drain(bufferevent_get_input(bev), 1 << 20);
}

static void on_event_keep(struct bufferevent *bev, short what, void *arg) { /* E2E:handler_a */
  (void)bev;
  (void)arg;
  if (what & BEV_EVENT_EOF) {
    /* The bug: nothing here frees the bufferevent or closes its socket. */
  }
}

static void on_event_free(struct bufferevent *bev, short what, void *arg) { /* E2E:handler_b */
  (void)arg;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    bufferevent_free(bev); /* E2E:freed_b */
  }
}

struct listener {
  struct event_base *base;
  int fd;
  int which; /* 'a' or 'b' */
};

E2E_NOINLINE static void start_connection(struct listener *l, int fd) {
  int options = g_good ? BEV_OPT_CLOSE_ON_FREE : 0;
  struct bufferevent *bev;
  if (l->which == 'a') {
    bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_event_cb cb = g_good ? on_event_free : on_event_keep;
    bufferevent_setcb(bev, on_read, NULL, cb, NULL); /* E2E:setcb_a */
  } else {
    bev = bufferevent_socket_new(l->base, fd, options); /* E2E:bev_new_b */
    bufferevent_setcb(bev, on_read, NULL, on_event_free, NULL); /* E2E:setcb_b */
  }
  if (bev == NULL) e2e_die("bufferevent_socket_new");
  bufferevent_enable(bev, EV_READ);
}

static void on_accept(int fd, short what, void *arg) {
  (void)what;
  struct listener *l = arg;
  int conn = accept(fd, NULL, NULL); /* E2E:accept */
  if (conn < 0) return;
  evutil_make_socket_nonblocking(conn);
  start_connection(l, conn);
}

static void on_timeout(int fd, short what, void *arg) {
  (void)fd;
  (void)what;
  event_base_loopexit(arg, NULL);
}

static int listen_loopback(struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) e2e_die("socket");
  *addr = e2e_loopback_addr(0);
  socklen_t len = sizeof *addr;
  if (bind(fd, (struct sockaddr *)addr, sizeof *addr) != 0 ||
      listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *)addr, &len) != 0) {
    e2e_die("listen on loopback");
  }
  evutil_make_socket_nonblocking(fd);
  return fd;
}

/* A client that sends a line and hangs up; the server reads both later. */
static void hang_up_after_hello(const struct sockaddr_in *addr) {
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (c < 0 || connect(c, (const struct sockaddr *)addr, sizeof *addr) != 0) {
    e2e_die("connect");
  }
  if (write(c, "hello\n", 6) != 6) e2e_die("write");
  close(c);
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[2], "bad") != 0 && strcmp(argv[2], "good") != 0)) {
    fprintf(stderr, "usage: libevent_server DONE_FILE bad|good\n");
    return 2;
  }
  g_good = strcmp(argv[2], "good") == 0;
  struct event_base *base = event_base_new();
  if (base == NULL) e2e_die("event_base_new");
  struct sockaddr_in addr_a, addr_b;
  struct listener a = {base, listen_loopback(&addr_a), 'a'};
  struct listener b = {base, listen_loopback(&addr_b), 'b'};
  struct event *ea = event_new(base, a.fd, EV_READ | EV_PERSIST, on_accept, &a);
  struct event *eb = event_new(base, b.fd, EV_READ | EV_PERSIST, on_accept, &b);
  event_add(ea, NULL);
  event_add(eb, NULL);
  for (int i = 0; i < 3; ++i) hang_up_after_hello(&addr_a);
  for (int i = 0; i < 2; ++i) hang_up_after_hello(&addr_b);
  struct event *timer = evtimer_new(base, on_timeout, base);
  struct timeval wait = {2, 500000};
  evtimer_add(timer, &wait);
  event_base_dispatch(base); /* E2E:loop */
  e2e_write_file_atomic(argv[1], "done\n");
  return 0;
}
