#include "shim/transport.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "common/paths.h"
#include "common/spawn.h"
#include "common/wire.h"
#include "shim/hooks.h"
#include "shim/layout.h"

extern char** environ;

namespace closeaudit::shim {
namespace {

CA_BULK char g_exe[wire::kMaxPathBytes];
CA_BULK char g_argv[8192];
size_t g_argv_len = 0;
char g_socket_path[sizeof(sockaddr_un::sun_path)];
bool g_explicit_socket = false;

uint64_t Now(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

void ReadCmdline() {
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  size_t used = 0;
  while (used < sizeof(g_argv)) {
    ssize_t n = Real().read(fd, g_argv + used, sizeof(g_argv) - used);
    if (n <= 0) break;
    used += static_cast<size_t>(n);
  }
  Real().close(fd);
  g_argv_len = used;
}

// The per-user directory must be this user's own and closed to others: a
// socket someone else planted there would receive this process's events.
bool DirIsOurs(const char* socket_path) {
  char dir[sizeof(g_socket_path)];
  snprintf(dir, sizeof(dir), "%s", socket_path);
  char* slash = strrchr(dir, '/');
  if (slash == nullptr || slash == dir) return false;
  *slash = '\0';
  struct stat st;
  return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
         st.st_uid == geteuid() && (st.st_mode & 022) == 0;
}

int Connect() {
  if (!g_explicit_socket && !DirIsOurs(g_socket_path)) {
    errno = EACCES;
    return -1;
  }
  int fd = Real().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, g_socket_path, sizeof(addr.sun_path) - 1);
  if (Real().connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int saved = errno;
    Real().close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

// The closeaudit binary next to this library: the build tree keeps it in
// ../collector/, an installation in ../bin/ or ../../bin/ (multiarch libdir).
bool FindBinary(char* out, size_t size) {
  const char* env = getenv("CLOSEAUDIT_BIN");
  if (env && *env) {
    snprintf(out, size, "%s", env);
    return access(out, X_OK) == 0;
  }
  Dl_info info;
  if (!dladdr(reinterpret_cast<void*>(&FindBinary), &info) || !info.dli_fname) {
    return false;
  }
  char dir[wire::kMaxPathBytes];
  snprintf(dir, sizeof(dir), "%s", info.dli_fname);
  char* slash = strrchr(dir, '/');
  if (!slash) return false;
  *slash = '\0';
  const char* candidates[] = {"../collector/closeaudit", "../bin/closeaudit",
                              "../../bin/closeaudit"};
  for (const char* rel : candidates) {
    snprintf(out, size, "%s/%s", dir, rel);
    if (access(out, X_OK) == 0) return true;
  }
  return false;
}

// Whether the parent process was started with this library preloaded: then
// it met the same trouble first and has said so (or its parent has).
bool ParentAudited() {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/environ", static_cast<int>(getppid()));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[16384];
  ssize_t n = Real().read(fd, buf, sizeof(buf) - 1);
  Real().close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  for (ssize_t at = 0; at < n; at += static_cast<ssize_t>(strlen(buf + at)) + 1) {
    if (strncmp(buf + at, "LD_PRELOAD=", 11) == 0 &&
        strstr(buf + at, "libcloseaudit") != nullptr) {
      return true;
    }
  }
  return false;
}

// Failures to start a daemon are remembered for a minute in a marker file:
// in the per-user runtime directory when it is this user's, else in
// /dev/shm. Within that minute no process tries again (each try costs a
// spawn) or says so again; after it, the next one does both.
constexpr time_t kMarkerSeconds = 60;

bool MarkerPath(char* out, size_t size, const char* name) {
  char dir[sizeof(g_socket_path)];
  paths::DefaultRuntimeDir(dir, sizeof(dir));
  mkdir(dir, 0700);
  int n = snprintf(out, size, "%s/.%s", dir, name);
  if (n > 0 && static_cast<size_t>(n) < size && DirIsOurs(out)) return true;
  n = snprintf(out, size, "/dev/shm/.closeaudit-%u-%s",
               static_cast<unsigned>(geteuid()), name);
  return n > 0 && static_cast<size_t>(n) < size;
}

// Whether the failure `name` was met less than kMarkerSeconds ago. A stale
// marker is removed, so that whoever fails next says so (see SayOnce).
bool FailedLately(const char* name) {
  char marker[sizeof(g_socket_path) + 64];
  if (!MarkerPath(marker, sizeof(marker), name)) return false;
  struct stat st;
  if (lstat(marker, &st) != 0) return false;
  if (st.st_uid == geteuid() && time(nullptr) - st.st_mtime < kMarkerSeconds) {
    return true;
  }
  if (st.st_uid == geteuid()) unlink(marker);
  return false;
}

// Records the failure `name` and says `text` on stderr if this process is
// the first to meet it within the minute. Where no marker can be made at
// all, once per process tree: a process whose parent was audited too stays
// quiet.
void SayOnce(const char* name, const char* text) {
  char marker[sizeof(g_socket_path) + 64];
  bool say;
  int fd = MarkerPath(marker, sizeof(marker), name)
               ? open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
                                  O_NOFOLLOW, 0600)
               : -1;
  if (fd >= 0) {
    Real().close(fd);
    say = true;
  } else {
    say = errno != EEXIST && !ParentAudited();
  }
  if (say) (void)!write(2, text, strlen(text));
}

// Runs `closeaudit daemon --socket PATH` and waits for its first process,
// which exits as soon as the daemon listens (0) or has failed (non-zero); its
// stderr comes back through a pipe, for one line of ours instead of one of
// its own in every process. Returns the exit status, or -1.
int StartDaemon(const char* bin, char* why, size_t why_size) {
  why[0] = '\0';
  // The daemon must not audit itself: pass on the environment without
  // LD_PRELOAD. No heap here: a fixed array of pointers into environ.
  char* envp[512];
  int n = 0;
  for (char** e = environ; e && *e && n < 511; ++e) {
    if (strncmp(*e, "LD_PRELOAD=", 11) == 0) continue;
    envp[n++] = *e;
  }
  envp[n] = nullptr;
  char arg0[] = "closeaudit";
  char arg1[] = "daemon";
  char arg2[] = "--socket";
  char* argv[] = {arg0, arg1, arg2, g_socket_path, nullptr};
  int err[2];
  if (Real().pipe2(err, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  // The daemon starts clean: no signal blocked (the shim blocks them all
  // while it registers) or ignored (whatever the program chose), so that
  // SIGTERM stops it and SIGUSR1 asks for a snapshot.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  CleanSignalsOnSpawn(&attr);
  pid_t pid;
  // The real posix_spawn: this child is the shim's, not the program's.
  int rc = Real().posix_spawn(&pid, bin, &actions, &attr, argv, envp);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  Real().close(err[1]);
  int status = -1;
  if (rc == 0) {
    // `closeaudit daemon` forks into the background and its first process
    // exits once the second listens or has failed; bounded all the same.
    for (int waited_ms = 0;; waited_ms += 5) {
      pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if ((r < 0 && errno != EINTR) || waited_ms >= 2000) {
        if (r == 0) {
          kill(pid, SIGKILL);
          waitpid(pid, &status, 0);
        }
        status = -1;
        break;
      }
      timespec ts{0, 5 * 1000 * 1000};
      nanosleep(&ts, nullptr);
    }
    ssize_t got = Real().read(err[0], why, why_size - 1);
    why[got > 0 ? got : 0] = '\0';
    for (char* p = why; *p; ++p) {
      if (*p == '\n') *p = *(p + 1) ? ' ' : '\0';
    }
  }
  Real().close(err[0]);
  if (status == -1) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

void InitTransport() {
  if (g_exe[0] != '\0') return;  // once per image
  ssize_t n = readlink("/proc/self/exe", g_exe, sizeof(g_exe) - 1);
  g_exe[n > 0 ? n : 0] = '\0';
  ReadCmdline();
  const char* env = getenv("CLOSEAUDIT_SOCKET");
  g_explicit_socket = env && *env;
  if (g_explicit_socket) {
    snprintf(g_socket_path, sizeof(g_socket_path), "%s", env);
  } else {
    char dir[sizeof(g_socket_path)];
    paths::DefaultRuntimeDir(dir, sizeof(dir));
    int n = snprintf(g_socket_path, sizeof(g_socket_path), "%s/%s", dir,
                     paths::kSocketName);
    if (n < 0 || static_cast<size_t>(n) >= sizeof(g_socket_path)) {
      g_socket_path[0] = '\0';  // too long for a Unix socket: no collector
    }
  }
}

const char* ExePath() { return g_exe; }

bool Register(RingWriter& ring, uint32_t flags) {
  if (ring.fd() < 0) return false;
  if (!ring.FdStillOurs()) {
    // The program closed our memfd (close-all at start-up, say): that number
    // is the program's now, and must never be sent as our ring.
    ring.ReleaseFd();
    return false;
  }
  int sock = Connect();
  if (sock < 0) return false;

  wire::HelloMsg hello{};
  hello.magic = wire::kHelloMagic;
  hello.version = wire::kWireVersion;
  hello.hello_size = sizeof(hello);
  hello.pid = static_cast<uint32_t>(getpid());
  hello.ppid = static_cast<uint32_t>(getppid());
  hello.flags = flags;
  hello.exe_len = static_cast<uint32_t>(strlen(g_exe));
  hello.argv_len = static_cast<uint32_t>(g_argv_len);
  hello.lib_version = CLOSEAUDIT_VERSION_NUMBER;  // meson.build: the version
  hello.start_mono_ns = Now(CLOCK_MONOTONIC);
  hello.start_real_ns = Now(CLOCK_REALTIME);
  hello.ring_bytes = ring.total_bytes();

  iovec iov[3] = {{&hello, sizeof(hello)},
                  {g_exe, hello.exe_len},
                  {g_argv, g_argv_len}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 3;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  int memfd = ring.fd();
  std::memcpy(CMSG_DATA(cmsg), &memfd, sizeof(int));

  size_t want = sizeof(hello) + hello.exe_len + g_argv_len;
  ssize_t sent = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  Real().close(sock);
  if (sent != static_cast<ssize_t>(want)) return false;
  Real().close(ring.ReleaseFd());
  return true;
}

void EnsureDefaultCollector() {
  if (g_explicit_socket || g_socket_path[0] == '\0') return;
  int probe = Connect();
  if (probe >= 0) {
    Real().close(probe);
    return;
  }
  constexpr char kNoBinary[] = "no-binary";
  constexpr char kDaemonFailed[] = "daemon-failed";
  if (FailedLately(kNoBinary) || FailedLately(kDaemonFailed)) return;
  char bin[wire::kMaxPathBytes];
  if (!FindBinary(bin, sizeof(bin))) {
    SayOnce(kNoBinary,
            "closeaudit: no collector is listening and no closeaudit binary "
            "was found to start one; set CLOSEAUDIT_BIN or use `closeaudit "
            "run`. This process and the ones it starts run unaudited.\n");
    return;
  }
  char why[512];
  int status = StartDaemon(bin, why, sizeof(why));
  if (status == 0) return;
  char text[1024];
  snprintf(text, sizeof(text),
           "closeaudit: could not start the collector daemon (%s); this "
           "process and the ones it starts run unaudited. Use `closeaudit "
           "run`, or see `closeaudit daemon`.\n",
           why[0] ? why : status < 0 ? "it did not answer" : "it failed");
  SayOnce(kDaemonFailed, text);
}

}  // namespace closeaudit::shim
