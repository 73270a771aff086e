/* "Never break the host": one program, many hostile workloads.
 *
 * Usage: torture SUBCOMMAND [ARGS...]
 *
 *   threads16 [N]            16 threads, each with its own loopback listener,
 *                            N (200) rounds of socket/connect/accept/dup/dup2/
 *                            send/recv/close
 *   signals MODE [M]         MODE = restart | norestart | closerace; a 100 us
 *                            SIGALRM whose handler makes and closes sockets,
 *                            reads, makes pipes, while the main loop does M
 *                            (3000) rounds of socket/recv/close
 *   fork_mt [K]              K (50) forks while 8 threads make and close
 *                            sockets; each child does socket()/close()/exit(0)
 *   fork_storm [C]           C (200) children, each a socketpair or a TCP
 *                            connection to the parent's listener
 *   exec_chain LEVEL [FD]    execs itself down to level 0, passing a
 *                            connected TCP socket without CLOEXEC
 *   closeall_loop | closeall_range | closeall_from
 *                            close every fd from 3 (close() up to the soft
 *                            RLIMIT_NOFILE, close_range(3, ~0U, 0) or
 *                            closefrom(3)), then check fd numbers
 *   dup2_onto_all            dup2() a socket onto every fd 3..63, then close it
 *   dup2_high                dup2() a connected socket onto the fd numbers a
 *                            preloaded library would park its own fds at
 *                            (1024.., or half the fd limit), then make sockets,
 *                            fork, and check that nobody touched it
 *   emfile32                 RLIMIT_NOFILE 32, open sockets until EMFILE
 *   sigkill_after_leak [N]   N (50) loopback connections from an internal
 *                            client, read to EOF, never closed, then SIGKILL
 *
 * Every subcommand prints a transcript to stdout that depends only on its
 * arguments (fd numbers, return values, errno names, totals): the same with
 * and without LD_PRELOAD=libcloseaudit.so, which is what tests/torture/
 * torture.py checks. Numbers that depend on timing (signals delivered, EINTR
 * seen, sockets made by busy threads) go to stderr as one line
 * "torture-stats: key=value ...". Exit status 0 on success; on any unexpected
 * result a message on stderr and exit status 1. sigkill_after_leak ends by
 * SIGKILL (status 128 + 9).
 *
 * Optional rendezvous for threads16, used by torture.py to stop or kill the
 * collector at a known point (the transcript does not change):
 *   TORTURE_READY=PATH  write our pid to PATH once main() runs
 *   TORTURE_GO=PATH     then wait until PATH exists before starting
 *   TORTURE_PAUSE=PATH  every thread stops halfway through its rounds; once
 *                       all are there PATH.reached appears, and they go on
 *                       when PATH exists
 * Each wait gives up (exit 1) after 60 s.
 *
 * All output goes through write(2): no stdio buffers to duplicate on fork or
 * lose on exec and SIGKILL.
 */
#define _GNU_SOURCE 1

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <spawn.h>
#include <unistd.h>

extern char **environ;

extern char **environ;

/* ------------------------------------------------------------------------ */
/* Output */

static const char *ename(int e) {
  switch (e) {
    case 0: return "0";
    case EAGAIN: return "EAGAIN";
    case EBADF: return "EBADF";
    case EINTR: return "EINTR";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENOTCONN: return "ENOTCONN";
    case ENOTSOCK: return "ENOTSOCK";
    case EFAULT: return "EFAULT";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EINPROGRESS: return "EINPROGRESS";
    case ENOMEM: return "ENOMEM";
    case ENOSYS: return "ENOSYS";
    case EPERM: return "EPERM";
    default: return "E?";
  }
}

static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      _exit(3);
    }
    buf += n;
    len -= (size_t)n;
  }
}

static void vemit(int fd, const char *prefix, const char *fmt, va_list ap) {
  char buf[4096];
  size_t off = 0;
  if (prefix) {
    size_t p = strlen(prefix);
    memcpy(buf, prefix, p);
    off = p;
  }
  int n = vsnprintf(buf + off, sizeof buf - off - 1, fmt, ap);
  if (n < 0) n = 0;
  off += (size_t)n < sizeof buf - off - 1 ? (size_t)n : sizeof buf - off - 2;
  buf[off++] = '\n';
  write_all(fd, buf, off);
}

/* One transcript line on stdout. */
static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vemit(1, NULL, fmt, ap);
  va_end(ap);
}

/* Timing-dependent numbers: stderr, not part of the transcript. */
static void stats(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void stats(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vemit(2, "torture-stats: ", fmt, ap);
  va_end(ap);
}

/* "torture: <message>: <errno name>" on stderr, exit 1. */
static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  int saved = errno;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char line[2300];
  int n = saved == 0
              ? snprintf(line, sizeof line, "torture: FAILED: %s\n", msg)
              : snprintf(line, sizeof line, "torture: FAILED: %s (errno %s %s)\n",
                         msg, ename(saved), strerror(saved));
  if (n > 0) write_all(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
  exit(1);
}

static long arg_long(int argc, char **argv, int i, long dflt, long lo, long hi) {
  if (argc <= i) return dflt;
  char *end = NULL;
  errno = 0;
  long v = strtol(argv[i], &end, 10);
  if (errno != 0 || end == argv[i] || *end != '\0' || v < lo || v > hi) {
    errno = 0;
    die("bad numeric argument %s (want %ld..%ld)", argv[i], lo, hi);
  }
  return v;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ------------------------------------------------------------------------ */
/* Sockets */

static int tcp_listener(struct sockaddr_in *addr, int backlog) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket (listener)");
  memset(addr, 0, sizeof *addr);
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)addr, sizeof *addr) != 0) die("bind");
  if (listen(fd, backlog) != 0) die("listen");
  socklen_t len = sizeof *addr;
  if (getsockname(fd, (struct sockaddr *)addr, &len) != 0) die("getsockname");
  return fd;
}

static void tcp_connect(int fd, const struct sockaddr_in *addr) {
  int rc;
  do {
    rc = connect(fd, (const struct sockaddr *)addr, sizeof *addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) die("connect fd %d", fd);
}

static int accept_retry(int lfd, int flags) {
  int fd;
  do {
    fd = accept4(lfd, NULL, NULL, flags);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

static void send_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("send fd %d", fd);
    }
    p += n;
    len -= (size_t)n;
  }
}

/* Reads fd until EOF into buf (at most cap bytes). Returns the byte count. */
static size_t read_to_eof(int fd, char *buf, size_t cap) {
  size_t got = 0;
  for (;;) {
    char tmp[256];
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n == 0) return got;
    if (n < 0) {
      if (errno == EINTR) continue;
      die("recv fd %d", fd);
    }
    if (got + (size_t)n > cap) {
      errno = 0;
      die("recv fd %d: more than %zu bytes", fd, cap);
    }
    memcpy(buf + got, tmp, (size_t)n);
    got += (size_t)n;
  }
}

static int is_socket(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static ino_t inode_of(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return 0;
  return st.st_ino;
}

static void xclose(int fd, const char *what) {
  if (close(fd) != 0) die("close %s (fd %d)", what, fd);
}

/* Bounded wait for one child: 0 = its raw status is in *status. A child that
 * does not exit within limit_ms is killed and reported (a deadlock). */
static void wait_child(pid_t pid, int *status, long limit_ms, const char *what) {
  for (long waited = 0;; waited++) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return;
    if (r < 0 && errno != EINTR) die("waitpid %s %d", what, (int)pid);
    if (waited >= limit_ms) {
      kill(pid, SIGKILL);
      waitpid(pid, status, 0);
      errno = 0;
      die("%s pid %d did not exit within %ld ms (deadlock?)", what, (int)pid,
          limit_ms);
    }
    sleep_ms(1);
  }
}

/* ------------------------------------------------------------------------ */
/* Rendezvous files (see the top of this file) */

static void gate_touch(const char *path, const char *content) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die("open %s", tmp);
  write_all(fd, content, strlen(content));
  xclose(fd, "gate file");
  if (rename(tmp, path) != 0) die("rename %s", tmp);
}

static void gate_wait(const char *path) {
  for (long waited = 0; access(path, F_OK) != 0; waited += 5) {
    if (waited > 60000) {
      errno = 0;
      die("gave up waiting for %s", path);
    }
    sleep_ms(5);
  }
}

/* ------------------------------------------------------------------------ */
/* threads16 */

#define T16_THREADS 16

static long g_t16_iter = 200;
static const char *g_t16_pause = NULL;
static atomic_int g_t16_halfway;
static atomic_long g_t16_sockets, g_t16_accepts, g_t16_dups, g_t16_dup2s,
    g_t16_closes, g_t16_eofs;

static void *t16_worker(void *arg) {
  long id = (long)(intptr_t)arg;
  struct sockaddr_in addr;
  int lfd = tcp_listener(&addr, 16);
  long sockets = 1, accepts = 0, dups = 0, dup2s = 0, closes = 0, eofs = 0;
  for (long i = 0; i < g_t16_iter; i++) {
    if (g_t16_pause && i == g_t16_iter / 2) {
      /* Every thread stops halfway; the last to arrive says so. */
      if (atomic_fetch_add(&g_t16_halfway, 1) == T16_THREADS - 1) {
        char reached[4200];
        snprintf(reached, sizeof reached, "%s.reached", g_t16_pause);
        gate_touch(reached, "halfway\n");
      }
      gate_wait(g_t16_pause);
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0) die("thread %ld round %ld: socket (client)", id, i);
    sockets++;
    tcp_connect(c, &addr);
    int a = accept_retry(lfd, 0);
    if (a < 0) die("thread %ld round %ld: accept", id, i);
    accepts++;
    int d = dup(a);
    if (d < 0) die("thread %ld round %ld: dup", id, i);
    dups++;
    int x = socket(AF_INET, SOCK_STREAM, 0);
    if (x < 0) die("thread %ld round %ld: socket (extra)", id, i);
    sockets++;
    if (dup2(d, x) != x) die("thread %ld round %ld: dup2", id, i);
    dup2s++;
    char ch = (char)('a' + id);
    send_all(c, &ch, 1);
    char in = 0;
    ssize_t n;
    do {
      n = recv(a, &in, 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n != 1 || in != ch) die("thread %ld round %ld: recv gave %zd", id, i, n);
    xclose(c, "client");
    closes++;
    char buf[16];
    if (read_to_eof(x, buf, sizeof buf) != 0) {
      errno = 0;
      die("thread %ld round %ld: data after the byte", id, i);
    }
    eofs++;
    xclose(a, "accepted");
    xclose(d, "dup");
    xclose(x, "dup2 target");
    closes += 3;
  }
  xclose(lfd, "listener");
  closes++;
  atomic_fetch_add(&g_t16_sockets, sockets);
  atomic_fetch_add(&g_t16_accepts, accepts);
  atomic_fetch_add(&g_t16_dups, dups);
  atomic_fetch_add(&g_t16_dup2s, dup2s);
  atomic_fetch_add(&g_t16_closes, closes);
  atomic_fetch_add(&g_t16_eofs, eofs);
  return NULL;
}

static int cmd_threads16(int argc, char **argv) {
  g_t16_iter = arg_long(argc, argv, 2, 200, 1, 10000000);
  const char *ready = getenv("TORTURE_READY");
  const char *go = getenv("TORTURE_GO");
  g_t16_pause = getenv("TORTURE_PAUSE");
  if (ready && *ready) {
    char pid[32];
    snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    gate_touch(ready, pid);
  }
  if (go && *go) gate_wait(go);

  pthread_t th[T16_THREADS];
  for (long t = 0; t < T16_THREADS; t++) {
    int rc = pthread_create(&th[t], NULL, t16_worker, (void *)(intptr_t)t);
    if (rc != 0) {
      errno = rc;
      die("pthread_create");
    }
  }
  for (long t = 0; t < T16_THREADS; t++) {
    int rc = pthread_join(th[t], NULL);
    if (rc != 0) {
      errno = rc;
      die("pthread_join");
    }
  }
  /* No fd may be left behind: the lowest free fd is 3 again. */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) die("final socket");
  out("threads16 threads=%d rounds=%ld final_socket_fd=%d", T16_THREADS,
      g_t16_iter, s);
  xclose(s, "final socket");
  long sockets = atomic_load(&g_t16_sockets) + 1;
  long accepts = atomic_load(&g_t16_accepts);
  long dups = atomic_load(&g_t16_dups);
  long dup2s = atomic_load(&g_t16_dup2s);
  long closes = atomic_load(&g_t16_closes) + 1;
  long eofs = atomic_load(&g_t16_eofs);
  out("socket_calls=%ld accept_calls=%ld dup_calls=%ld dup2_calls=%ld "
      "close_calls=%ld eofs=%ld",
      sockets, accepts, dups, dup2s, closes, eofs);
  /* Everything socket() and accept() returned, the final socket included. */
  out("sockets_created=%ld", sockets + accepts);
  /* Each of these calls is at least one event of the audit. */
  out("lifecycle_calls=%ld", sockets + accepts + dups + dup2s + closes);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* signals */

enum { SIG_RESTART, SIG_NORESTART, SIG_CLOSERACE };

static int g_sig_mode;
static int g_hp0 = -1, g_hp1 = -1, g_mp1 = -1;
static volatile sig_atomic_t g_victim = -1;
static volatile sig_atomic_t g_h_bad = 0;
static volatile sig_atomic_t g_h_bad_errno = 0;
static volatile sig_atomic_t g_h_pipe0 = -1, g_h_pipe1 = -1, g_h_free = -1;
static volatile long g_h_calls = 0, g_h_sockets = 0, g_h_full = 0,
                     g_h_victims = 0;

static void h_fail(int code) {
  if (g_h_bad == 0) {
    g_h_bad = code;
    g_h_bad_errno = errno;
  }
}

static void on_alarm(int sig) {
  (void)sig;
  int saved = errno;
  g_h_calls++;

  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) {
    h_fail(1);
  } else {
    g_h_sockets++;
    if (close(s) != 0) h_fail(2);
  }

  char b = 0;
  errno = 0;
  if (recv(g_hp0, &b, 1, 0) != -1 || errno != EAGAIN) h_fail(3);
  if (send(g_hp1, "h", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) h_fail(4);
  if (recv(g_hp0, &b, 1, 0) != 1 || b != 'h') h_fail(5);

  /* A pipe made here must get the lowest free fd numbers, like anywhere. */
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    h_fail(6);
  } else {
    if (p[1] <= p[0]) h_fail(7);
    for (int fd = 0; fd < p[1]; fd++) {
      if (fd != p[0] && fcntl(fd, F_GETFD) < 0) {
        /* A lower fd was free: the pipe is not where it belongs. */
        if (g_h_bad == 0) {
          g_h_pipe0 = p[0];
          g_h_pipe1 = p[1];
          g_h_free = fd;
        }
        h_fail(8);
        break;
      }
    }
    if (close(p[0]) != 0 || close(p[1]) != 0) h_fail(9);
  }

  if (g_sig_mode == SIG_CLOSERACE && g_victim >= 0) {
    if (close(g_victim) != 0) h_fail(10);
    g_h_victims++;
    g_victim = -1;
  }

  ssize_t n = send(g_mp1, "m", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n != 1) {
    if (n < 0 && errno == EAGAIN) {
      g_h_full++;
    } else {
      h_fail(11);
    }
  }
  errno = saved;
}

static int cmd_signals(int argc, char **argv) {
  if (argc < 3) {
    errno = 0;
    die("usage: signals restart|norestart|closerace [M]");
  }
  const char *mode = argv[2];
  if (strcmp(mode, "restart") == 0) {
    g_sig_mode = SIG_RESTART;
  } else if (strcmp(mode, "norestart") == 0) {
    g_sig_mode = SIG_NORESTART;
  } else if (strcmp(mode, "closerace") == 0) {
    g_sig_mode = SIG_CLOSERACE;
  } else {
    errno = 0;
    die("unknown signals mode %s", mode);
  }
  long m = arg_long(argc, argv, 3, 3000, 1, 10000000);

  int hp[2], mp[2], ep[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, hp) != 0) die("socketpair hp");
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, mp) != 0) die("socketpair mp");
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, ep) != 0) die("socketpair ep");
  out("socketpairs fds=%d,%d %d,%d %d,%d", hp[0], hp[1], mp[0], mp[1], ep[0],
      ep[1]);
  if (fcntl(hp[0], F_SETFL, O_NONBLOCK) != 0) die("fcntl hp0");
  if (fcntl(ep[0], F_SETFL, O_NONBLOCK) != 0) die("fcntl ep0");
  g_hp0 = hp[0];
  g_hp1 = hp[1];
  g_mp1 = mp[1];

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = g_sig_mode == SIG_RESTART ? SA_RESTART : 0;
  if (sigaction(SIGALRM, &sa, NULL) != 0) die("sigaction");
  struct itimerval it = {{0, 100}, {0, 100}};
  if (setitimer(ITIMER_REAL, &it, NULL) != 0) die("setitimer");

  long eintr = 0, eagain = 0, data = 0, closed_ok = 0, closed_ebadf = 0,
       extra_bytes = 0;
  for (long i = 0; i < m; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("round %ld: socket", i);
    if (g_sig_mode == SIG_CLOSERACE) g_victim = s;

    char b;
    errno = 0;
    ssize_t n = recv(ep[0], &b, 1, 0);
    if (n != -1 || errno != EAGAIN) die("round %ld: empty recv gave %zd", i, n);
    eagain++;

    /* Only the handler writes to mp: this blocks until a signal lands. */
    for (;;) {
      n = recv(mp[0], &b, 1, 0);
      if (n < 0 && errno == EINTR) {
        eintr++;
        if (g_sig_mode == SIG_RESTART) die("round %ld: EINTR under SA_RESTART", i);
        continue;
      }
      if (n != 1 || b != 'm') die("round %ld: recv gave %zd", i, n);
      if (g_sig_mode == SIG_CLOSERACE && g_victim >= 0) {
        extra_bytes++;  /* a byte of an earlier signal: wait for the close */
        continue;
      }
      break;
    }
    data++;

    int rc = close(s);
    if (g_sig_mode == SIG_CLOSERACE) {
      if (rc != -1 || errno != EBADF) die("round %ld: close after the handler closed it gave %d", i, rc);
      closed_ebadf++;
    } else {
      if (rc != 0) die("round %ld: close", i);
      closed_ok++;
    }
  }

  struct itimerval off;
  memset(&off, 0, sizeof off);
  if (setitimer(ITIMER_REAL, &off, NULL) != 0) die("setitimer off");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGALRM);
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) die("sigprocmask");
  if (g_h_bad == 8) {
    errno = 0;
    die("in the SIGALRM handler, pipe2() returned fds %d,%d although fd %d "
        "was free (the lowest free fds must be used)",
        (int)g_h_pipe0, (int)g_h_pipe1, (int)g_h_free);
  }
  if (g_h_bad != 0) {
    static const char *what[] = {
        "", "socket() failed", "close() of its socket failed",
        "recv() on the empty nonblocking end did not fail with EAGAIN",
        "send() of 1 byte failed", "recv() did not return the byte",
        "pipe2() failed", "pipe2() fds out of order", "",
        "close() of the pipe failed", "close() of the victim failed",
        "send() to the main loop failed"};
    errno = g_h_bad_errno;
    die("in the SIGALRM handler: check %d: %s", (int)g_h_bad,
        g_h_bad >= 1 && g_h_bad <= 11 ? what[g_h_bad] : "?");
  }
  if (g_sig_mode == SIG_CLOSERACE && g_h_victims != m) {
    errno = 0;
    die("handler closed %ld victims, expected %ld", (long)g_h_victims, m);
  }
  /* The handler ran at least once per byte the main loop consumed. */
  if (g_h_calls < m) {
    errno = 0;
    die("handler ran %ld times for %ld rounds", (long)g_h_calls, m);
  }
  for (int i = 0; i < 2; i++) {
    xclose(hp[i], "hp");
    xclose(mp[i], "mp");
    xclose(ep[i], "ep");
  }
  out("signals mode=%s rounds=%ld", mode, m);
  out("recv_eagain=%ld recv_data=%ld close_ok=%ld close_ebadf=%ld", eagain,
      data, closed_ok, closed_ebadf);
  out("handler_errors=0");
  int s = socket(AF_INET, SOCK_STREAM, 0);
  out("final socket fd=%d", s);
  if (s < 0) die("final socket");
  xclose(s, "final socket");
  /* Sockets: 3 pairs, one per round, one per handler call, the final one. */
  stats("handler_calls=%ld handler_sockets=%ld eintr=%ld mp_full=%ld "
        "extra_bytes=%ld sockets_total=%ld",
        (long)g_h_calls, (long)g_h_sockets, eintr, (long)g_h_full, extra_bytes,
        6 + m + (long)g_h_sockets + 1);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* fork_mt */

#define FMT_THREADS 8
static atomic_int g_fmt_stop;
static atomic_long g_fmt_sockets;

static void *fmt_worker(void *arg) {
  (void)arg;
  long n = 0;
  while (!atomic_load(&g_fmt_stop)) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("busy thread: socket");
    n++;
    if (close(s) != 0) die("busy thread: close");
  }
  atomic_fetch_add(&g_fmt_sockets, n);
  return NULL;
}

static int cmd_fork_mt(int argc, char **argv) {
  long k = arg_long(argc, argv, 2, 50, 1, 100000);
  pthread_t th[FMT_THREADS];
  for (int t = 0; t < FMT_THREADS; t++) {
    int rc = pthread_create(&th[t], NULL, fmt_worker, NULL);
    if (rc != 0) {
      errno = rc;
      die("pthread_create");
    }
  }
  long ok = 0;
  for (long i = 0; i < k; i++) {
    pid_t pid = fork();
    if (pid < 0) die("fork %ld", i);
    if (pid == 0) {
      int s = socket(AF_INET, SOCK_STREAM, 0);
      if (s < 0) _exit(2);
      if (close(s) != 0) _exit(3);
      exit(0);
    }
    int status;
    wait_child(pid, &status, 30000, "fork_mt child");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      errno = 0;
      die("child %ld: status 0x%x", i, status);
    }
    ok++;
  }
  atomic_store(&g_fmt_stop, 1);
  for (int t = 0; t < FMT_THREADS; t++) {
    int rc = pthread_join(th[t], NULL);
    if (rc != 0) {
      errno = rc;
      die("pthread_join");
    }
  }
  out("fork_mt threads=%d forks=%ld children_ok=%ld", FMT_THREADS, k, ok);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  out("final socket fd=%d", s);
  if (s < 0) die("final socket");
  xclose(s, "final socket");
  stats("thread_sockets=%ld sockets_total=%ld", atomic_load(&g_fmt_sockets),
        atomic_load(&g_fmt_sockets) + k + 1);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* fork_storm */

static int cmd_fork_storm(int argc, char **argv) {
  long nchildren = arg_long(argc, argv, 2, 200, 2, 100000);
  long ntcp = nchildren / 2;
  struct sockaddr_in addr;
  /* Every TCP child connects before the parent accepts: the backlog holds
   * them all (the kernel caps it at somaxconn, 4096 by default). */
  int lfd = tcp_listener(&addr, (int)ntcp + 16);
  out("listener fd=%d", lfd);
  pid_t *pids = calloc((size_t)nchildren, sizeof *pids);
  if (!pids) die("calloc");
  for (long i = 0; i < nchildren; i++) {
    pid_t pid = fork();
    if (pid < 0) die("fork %ld", i);
    if (pid == 0) {
      if (i % 2 == 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) _exit(10);
        if (send(sv[0], "p", 1, MSG_NOSIGNAL) != 1) _exit(11);
        char b;
        if (recv(sv[1], &b, 1, 0) != 1 || b != 'p') _exit(12);
        if (close(sv[0]) != 0 || close(sv[1]) != 0) _exit(13);
      } else {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0) _exit(20);
        int rc;
        do {
          rc = connect(c, (struct sockaddr *)&addr, sizeof addr);
        } while (rc != 0 && errno == EINTR);
        if (rc != 0) _exit(21);
        if (send(c, "t", 1, MSG_NOSIGNAL) != 1) _exit(22);
        if (close(c) != 0) _exit(23);
      }
      exit(0);
    }
    pids[i] = pid;
  }
  long accepted = 0, bytes = 0;
  for (long i = 0; i < ntcp; i++) {
    int a = accept_retry(lfd, SOCK_CLOEXEC);
    if (a < 0) die("accept %ld", i);
    accepted++;
    char buf[8];
    size_t n = read_to_eof(a, buf, sizeof buf);
    if (n != 1 || buf[0] != 't') {
      errno = 0;
      die("connection %ld: %zu bytes", i, n);
    }
    bytes += (long)n;
    xclose(a, "accepted");
  }
  long ok = 0;
  for (long i = 0; i < nchildren; i++) {
    int status;
    wait_child(pids[i], &status, 60000, "fork_storm child");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      errno = 0;
      die("child %ld: status 0x%x", i, status);
    }
    ok++;
  }
  free(pids);
  xclose(lfd, "listener");
  out("children=%ld", ok);
  out("tcp_accepted=%ld bytes=%ld socketpairs=%ld", accepted, bytes,
      nchildren - ntcp);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  out("final socket fd=%d", s);
  if (s < 0) die("final socket");
  xclose(s, "final socket");
  return 0;
}

/* ------------------------------------------------------------------------ */
/* exec_chain */

static int cmd_exec_chain(int argc, char **argv) {
  long level = arg_long(argc, argv, 2, 3, 0, 100);
  int fd;
  if (argc <= 3) {
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr, 4); /* CLOEXEC: gone at the first exec */
    fd = socket(AF_INET, SOCK_STREAM, 0); /* no CLOEXEC: passed down */
    if (fd < 0) die("socket");
    tcp_connect(fd, &addr);
    int a = accept_retry(lfd, SOCK_CLOEXEC);
    if (a < 0) die("accept");
    send_all(a, "chain", 5);
    out("level %ld start listener=%d client=%d accepted=%d", level, lfd, fd, a);
  } else {
    fd = (int)arg_long(argc, argv, 3, -1, 0, INT_MAX);
  }

  int flags = fcntl(fd, F_GETFD);
  int type = 0;
  socklen_t len = sizeof type;
  struct sockaddr_in peer;
  socklen_t plen = sizeof peer;
  int sock_ok = is_socket(fd) &&
                getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
                type == SOCK_STREAM &&
                getpeername(fd, (struct sockaddr *)&peer, &plen) == 0;
  out("level %ld fd=%d socket=%s cloexec=%s", level, fd, sock_ok ? "yes" : "no",
      flags < 0 ? "EBADF" : (flags & FD_CLOEXEC) ? "yes" : "no");
  if (!sock_ok) die("level %ld: fd %d is not the connected socket", level, fd);

  if (level == 0) {
    char buf[64];
    size_t n = read_to_eof(fd, buf, sizeof buf - 1);
    buf[n] = '\0';
    int rc = close(fd);
    out("chain done data=%s eof=yes close=%d", buf, rc);
    if (strcmp(buf, "chain") != 0 || rc != 0) {
      errno = 0;
      die("level 0: got %s", buf);
    }
    return 0;
  }

  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) die("readlink /proc/self/exe");
  self[n] = '\0';
  char next_level[24], fd_arg[24];
  snprintf(next_level, sizeof next_level, "%ld", level - 1);
  snprintf(fd_arg, sizeof fd_arg, "%d", fd);
  char *nargv[] = {argv[0], (char *)"exec_chain", next_level, fd_arg, NULL};
  switch (level % 3) {
    case 0:
      execv(self, nargv);
      die("execv %s", self);
    case 1:
      execvp(self, nargv);
      die("execvp %s", self);
    default:
      execve("/proc/self/exe", nargv, environ);
      die("execve /proc/self/exe");
  }
}

/* ------------------------------------------------------------------------ */
/* closeall_* */

static int cmd_closeall(const char *how) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
  long closed = 0;
  if (strcmp(how, "loop") == 0) {
    rlim_t top = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : rl.rlim_cur;
    for (rlim_t fd = 3; fd < top; fd++) {
      if (close((int)fd) == 0) closed++;
    }
    out("closeall loop done");
  } else if (strcmp(how, "range") == 0) {
    int rc = close_range(3, ~0U, 0);
    out("close_range=%d errno=%s", rc, rc == 0 ? "0" : ename(errno));
    if (rc != 0) die("close_range");
  } else {
    closefrom(3);
    out("closefrom done");
  }
  /* Nothing may be open from 3 on now. */
  long still_open = 0;
  for (int fd = 3; fd < 4096; fd++) {
    if (fcntl(fd, F_GETFD) >= 0) still_open++;
  }
  out("open_after_close_all=%ld", still_open);

  long sockets = 0;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockets++;
  int nul = open("/dev/null", O_RDONLY);
  int p[2] = {-1, -1};
  int prc = pipe2(p, 0);
  int sv[2] = {-1, -1};
  int src = socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  sockets += 2;
  int d = dup(s);
  out("socket=%d devnull=%d pipe=%d:%d,%d socketpair=%d:%d,%d dup=%d", s, nul,
      prc, p[0], p[1], src, sv[0], sv[1], d);
  if (s != 3 || nul != 4 || p[0] != 5 || p[1] != 6 || sv[0] != 7 ||
      sv[1] != 8 || d != 9) {
    errno = 0;
    die("fd numbers after close-all are not 3..9");
  }

  /* A TCP connection after the sweep, and a fork. */
  struct sockaddr_in addr;
  int lfd = tcp_listener(&addr, 4);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  tcp_connect(c, &addr);
  int a = accept_retry(lfd, 0);
  sockets += 3;
  out("listener=%d client=%d accepted=%d", lfd, c, a);
  send_all(c, "x", 1);
  xclose(c, "client");
  char buf[8];
  size_t got = read_to_eof(a, buf, sizeof buf);
  out("read %zu bytes then EOF", got);
  xclose(a, "accepted");
  xclose(lfd, "listener");

  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    int cs = socket(AF_INET, SOCK_STREAM, 0);
    out("child socket fd=%d", cs);
    if (cs != 10) _exit(1);
    _exit(close(cs) == 0 ? 0 : 2);
  }
  sockets++;
  int status;
  wait_child(pid, &status, 30000, "closeall child");
  out("child exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));

  int r1 = close(d), r2 = close(sv[1]), r3 = close(sv[0]), r4 = close(p[1]),
      r5 = close(p[0]), r6 = close(nul), r7 = close(s);
  out("closes=%d,%d,%d,%d,%d,%d,%d", r1, r2, r3, r4, r5, r6, r7);
  int s2 = socket(AF_INET, SOCK_STREAM, 0);
  sockets++;
  out("socket again fd=%d", s2);
  xclose(s2, "socket again");
  out("sockets_created=%ld", sockets);
  if (status != 0 || r1 || r2 || r3 || r4 || r5 || r6 || r7 || s2 != 3) {
    errno = 0;
    die("unexpected result after close-all");
  }
  stats("closed_at_start=%ld", closed);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* dup2_onto_all */

static int cmd_dup2_onto_all(void) {
  int s0 = socket(AF_INET, SOCK_STREAM, 0);
  if (s0 < 0) die("socket");
  int s = fcntl(s0, F_DUPFD, 64);
  out("socket fd=%d moved to fd=%d", s0, s);
  if (s != 64) die("F_DUPFD 64");
  xclose(s0, "original");
  ino_t ino = inode_of(s);

  /* Pass 1: onto free numbers. */
  for (int fd = 3; fd < 64; fd++) {
    int r = dup2(s, fd);
    int same = inode_of(fd) == ino;
    int c = close(fd);
    out("free fd=%d dup2=%d same=%d close=%d", fd, r, same, c);
    if (r != fd || !same || c != 0) die("dup2 onto free fd %d", fd);
  }
  /* Pass 2: onto numbers that hold an open file. */
  for (int fd = 3; fd < 64; fd++) {
    int nul = open("/dev/null", O_RDONLY);
    if (nul != fd) die("open /dev/null gave %d, expected %d", nul, fd);
  }
  for (int fd = 3; fd < 64; fd++) {
    int r = dup2(s, fd);
    int same = inode_of(fd) == ino;
    out("busy fd=%d dup2=%d same=%d", fd, r, same);
    if (r != fd || !same) die("dup2 onto busy fd %d", fd);
  }
  for (int fd = 3; fd < 64; fd++) {
    if (close(fd) != 0) die("close fd %d", fd);
  }
  out("busy fds closed");
  int type = 0;
  socklen_t len = sizeof type;
  int rc = getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &len);
  out("original still a stream socket=%s", rc == 0 && type == SOCK_STREAM ? "yes" : "no");
  xclose(s, "moved socket");
  int s2 = socket(AF_INET, SOCK_STREAM, 0);
  out("socket again fd=%d", s2);
  if (s2 != 3) die("socket again");
  xclose(s2, "socket again");
  out("sockets_created=2");
  return 0;
}

/* ------------------------------------------------------------------------ */
/* dup2_high */

static int deep_socket_close(int depth) {
  if (depth > 0) return deep_socket_close(depth - 1) + 1;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) die("socket (deep)");
  xclose(s, "deep socket");
  return 0;
}

static int cmd_dup2_high(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
  /* Where a preloaded library parks its fds: 1024 up, or half a small limit. */
  long floor = rl.rlim_cur > 1024 + 16 ? 1024 : (long)rl.rlim_cur / 2;
  int targets[8];
  int nt = 0;
  for (long fd = floor - 1; fd <= floor + 5 && nt < 8; fd++) {
    if (fd > 2 && fd < (long)rl.rlim_cur) targets[nt++] = (int)fd;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  out("socketpair fds=%d,%d", sv[0], sv[1]);
  send_all(sv[1], "0123456789", 10);
  ino_t ino = inode_of(sv[0]);
  char line[512];
  size_t off = 0;
  for (int i = 0; i < nt; i++) {
    int r = dup2(sv[0], targets[i]);
    if (r != targets[i]) die("dup2 onto %d", targets[i]);
    off += (size_t)snprintf(line + off, sizeof line - off, " %d", r);
  }
  out("dup2 targets:%s", line);

  /* Work that makes a preloaded library unwind, fork and register. */
  for (int i = 0; i < 200; i++) deep_socket_close(i % 20);
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) die("pipe2");
  xclose(p[0], "pipe");
  xclose(p[1], "pipe");
  struct sockaddr_in addr;
  int lfd = tcp_listener(&addr, 4);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  tcp_connect(c, &addr);
  int a = accept_retry(lfd, 0);
  if (a < 0) die("accept");
  xclose(c, "client");
  char buf[8];
  if (read_to_eof(a, buf, sizeof buf) != 0) die("unexpected data");
  xclose(a, "accepted");
  xclose(lfd, "listener");

  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    int bad = 0;
    for (int i = 0; i < nt; i++) {
      if (fcntl(targets[i], F_GETFD) < 0 || inode_of(targets[i]) != ino) {
        out("child: fd %d is no longer our socket", targets[i]);
        bad = 1;
      }
    }
    for (int i = 0; i < 50; i++) deep_socket_close(i % 10);
    for (int i = 0; i < nt; i++) {
      if (fcntl(targets[i], F_GETFD) < 0 || inode_of(targets[i]) != ino) {
        out("child: fd %d is no longer our socket after socket calls", targets[i]);
        bad = 1;
      }
    }
    _exit(bad);
  }
  int status;
  wait_child(pid, &status, 30000, "dup2_high child");
  out("child exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));

  int intact = 1;
  for (int i = 0; i < nt; i++) {
    if (fcntl(targets[i], F_GETFD) < 0 || inode_of(targets[i]) != ino) {
      out("fd %d is no longer our socket", targets[i]);
      intact = 0;
    }
  }
  out("fds_intact=%s", intact ? "yes" : "no");
  char b;
  errno = 0;
  ssize_t n = recv(sv[1], &b, 1, MSG_DONTWAIT);
  out("peer recv=%zd errno=%s", n, n < 0 ? ename(errno) : "0");
  char data[64];
  n = recv(targets[0], data, sizeof data - 1, MSG_DONTWAIT);
  data[n > 0 ? n : 0] = '\0';
  out("our data=%s", data);
  off = 0;
  for (int i = 0; i < nt; i++) {
    int r = close(targets[i]);
    off += (size_t)snprintf(line + off, sizeof line - off, " %d", r);
  }
  out("closes:%s", line);
  xclose(sv[0], "sv0");
  xclose(sv[1], "sv1");
  /* The pair, 200 + 50 (child) deep sockets, listener, client, accepted. */
  out("sockets_created=%d", 2 + 200 + 50 + 3);
  if (status != 0 || !intact || strcmp(data, "0123456789") != 0) {
    errno = 0;
    die("someone touched our fds");
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* emfile32 */

static long open_until_emfile(int *fds, long cap, int *err) {
  long n = 0;
  for (;;) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
      *err = errno;
      return n;
    }
    if (n >= cap) die("more than %ld sockets under RLIMIT_NOFILE 32", cap);
    fds[n++] = s;
  }
}

static int cmd_emfile32(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
  rl.rlim_cur = 32;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) die("setrlimit 32");
  int fds[64];
  int err = 0;
  long n = open_until_emfile(fds, 64, &err);
  out("opened=%ld first=%d last=%d errno=%s", n, n ? fds[0] : -1,
      n ? fds[n - 1] : -1, ename(err));
  /* At the limit, other calls fail the same way. */
  errno = 0;
  int nul = open("/dev/null", O_RDONLY);
  out("open at limit=%d errno=%s", nul, nul < 0 ? ename(errno) : "0");
  int p[2];
  errno = 0;
  int prc = pipe2(p, 0);
  out("pipe2 at limit=%d errno=%s", prc, prc < 0 ? ename(errno) : "0");
  long closed = 0;
  for (long i = 0; i < n; i++) {
    if (close(fds[i]) == 0) closed++;
  }
  out("closed=%ld", closed);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  out("socket again fd=%d", s);
  if (s >= 0) xclose(s, "socket again");

  /* A fork child under the same limit gets the same number. */
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    int cerr = 0;
    long cn = open_until_emfile(fds, 64, &cerr);
    out("child opened=%ld first=%d last=%d errno=%s", cn, cn ? fds[0] : -1,
        cn ? fds[cn - 1] : -1, ename(cerr));
    _exit(cerr == EMFILE ? (int)cn : 100);
  }
  int status;
  wait_child(pid, &status, 30000, "emfile32 child");
  int child_n = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  out("child exit=%d", child_n);
  out("sockets_created=%ld", n + 1 + child_n);
  if (nul >= 0 || prc == 0 || s != 3 || err != EMFILE || child_n != n) {
    errno = 0;
    die("unexpected result at RLIMIT_NOFILE 32");
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* sigkill_after_leak */

static int cmd_sigkill_after_leak(int argc, char **argv) {
  long nconn = arg_long(argc, argv, 2, 50, 1, 900);
  struct sockaddr_in addr;
  int lfd = tcp_listener(&addr, 8);
  out("listener fd=%d", lfd);
  int first = -1, last = -1;
  for (long i = 0; i < nconn; i++) {
    int c = socket(AF_INET, SOCK_STREAM, 0); /* the internal client */
    if (c < 0) die("socket (client) %ld", i);
    tcp_connect(c, &addr);
    int a = accept_retry(lfd, 0);
    if (a < 0) die("accept %ld", i);
    if (first < 0) first = a;
    last = a;
    send_all(c, "hi", 2);
    xclose(c, "client"); /* the peer closes first */
    char buf[8];
    size_t n = read_to_eof(a, buf, sizeof buf);
    if (n != 2 || memcmp(buf, "hi", 2) != 0) {
      errno = 0;
      die("connection %ld: %zu bytes", i, n);
    }
    /* ...and `a` is never closed: CLOSE_WAIT until the process dies. */
  }
  out("accepted fds=%d..%d", first, last);
  out("leaked=%ld", nconn);
  raise(SIGKILL);
  return 1;
}

/* ---- vfork_exec ---------------------------------------------------------- */

/* vfork()+exec and posix_spawn with a socket open (no CLOEXEC), N times each:
 * the vfork child runs on the parent's memory until it execs, so the shim
 * must not touch anything there; both must exit 0 and the parent's socket
 * must still be its own afterwards. */
/* vfork() called with rbp holding something that is no frame pointer, as in
 * code built without them: an address 1 GiB above the stack, unmapped. The
 * child exits at once; the parent gets the pid. */
pid_t vfork_bad_rbp(void);
__asm__(".text\n"
        ".globl vfork_bad_rbp\n"
        ".hidden vfork_bad_rbp\n"
        ".type vfork_bad_rbp, @function\n"
        "vfork_bad_rbp:\n"
        "  pushq %rbp\n"
        "  movq %rsp, %rbp\n"
        "  addq $0x40000000, %rbp\n"
        "  call vfork@PLT\n"
        "  testl %eax, %eax\n"
        "  jnz 1f\n"
        "  xorl %edi, %edi\n"
        "  call _exit@PLT\n"
        "1:\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size vfork_bad_rbp, .-vfork_bad_rbp\n");

static int cmd_vfork_exec(int argc, char **argv) {
  int n = argc > 2 ? atoi(argv[2]) : 50;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  int ok = 0;
  for (int i = 0; i < n; i++) {
    pid_t pid = vfork();
    if (pid == 0) {
      execl("/bin/true", "true", (char *)NULL);
      _exit(127);
    }
    if (pid < 0) die("vfork");
    int st;
    if (waitpid(pid, &st, 0) != pid) die("waitpid");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
  }
  int bad_rbp = 0;
  for (int i = 0; i < n; i++) {
    pid_t pid = vfork_bad_rbp();
    if (pid < 0) die("vfork (bad rbp)");
    int st;
    if (waitpid(pid, &st, 0) != pid) die("waitpid");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) bad_rbp++;
  }
  int spawned = 0;
  for (int i = 0; i < n; i++) {
    pid_t pid;
    char *args[] = {"true", NULL};
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, args, environ) != 0) {
      die("posix_spawn");
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) die("waitpid");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) spawned++;
  }
  if (write(sv[0], "x", 1) != 1) die("write");
  char c = 0;
  if (read(sv[1], &c, 1) != 1 || c != 'x') die("the socketpair no longer works");
  close(sv[0]);
  close(sv[1]);
  out("vfork_exec ok=%d bad_rbp=%d spawned=%d socketpair=fine\n", ok, bad_rbp,
      spawned);
  return ok == n && bad_rbp == n && spawned == n ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* accept_buffers: every way a program hands accept() its address buffer. The
 * shim reads the peer's address from accept's own result where it safely can
 * and substitutes a buffer of its own when the program passed none; what the
 * program sees must not change. Each accepted socket is left in CLOSE_WAIT
 * (the client closes, the server reads the EOF and keeps the socket), so the
 * report names every one with its addresses. */

/* One connection from a fresh client, closed by it; returns the client's
 * local port. */
static int connect_and_close(const struct sockaddr_in *addr) {
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (c < 0) die("socket (client)");
  if (connect(c, (const struct sockaddr *)addr, sizeof *addr) != 0) die("connect");
  struct sockaddr_in me;
  socklen_t len = sizeof me;
  if (getsockname(c, (struct sockaddr *)&me, &len) != 0) die("getsockname");
  xclose(c, "client");
  return ntohs(me.sin_port);
}

static void read_eof(int fd, const char *mode) {
  char b;
  ssize_t n = recv(fd, &b, 1, 0);
  if (n != 0) die("%s: recv returned %zd, expected EOF", mode, n);
}

/* What the program sees of an accept: rc, errno, the length it got back and
 * whether the address in its buffer is the client's. */
static void show(const char *mode, int fd, int err, socklen_t len,
                 const unsigned char *buf, size_t cap, int client_port) {
  int match = -1;
  if (fd >= 0 && buf != NULL && len >= sizeof(struct sockaddr_in) &&
      cap >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in a;
    memcpy(&a, buf, sizeof a);
    match = a.sin_family == AF_INET && ntohs(a.sin_port) == client_port;
  }
  out("%s: ok=%d errno=%s len=%u peer_matches=%d", mode, fd >= 0,
      fd >= 0 ? "0" : ename(err), (unsigned)len, match);
}

static int cmd_accept_buffers(void) {
  struct sockaddr_in addr;
  int lfd = tcp_listener(&addr, 8);
  int kept = 0;

  int port = connect_and_close(&addr);
  int fd = accept(lfd, NULL, NULL);
  show("null", fd, errno, 0, NULL, 0, port);
  if (fd >= 0) { read_eof(fd, "null"); kept++; }

  struct sockaddr_storage st;
  socklen_t len = sizeof st;
  port = connect_and_close(&addr);
  fd = accept(lfd, (struct sockaddr *)&st, &len);
  show("stack", fd, errno, len, (unsigned char *)&st, sizeof st, port);
  if (fd >= 0) { read_eof(fd, "stack"); kept++; }

  unsigned char tiny[4] = {0xa5, 0xa5, 0xa5, 0xa5};
  len = sizeof tiny;
  port = connect_and_close(&addr);
  fd = accept4(lfd, (struct sockaddr *)tiny, &len, SOCK_CLOEXEC);
  show("truncated", fd, errno, len, tiny, sizeof tiny, port);
  /* The family made it in; the rest is the (varying) port. */
  out("truncated: family_bytes=%02x%02x", tiny[0], tiny[1]);
  if (fd >= 0) { read_eof(fd, "truncated"); kept++; }

  struct sockaddr_in *heap = malloc(sizeof *heap);
  socklen_t *heap_len = malloc(sizeof *heap_len);
  if (heap == NULL || heap_len == NULL) die("malloc");
  *heap_len = sizeof *heap;
  port = connect_and_close(&addr);
  fd = accept4(lfd, (struct sockaddr *)heap, heap_len, 0);
  show("heap", fd, errno, *heap_len, (unsigned char *)heap, sizeof *heap, port);
  if (fd >= 0) { read_eof(fd, "heap"); kept++; }
  free(heap);
  free(heap_len);

  len = 7; /* with no buffer, the kernel leaves the length alone */
  port = connect_and_close(&addr);
  fd = accept(lfd, NULL, &len);
  show("null_with_len", fd, errno, len, NULL, 0, port);
  if (fd >= 0) { read_eof(fd, "null_with_len"); kept++; }

  /* A bad buffer: the kernel answers EFAULT (and drops the connection). */
  len = sizeof st;
  connect_and_close(&addr);
  errno = 0;
  fd = accept(lfd, (struct sockaddr *)8, &len);
  show("bad_buffer", fd, errno, 0, NULL, 0, 0);
  if (fd >= 0) die("accept into address 8 succeeded");

  /* A bad length pointer: EFAULT too, never a crash in the shim. */
  connect_and_close(&addr);
  errno = 0;
  fd = accept(lfd, (struct sockaddr *)&st, (socklen_t *)8);
  show("bad_length", fd, errno, 0, NULL, 0, 0);
  if (fd >= 0) die("accept with length at address 8 succeeded");

  out("kept=%d", kept);
  /* Past the grace period, the kept sockets still open. */
  struct timespec ts = {1, 500000000};
  nanosleep(&ts, NULL);
  return 0;
}

/* ------------------------------------------------------------------------ */

static void usage(void) {
  static const char text[] =
      "usage: torture threads16 [N] | signals restart|norestart|closerace [M] |"
      " fork_mt [K] | fork_storm [C] | exec_chain LEVEL [FD] | closeall_loop |"
      " closeall_range | closeall_from | dup2_onto_all | dup2_high | emfile32 |"
      " sigkill_after_leak [N] | vfork_exec [N] | accept_buffers\n";
  write_all(2, text, sizeof text - 1);
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  const char *cmd = argv[1];
  if (strcmp(cmd, "threads16") == 0) return cmd_threads16(argc, argv);
  if (strcmp(cmd, "signals") == 0) return cmd_signals(argc, argv);
  if (strcmp(cmd, "fork_mt") == 0) return cmd_fork_mt(argc, argv);
  if (strcmp(cmd, "fork_storm") == 0) return cmd_fork_storm(argc, argv);
  if (strcmp(cmd, "exec_chain") == 0) return cmd_exec_chain(argc, argv);
  if (strcmp(cmd, "closeall_loop") == 0) return cmd_closeall("loop");
  if (strcmp(cmd, "closeall_range") == 0) return cmd_closeall("range");
  if (strcmp(cmd, "closeall_from") == 0) return cmd_closeall("from");
  if (strcmp(cmd, "dup2_onto_all") == 0) return cmd_dup2_onto_all();
  if (strcmp(cmd, "dup2_high") == 0) return cmd_dup2_high();
  if (strcmp(cmd, "emfile32") == 0) return cmd_emfile32();
  if (strcmp(cmd, "sigkill_after_leak") == 0) return cmd_sigkill_after_leak(argc, argv);
  if (strcmp(cmd, "vfork_exec") == 0) return cmd_vfork_exec(argc, argv);
  if (strcmp(cmd, "accept_buffers") == 0) return cmd_accept_buffers();
  usage();
}
