#include "collector/server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_format.h"

namespace closeaudit {
namespace {

constexpr uint64_t kHelloTimeoutNs = 2'000'000'000;
constexpr size_t kMaxPending = 256;
// Events handed over between heartbeats and clock reads: small enough that
// even a sanitizer build's drain of one batch takes far less than the shim's
// stale-collector limit (3 s), which only a stalled collector may pass.
constexpr size_t kDrainBatch = 1 << 12;
// What one Poll() drains from a ring whose process is alive before it looks
// at new connections and exits again: a producer that outruns us must not
// keep the loop from everything else.
constexpr size_t kDrainBudget = 1 << 18;

uint64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

void Log(const std::string& line) {
  std::string out = "closeaudit: " + line + "\n";
  (void)!write(2, out.data(), out.size());
}

int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

}  // namespace

struct Collector::Pending {
  int fd = -1;
  int memfd = -1;
  pid_t peer_pid = 0;
  uint64_t deadline_ns = 0;
  std::string bytes;
  ~Pending() {
    if (fd >= 0) ::close(fd);
    if (memfd >= 0) ::close(memfd);
  }
};

struct Collector::Stream {
  uint32_t id = 0;
  pid_t pid = 0;
  int pidfd = -1;
  bool alive = true;
  // Oldest first. A process whose collector stalled hands over a new ring
  // and keeps the stream (kHelloReconnect); the old ring is drained first.
  std::vector<std::unique_ptr<RingReader>> rings;
  ~Stream() {
    if (pidfd >= 0) ::close(pidfd);
  }
};

Collector::Collector(IngestSink& sink) : sink_(sink) {}

Collector::~Collector() {
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(socket_path_.c_str());
  }
}

absl::Status Collector::Listen(const std::string& socket_path) {
  sockaddr_un addr{};
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("socket path '%s' is empty or longer than %d bytes",
                        socket_path, sizeof(addr.sun_path) - 1));
  }
  std::string dir = socket_path.substr(0, socket_path.rfind('/'));
  if (!dir.empty()) {
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, "create " + dir);
    }
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, "stat " + dir);
    // Only this user may reach the socket: the directory must be ours and
    // closed to others.
    if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "%s must be owned by uid %d with mode 0700 (it is uid %d, mode %o)",
          dir, geteuid(), st.st_uid, st.st_mode & 0777));
    }
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int saved = errno;
    ::close(fd);
    return absl::ErrnoToStatus(saved, "bind " + socket_path);
  }
  if (::listen(fd, 512) != 0) {
    int saved = errno;
    ::close(fd);
    return absl::ErrnoToStatus(saved, "listen " + socket_path);
  }
  listen_fd_ = fd;
  socket_path_ = socket_path;
  return absl::OkStatus();
}

size_t Collector::live_streams() const {
  size_t n = 0;
  for (const auto& s : streams_) n += s->alive;
  return n;
}

uint64_t Collector::live_dropped_events() const {
  uint64_t n = 0;
  for (const auto& s : streams_) {
    if (!s->alive) continue;
    for (const auto& ring : s->rings) n += ring->dropped_events();
  }
  return n;
}

std::vector<uint32_t> Collector::live_pids() const {
  std::vector<uint32_t> pids;
  for (const auto& s : streams_) {
    if (s->alive) pids.push_back(static_cast<uint32_t>(s->pid));
  }
  return pids;
}

void Collector::Drop(Pending& pending, const std::string& why) {
  Log(absl::StrFormat("dropped connection from pid %d: %s", pending.peer_pid,
                      why));
  ::close(pending.fd);
  pending.fd = -1;
}

void Collector::Accept() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr,
                       SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      ::close(fd);
      continue;
    }
    if (cred.uid != geteuid() && cred.uid != 0) {
      Log(absl::StrFormat("refused pid %d: uid %d is not ours", cred.pid,
                          cred.uid));
      ::close(fd);
      continue;
    }
    if (pending_.size() >= kMaxPending) {
      Log(absl::StrFormat("dropped connection from pid %d: too many "
                          "connections waiting for their hello",
                          cred.pid));
      ::close(fd);
      continue;
    }
    auto p = std::make_unique<Pending>();
    p->fd = fd;
    p->peer_pid = cred.pid;
    p->deadline_ns = MonoNs() + kHelloTimeoutNs;
    pending_.push_back(std::move(p));
  }
}

void Collector::ReadHello(Pending& p) {
  for (;;) {
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(p.fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      Drop(p, absl::StrFormat("read error: %s", strerror(errno)));
      return;
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (p.memfd < 0) {
          p.memfd = fd;
        } else {
          ::close(fd);  // only one ring per hello
        }
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
      Drop(p, "sent more file descriptors than a hello carries");
      return;
    }
    if (n == 0) {
      // A peer that connects and leaves without a word is the shim checking
      // whether a collector is up; anything else is a truncated hello.
      if (p.bytes.empty()) {
        ::close(p.fd);
        p.fd = -1;
      } else {
        Drop(p, absl::StrFormat("hello truncated after %d bytes",
                                p.bytes.size()));
      }
      return;
    }
    p.bytes.append(buf, static_cast<size_t>(n));
    if (p.bytes.size() < sizeof(wire::HelloMsg)) continue;
    absl::StatusOr<size_t> want = HelloSize(p.bytes);
    if (!want.ok()) {
      Drop(p, std::string(want.status().message()));
      return;
    }
    if (p.bytes.size() > *want) {
      Drop(p, "sent bytes after its hello");
      return;
    }
    if (p.bytes.size() < *want) continue;
    absl::StatusOr<Hello> hello = DecodeHello(p.bytes);
    if (!hello.ok()) {
      Drop(p, std::string(hello.status().message()));
      return;
    }
    StartStream(p, *std::move(hello));
    return;
  }
}

void Collector::StartStream(Pending& p, Hello hello) {
  if (p.memfd < 0) {
    Drop(p, "hello came without its ring");
    return;
  }
  int memfd = p.memfd;
  p.memfd = -1;
  absl::StatusOr<std::unique_ptr<RingReader>> ring =
      RingReader::Map(memfd, hello.msg.ring_bytes);
  if (!ring.ok()) {
    Drop(p, std::string(ring.status().message()));
    return;
  }
  ::close(p.fd);
  p.fd = -1;
  // The kernel's word on who connected, not the hello's.
  pid_t pid = p.peer_pid;
  for (auto& s : streams_) {
    if (!s->alive || s->pid != pid) continue;
    if (hello.msg.flags & wire::kHelloReconnect) {
      // The same process image, moving to a new ring because it thought we
      // were gone: keep the stream.
      s->rings.push_back(*std::move(ring));
      return;
    }
    // A new image of a pid we follow means that process exec'd: its old
    // ring will get no more events.
    DrainStream(*s, true);
    s->alive = false;
    if (s->pidfd >= 0) ::close(s->pidfd);
    s->pidfd = -1;
    s->rings.clear();
  }
  auto stream = std::make_unique<Stream>();
  stream->id = next_stream_++;
  stream->pid = pid;
  stream->rings.push_back(*std::move(ring));
  stream->pidfd = PidfdOpen(pid);

  ProcessRecord rec;
  rec.stream = stream->id;
  rec.pid = static_cast<uint32_t>(pid);
  rec.ppid = hello.msg.ppid;
  rec.flags = hello.msg.flags;
  rec.start_mono_ns = hello.msg.start_mono_ns;
  rec.start_real_ns = hello.msg.start_real_ns;
  rec.exe = std::move(hello.exe);
  rec.argv = std::move(hello.argv);
  rec.lib_version = hello.msg.lib_version;
  sink_.OnRecord(std::move(rec));
  Stream& s = *stream;
  streams_.push_back(std::move(stream));
  if (s.pidfd < 0) FinishStream(s, true);  // already gone
}

bool Collector::DrainStream(Stream& s, bool producer_dead) {
  bool more = false;
  for (size_t i = 0; i < s.rings.size(); ++i) {
    RingReader& ring = *s.rings[i];
    // An older ring gets no new events once a newer one exists, except from
    // pushes already under way: treat its producer as gone after a drain.
    bool dead = producer_dead || i + 1 < s.rings.size();
    size_t total = 0;
    size_t drained;
    do {
      // Each batch tells the process we are here: a long drain is no stall.
      ring.Heartbeat(MonoNs());
      drained = ring.Drain(s.id, dead, kDrainBatch, sink_);
      sink_.OnBatchEnd();
      total += drained;
    } while (drained == kDrainBatch && (dead || total < kDrainBudget));
    more |= drained == kDrainBatch;
  }
  return more;
}

void Collector::FinishStream(Stream& s, bool exited) {
  DrainStream(s, true);
  ExitRecord rec;
  rec.stream = s.id;
  rec.mono_ns = MonoNs();
  if (exited && s.pidfd >= 0) {
    // Our own child (closeaudit run's command) can tell its status; WNOWAIT
    // leaves reaping to its parent.
    siginfo_t info{};
    if (waitid(P_PIDFD, static_cast<id_t>(s.pidfd), &info,
               WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == s.pid) {
      rec.exit_status = info.si_code == CLD_EXITED ? info.si_status
                                                   : 128 + info.si_status;
    }
  }
  if (exited && rec.exit_status < 0) {
    // Reaped before its hello was read (a process killed right away).
    auto known = known_exits_.find(s.pid);
    if (known != known_exits_.end()) rec.exit_status = known->second;
  }
  uint64_t bad_blobs = 0;
  for (const auto& ring : s.rings) {
    rec.dropped_events += ring->dropped_events();
    rec.dropped_blobs += ring->dropped_blobs();
    rec.torn_events += ring->torn_events();
    bad_blobs += ring->bad_blobs();
  }
  if (bad_blobs) {
    Log(absl::StrFormat("pid %d sent %d malformed blobs; they were ignored",
                        s.pid, bad_blobs));
  }
  sink_.OnRecord(rec);
  s.alive = false;
  s.rings.clear();
  if (s.pidfd >= 0) ::close(s.pidfd);
  s.pidfd = -1;
}

void Collector::Poll(int timeout_ms) {
  std::vector<pollfd> fds;
  fds.push_back({listen_fd_, POLLIN, 0});
  for (auto& p : pending_) fds.push_back({p->fd, POLLIN, 0});
  size_t first_stream = fds.size();
  std::vector<Stream*> polled;
  for (auto& s : streams_) {
    if (s->alive && s->pidfd >= 0) {
      fds.push_back({s->pidfd, POLLIN, 0});
      polled.push_back(s.get());
    }
  }
  // Everything done since the last wait: the longest the rings waited.
  if (woke_ns_ != 0) {
    longest_away_ns_ = std::max(longest_away_ns_, MonoNs() - woke_ns_);
  }
  // A ring left with events by its budget is drained again at once.
  int n = ::poll(fds.data(), fds.size(),
                 backlog_ ? 0 : std::min(timeout_ms, kDrainIntervalMs));
  woke_ns_ = MonoNs();
  if (n < 0 && errno != EINTR) Log(absl::StrFormat("poll: %s", strerror(errno)));
  if (n > 0 && (fds[0].revents & POLLIN)) Accept();
  uint64_t now = MonoNs();
  for (size_t i = 0; i < pending_.size(); ++i) {
    Pending& p = *pending_[i];
    if (p.fd >= 0 && i + 1 < first_stream && fds[i + 1].revents) ReadHello(p);
    if (p.fd >= 0 && now > p.deadline_ns) Drop(p, "no complete hello in time");
  }
  bool exits = false;
  for (size_t i = 0; i < polled.size(); ++i) {
    exits |= n > 0 && fds[first_stream + i].revents && polled[i]->alive;
  }
  if (exits) {
    // A process that handed over a new ring (it took us for gone) and then
    // exited left its hello, whole, in the listening socket or a
    // connection: read it before its stream ends, or the ring would start
    // a stream of its own beside the one whose sockets it carries on.
    Accept();
    for (auto& p : pending_) {
      if (p->fd >= 0) ReadHello(*p);
    }
  }
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                [](auto& p) { return p->fd < 0; }),
                 pending_.end());
  for (size_t i = 0; i < polled.size(); ++i) {
    if (n > 0 && fds[first_stream + i].revents && polled[i]->alive) {
      FinishStream(*polled[i], true);
    }
  }
  backlog_ = false;
  for (auto& s : streams_) {
    if (s->alive) backlog_ |= DrainStream(*s, false);
  }
  // Finished streams keep only their id; drop them to bound memory.
  streams_.erase(std::remove_if(streams_.begin(), streams_.end(),
                                [](auto& s) { return !s->alive; }),
                 streams_.end());
}

void Collector::DrainAll() {
  for (auto& s : streams_) {
    while (s->alive && DrainStream(*s, false)) {
    }
  }
  backlog_ = false;
}

}  // namespace closeaudit
