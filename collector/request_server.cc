#include "collector/request_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace closeaudit {
namespace {

constexpr size_t kMaxRequest = 8 << 10;
constexpr uint64_t kRequestTimeoutNs = 2'000'000'000;
// For an answer the handler gives later (`closeaudit snapshot` waits 60 s).
constexpr uint64_t kLaterAnswerTimeoutNs = 120'000'000'000;
constexpr size_t kMaxConns = 32;

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<uint64_t>(ts.tv_nsec);
}

absl::Status Errno(const std::string& what) {
  return absl::ErrnoToStatus(errno, what);
}

}  // namespace

RequestServer::RequestServer(std::string terminator, Handler handler)
    : terminator_(std::move(terminator)), handler_(std::move(handler)) {}

RequestServer::~RequestServer() {
  for (Conn& c : conns_) ::close(c.fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
}

absl::Status RequestServer::ListenUnix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("control socket path too long: " + path);
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  ::unlink(path.c_str());
  mode_t old = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (rc != 0 || ::listen(fd, 16) != 0) {
    absl::Status s = Errno("listen on " + path);
    ::close(fd);
    return s;
  }
  listen_fd_ = fd;
  unix_path_ = path;
  return absl::OkStatus();
}

absl::StatusOr<std::string> RequestServer::ListenTcp(
    const std::string& host_port) {
  size_t colon = host_port.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(host_port.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics-listen wants HOST:PORT (127.0.0.1:9464, [::1]:9464), not '",
        host_port, "'"));
  }
  std::string host = host_port.substr(0, colon);
  bool v6 = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (v6) host = host.substr(1, host.size() - 2);
  sockaddr_storage storage{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) {
      return absl::InvalidArgumentError("not an IPv6 address: " + host);
    }
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&storage);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "not an IPv4 address: '", host, "' (write IPv6 as [::1]:PORT)"));
    }
    len = sizeof(*a);
  }
  int fd = ::socket(v6 ? AF_INET6 : AF_INET,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), len) != 0 ||
      ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) {
    absl::Status s = Errno("listen on " + host_port);
    ::close(fd);
    return s;
  }
  listen_fd_ = fd;
  uint16_t bound = v6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port)
                      : ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  return v6 ? absl::StrCat("[", host, "]:", bound) : absl::StrCat(host, ":", bound);
}

void RequestServer::Accept() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a transient error: try next turn
    if (conns_.size() >= kMaxConns) {
      ::close(fd);
      continue;
    }
    Conn c;
    c.fd = fd;
    c.id = next_id_++;
    c.deadline_ns = NowNs() + kRequestTimeoutNs;
    conns_.push_back(std::move(c));
  }
}

void RequestServer::Answer(uint64_t id, std::string answer) {
  for (Conn& c : conns_) {
    if (c.id != id || !c.waiting) continue;
    c.waiting = false;
    c.out = std::move(answer);
    c.answered = true;
    c.deadline_ns = NowNs() + kRequestTimeoutNs;  // to take the answer
    return;
  }
}

bool RequestServer::Serve(Conn& c, short revents) {
  if (c.waiting) {
    // The client asked once; anything more it sends is not read. It may
    // hang up, or give up waiting.
    return !(revents & (POLLHUP | POLLERR)) && NowNs() < c.deadline_ns;
  }
  if (!c.answered && (revents & (POLLIN | POLLHUP | POLLERR))) {
    char buf[2048];
    for (;;) {
      ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        if (c.in.size() > kMaxRequest) return false;
        continue;
      }
      if (n == 0 && c.in.find(terminator_) == std::string::npos) {
        return false;  // hung up before finishing its request
      }
      break;
    }
    size_t end = c.in.find(terminator_);
    if (end != std::string::npos) {
      std::weak_ptr<RequestServer*> self = self_;
      Reply later = [self, id = c.id](std::string answer) {
        if (std::shared_ptr<RequestServer*> server = self.lock()) {
          (*server)->Answer(id, std::move(answer));
        }
      };
      // Waiting already, in case the handler calls `later` before it returns.
      c.waiting = true;
      c.deadline_ns = NowNs() + kLaterAnswerTimeoutNs;
      std::optional<std::string> now =
          handler_(std::string_view(c.in).substr(0, end), std::move(later));
      if (now) {
        Answer(c.id, std::move(*now));
      } else if (c.waiting) {
        return true;
      }
    }
  }
  if (c.answered) {
    while (c.sent < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent,
                         MSG_NOSIGNAL);
      if (n < 0) {
        return (errno == EAGAIN || errno == EINTR) && NowNs() < c.deadline_ns;
      }
      c.sent += static_cast<size_t>(n);
    }
    return false;  // all sent
  }
  return NowNs() < c.deadline_ns;
}

void RequestServer::Poll() {
  if (listen_fd_ < 0) return;
  std::vector<pollfd> fds;
  fds.push_back({listen_fd_, POLLIN, 0});
  for (const Conn& c : conns_) {
    // A connection waiting for a later answer is only watched for hang-ups.
    fds.push_back({c.fd, static_cast<short>(c.answered  ? POLLOUT
                                            : c.waiting ? 0
                                                        : POLLIN),
                   0});
  }
  if (::poll(fds.data(), fds.size(), 0) < 0) return;
  size_t existing = conns_.size();
  for (size_t i = 0; i < existing; ++i) {
    Conn& c = conns_[i];
    if (!Serve(c, fds[i + 1].revents)) {
      ::close(c.fd);
      c.fd = -1;
    }
  }
  std::erase_if(conns_, [](const Conn& c) { return c.fd < 0; });
  if (fds[0].revents & POLLIN) Accept();
}

}  // namespace closeaudit
