/* E2E test program with bad close() calls: bad_close.
 *
 * Usage: bad_close PORT_FILE double|reuse|sweep
 * (No network: PORT_FILE only receives one line describing what was done,
 * e.g. "mode=reuse fd=5 pid=1234\n", written atomically at the end.)
 *
 *   double  first the harmless EBADFs a shell makes (harmless_ebadf): a pipe
 *           whose ends are closed twice (E2E:pipe_close_again) and a number
 *           that was never open (E2E:never_open_close); none of them is a
 *           bad close, since no socket was ever on those numbers. Then
 *           socket(), close() it (E2E:double_first_close), and close() the
 *           same number again (E2E:double_bad_close): that close fails with
 *           EBADF. Nothing is opened in between.
 *   reuse   thread A creates socket X (fd N) and closes N
 *           (E2E:reuse_first_close); thread B then creates socket Y
 *           (E2E:victim), which gets the same number N (checked: otherwise
 *           the program says so and exits 1); then thread A closes N again
 *           (E2E:reuse_bad_close), which succeeds and closes B's socket Y.
 *           B checks that Y is gone (fcntl F_GETFD fails with EBADF) and does
 *           not close it itself. The threads take turns through a mutex and a
 *           condition variable, so the order is deterministic.
 *   sweep   close_all_fds() closes fds 3..1023 from one loop, as daemons do at
 *           start-up (most fail with EBADF), then a normal socket()/close().
 *           Nothing here is a bad close.
 *
 * Exits 0 when everything happened as described, 1 otherwise.
 */
#include "client.h"

#include <fcntl.h>
#include <pthread.h>

static void write_info(const char *port_file, const char *mode, int fd) {
  char buf[128];
  snprintf(buf, sizeof buf, "mode=%s fd=%d pid=%ld\n", mode, fd,
           (long)getpid());
  e2e_write_file_atomic(port_file, buf);
}

/* ---- double ------------------------------------------------------------ */

/* Closes that fail with EBADF on numbers that never held a socket, as bash
 * makes in every pipeline. */
E2E_NOINLINE void harmless_ebadf(void) {
  int p[2];
  if (pipe(p) != 0) e2e_die("pipe");
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 2; i++) {
      int rc = close(p[i]); /* E2E:pipe_close_again */
      if (round == 0 && rc != 0) e2e_die("close pipe end %d", p[i]);
      if (round == 1 && (rc == 0 || errno != EBADF))
        e2e_die("closing pipe end %d again: expected EBADF", p[i]);
    }
  }
  int never = 900;
  if (fcntl(never, F_GETFD) != -1) e2e_die("fd %d is open", never);
  if (close(never) == 0 || errno != EBADF) /* E2E:never_open_close */
    e2e_die("close of never-open fd %d: expected EBADF", never);
}

E2E_NOINLINE int double_close(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0); /* E2E:double_socket */
  if (fd < 0) e2e_die("socket");
  if (close(fd) != 0) e2e_die("first close"); /* E2E:double_first_close */
  int rc = close(fd); /* E2E:double_bad_close */
  if (rc == 0) {
    errno = 0;
    e2e_die("second close of fd %d succeeded, expected EBADF", fd);
  }
  if (errno != EBADF) e2e_die("second close of fd %d: expected EBADF", fd);
  return fd;
}

/* ---- reuse ------------------------------------------------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_step;          /* 0 -> 1 (A closed X) -> 2 (B made Y) -> 3 */
static int g_n = -1;        /* the fd number of X */

static void lock(void) {
  int rc = pthread_mutex_lock(&g_mu);
  if (rc != 0) { errno = rc; e2e_die("pthread_mutex_lock"); }
}

static void unlock(void) {
  int rc = pthread_mutex_unlock(&g_mu);
  if (rc != 0) { errno = rc; e2e_die("pthread_mutex_unlock"); }
}

/* Called locked: set the step and wake the other thread. */
static void set_step(int step) {
  g_step = step;
  int rc = pthread_cond_broadcast(&g_cv);
  if (rc != 0) { errno = rc; e2e_die("pthread_cond_broadcast"); }
}

/* Called locked: wait until g_step == step. */
static void wait_step(int step) {
  while (g_step != step) {
    int rc = pthread_cond_wait(&g_cv, &g_mu);
    if (rc != 0) { errno = rc; e2e_die("pthread_cond_wait"); }
  }
}

E2E_NOINLINE void *thread_a(void *arg) {
  (void)arg;
  lock();
  int x = socket(AF_INET, SOCK_STREAM, 0); /* E2E:reuse_socket */
  if (x < 0) e2e_die("socket X");
  g_n = x;
  if (close(x) != 0) e2e_die("close X"); /* E2E:reuse_first_close */
  set_step(1);
  wait_step(2);
  /* BUG (deliberate): a stale close of a number that is now B's socket. */
  if (close(g_n) != 0) e2e_die("second close of fd %d", g_n); /* E2E:reuse_bad_close */
  set_step(3);
  unlock();
  return NULL;
}

E2E_NOINLINE void *thread_b(void *arg) {
  (void)arg;
  lock();
  wait_step(1);
  int y = socket(AF_INET, SOCK_STREAM, 0); /* E2E:victim */
  if (y < 0) e2e_die("socket Y");
  if (y != g_n) {
    fprintf(stderr, "bad_close: socket Y got fd %d, not X's number %d; "
            "cannot stage the reuse\n", y, g_n);
    exit(1);
  }
  set_step(2);
  wait_step(3);
  errno = 0;
  if (fcntl(y, F_GETFD) != -1 || errno != EBADF) {
    fprintf(stderr, "bad_close: fd %d is still open after thread A's stale "
            "close\n", y);
    exit(1);
  }
  unlock();
  return NULL;
}

E2E_NOINLINE int reuse_close(void) {
  pthread_t a, b;
  int rc = pthread_create(&b, NULL, thread_b, NULL);
  if (rc != 0) { errno = rc; e2e_die("pthread_create B"); }
  rc = pthread_create(&a, NULL, thread_a, NULL);
  if (rc != 0) { errno = rc; e2e_die("pthread_create A"); }
  rc = pthread_join(a, NULL);
  if (rc != 0) { errno = rc; e2e_die("pthread_join A"); }
  rc = pthread_join(b, NULL);
  if (rc != 0) { errno = rc; e2e_die("pthread_join B"); }
  return g_n;
}

/* ---- sweep ------------------------------------------------------------- */

E2E_NOINLINE int close_all_fds(void) {
  int closed = 0;
  for (int fd = 3; fd < 1024; fd++) {
    if (close(fd) == 0) { /* E2E:sweep_close */
      closed++;
    } else if (errno != EBADF) {
      e2e_die("close(%d) during the sweep", fd);
    }
  }
  return closed;
}

E2E_NOINLINE int normal_socket(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0); /* E2E:sweep_socket */
  if (fd < 0) e2e_die("socket");
  if (close(fd) != 0) e2e_die("close"); /* E2E:sweep_normal_close */
  return fd;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s PORT_FILE double|reuse|sweep\n",
            argc > 0 ? argv[0] : "bad_close");
    return 2;
  }
  const char *mode = argv[2];
  int fd;
  if (strcmp(mode, "double") == 0) {
    harmless_ebadf();
    fd = double_close();
  } else if (strcmp(mode, "reuse") == 0) {
    fd = reuse_close();
  } else if (strcmp(mode, "sweep") == 0) {
    int closed = close_all_fds();
    if (closed != 0)
      fprintf(stderr, "bad_close: the sweep closed %d inherited fds\n", closed);
    fd = normal_socket();
  } else {
    fprintf(stderr, "bad_close: unknown mode '%s'\n", mode);
    return 2;
  }
  write_info(argv[1], mode, fd);
  return 0;
}
