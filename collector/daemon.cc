#include "collector/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

namespace closeaudit {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_snapshot{false};
void OnStop(int) { g_stop.store(true); }
void OnSnapshot(int) { g_snapshot.store(true); }

// The reports as of now, written while draining goes on.
void WriteSnapshot(Session& session) {
  session.StartSnapshot([](absl::Status s) {
    if (!s.ok()) {
      fprintf(stderr, "closeaudit daemon: %s\n", std::string(s.message()).c_str());
    }
  });
}

// True if some process accepts connections on path (another daemon).
bool SomeoneListens(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

int Serve(const SessionOptions& options, absl::Duration idle, int ready_fd) {
  auto tell = [&](char c) {
    if (ready_fd >= 0) {
      (void)!::write(ready_fd, &c, 1);
      ::close(ready_fd);
      ready_fd = -1;
    }
  };
  if (SomeoneListens(options.socket_path)) {
    tell('1');  // another daemon got there first: fine
    return 0;
  }
  ::unlink(options.socket_path.c_str());  // a dead daemon's socket
  Session session(options);
  if (absl::Status s = session.Start(); !s.ok()) {
    fprintf(stderr, "closeaudit daemon: %s\n", std::string(s.message()).c_str());
    tell('0');
    return 1;
  }
  tell('1');
  fprintf(stderr, "closeaudit daemon: listening on %s, writing to %s\n",
          options.socket_path.c_str(), options.out_dir.c_str());
  struct sigaction sa {};
  sa.sa_handler = OnStop;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = OnSnapshot;  // SIGUSR1: the reports, now
  sigaction(SIGUSR1, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  session.LowerDrainPriority();

  uint32_t reported = 0;
  uint64_t idle_since = MonoNowNs();
  while (!g_stop.load()) {
    session.Poll(kDrainIntervalMs);
    if (g_snapshot.exchange(false)) WriteSnapshot(session);
    if (session.collector().live_streams() > 0) {
      idle_since = MonoNowNs();
      continue;
    }
    if (session.collector().streams_seen() != reported) {
      reported = session.collector().streams_seen();
      WriteSnapshot(session);
    }
    if (absl::Nanoseconds(MonoNowNs() - idle_since) > idle) break;
  }
  absl::StatusOr<Report> report = session.Finish();
  if (!report.ok()) {
    fprintf(stderr, "closeaudit daemon: %s\n",
            std::string(report.status().message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int RunDaemon(const SessionOptions& options, absl::Duration idle, bool detach) {
  if (!detach) return Serve(options, idle, -1);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    perror("closeaudit daemon: pipe");
    return 1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("closeaudit daemon: fork");
    return 1;
  }
  if (pid > 0) {
    ::close(pipefd[1]);
    char c = '0';
    ssize_t n;
    while ((n = ::read(pipefd[0], &c, 1)) < 0 && errno == EINTR) {
    }
    return n == 1 && c == '1' ? 0 : 1;
  }
  ::close(pipefd[0]);
  setsid();
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  std::string log = options.out_dir + "/daemon.log";
  int logfd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
  }
  if (logfd >= 0) dup2(logfd, 2);
  if (chdir("/") != 0) {
    // not fatal: the daemon only uses absolute paths
  }
  _exit(Serve(options, idle, pipefd[1]));
}

}  // namespace closeaudit
