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
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "common/paths.h"
#include "common/wire.h"
#include "shim/hooks.h"

extern char** environ;

namespace closeaudit::shim {
namespace {

char g_exe[wire::kMaxPathBytes];
char g_argv[8192];
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

int Connect() {
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

// Shell scripts start hundreds of processes: a warning that every one of
// them would repeat is said once per user (per boot, on a tmpfs /tmp) instead.
void SayOnce(const char* text) {
  char dir[sizeof(g_socket_path)];
  paths::DefaultRuntimeDir(dir, sizeof(dir));
  mkdir(dir, 0700);
  char marker[sizeof(g_socket_path) + 32];
  snprintf(marker, sizeof(marker), "%s/.warned-no-collector", dir);
  int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return;
  Real().close(fd);
  (void)!write(2, text, strlen(text));
}

}  // namespace

void InitTransport() {
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

void EnsureDefaultCollector(int wait_ms) {
  if (g_explicit_socket) return;
  int probe = Connect();
  if (probe >= 0) {
    Real().close(probe);
    return;
  }
  char bin[wire::kMaxPathBytes];
  if (!FindBinary(bin, sizeof(bin))) {
    SayOnce(
        "closeaudit: no collector is listening and no closeaudit binary was "
        "found to start one; set CLOSEAUDIT_BIN or use `closeaudit run`. "
        "Programs run on unaudited (said once per user)\n");
    return;
  }
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
  pid_t pid;
  // `closeaudit daemon` forks into the background and its first process
  // exits at once, so the wait below is short and the program never
  // inherits a child it did not ask for.
  if (posix_spawn(&pid, bin, nullptr, nullptr, argv, envp) != 0) return;
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  for (int waited = 0; waited < wait_ms; waited += 10) {
    int fd = Connect();
    if (fd >= 0) {
      Real().close(fd);
      return;
    }
    timespec ts{0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace closeaudit::shim
