#include "collector/kernel.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace closeaudit {
namespace {

// Large enough for any one netlink dump skb: the kernel sizes dump skbs from
// the reader's previous recvmsg() buffer, capped at 32 KiB of data
// (netlink_dump()), so 64 KiB never truncates. MSG_TRUNC is checked anyway.
constexpr size_t kRecvBufferSize = 64 * 1024;

// How long one recv() may wait for the kernel before we give up. A dump is
// answered synchronously by the kernel, so this only bounds pathological
// cases.
constexpr int kRecvTimeoutSeconds = 5;

// Closes an fd on scope exit.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Copies a T out of possibly unaligned bytes. The caller has checked that
// at least sizeof(T) bytes are there.
template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// One inet_diag_msg (the payload of a SOCK_DIAG_BY_FAMILY reply) to a row.
absl::StatusOr<KernelSocket> ParseInetDiagMsg(std::string_view payload) {
  if (payload.size() < sizeof(inet_diag_msg)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("inet_diag_msg payload of %d bytes, need %d",
                        payload.size(), sizeof(inet_diag_msg)));
  }
  const auto msg = Load<inet_diag_msg>(payload.data());
  if (msg.idiag_family != AF_INET && msg.idiag_family != AF_INET6) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "inet_diag_msg with address family %d", msg.idiag_family));
  }
  KernelSocket s;
  s.cookie = static_cast<uint64_t>(msg.id.idiag_cookie[0]) |
             static_cast<uint64_t>(msg.id.idiag_cookie[1]) << 32;
  s.inode = msg.idiag_inode;
  s.state = msg.idiag_state;
  s.family = msg.idiag_family;
  // The kernel's __be32[4] holds the address in network order (for IPv4 in
  // the first word); the port is in network order.
  s.local = FormatEndpoint(s.family, msg.id.idiag_src, ntohs(msg.id.idiag_sport));
  s.peer = FormatEndpoint(s.family, msg.id.idiag_dst, ntohs(msg.id.idiag_dport));
  s.uid = msg.idiag_uid;
  s.send_queue = msg.idiag_wqueue;
  s.recv_queue = msg.idiag_rqueue;
  return s;
}

// The status for a kernel error code as netlink carries it: a negative errno.
absl::Status NetlinkErrorStatus(int error, const char* what) {
  // -4095..-1 is the kernel's errno range; anything else is garbage (and
  // negating INT_MIN would overflow).
  if (error >= 0 || error < -4095) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s with bad error code %d", what, error));
  }
  return absl::ErrnoToStatus(-error, absl::StrCat("sock_diag ", what));
}

// A NETLINK_SOCK_DIAG socket just made (or -1), checked, with a bound on
// how long a recv() waits for the kernel.
absl::Status PrepareDiagSocket(int fd) {
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket(NETLINK_SOCK_DIAG)");
  timeval timeout = {};
  timeout.tv_sec = kRecvTimeoutSeconds;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0) {
    return absl::ErrnoToStatus(errno, "setsockopt(SO_RCVTIMEO)");
  }
  return absl::OkStatus();
}

// Sends one SOCK_DIAG_BY_FAMILY dump request and reads replies until
// NLMSG_DONE, appending rows to *out.
// Sends `bytes` (one or more requests) to the kernel in one datagram.
absl::Status SendToKernel(int fd, const void* bytes, size_t size) {
  sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;  // nl_pid 0: the kernel.
  for (;;) {
    const ssize_t n = sendto(fd, bytes, size, 0,
                             reinterpret_cast<const sockaddr*>(&kernel),
                             sizeof(kernel));
    if (n == static_cast<ssize_t>(size)) return absl::OkStatus();
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, "sendto(NETLINK_SOCK_DIAG)");
    return absl::InternalError(absl::StrFormat(
        "sendto(NETLINK_SOCK_DIAG) sent %d of %d bytes", n, size));
  }
}

// The next datagram from the kernel, in `buffer`. Only the kernel (port id
// 0) may answer: our socket is unbound to anything else, but a datagram
// from another sender is skipped all the same.
absl::StatusOr<std::string_view> RecvFromKernel(int fd, std::vector<char>& buffer) {
  for (;;) {
    sockaddr_nl from = {};
    iovec iov = {buffer.data(), buffer.size()};
    msghdr msg = {};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t n = recvmsg(fd, &msg, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "no sock_diag answer within %d s", kRecvTimeoutSeconds));
      }
      return absl::ErrnoToStatus(errno, "recvmsg(NETLINK_SOCK_DIAG)");
    }
    if (n == 0) {
      return absl::InternalError("recvmsg(NETLINK_SOCK_DIAG) returned 0");
    }
    if (msg.msg_flags & MSG_TRUNC) {
      return absl::InternalError("sock_diag answer truncated");
    }
    if (msg.msg_namelen < sizeof(from) || from.nl_family != AF_NETLINK ||
        from.nl_pid != 0) {
      continue;
    }
    return std::string_view(buffer.data(), static_cast<size_t>(n));
  }
}

absl::Status DumpFamily(int fd, int family, uint32_t state_mask, uint32_t seq,
                        std::vector<KernelSocket>* out) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } request;
  std::memset(&request, 0, sizeof(request));
  request.nlh.nlmsg_len = sizeof(request);
  request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.nlh.nlmsg_seq = seq;
  request.req.sdiag_family = static_cast<uint8_t>(family);
  request.req.sdiag_protocol = IPPROTO_TCP;
  request.req.idiag_states = state_mask;
  request.req.idiag_ext = 0;  // No attributes: the fixed header is enough.
  // id is all zeroes: with NLM_F_DUMP the kernel ignores it apart from the
  // (zero, so unused) bytecode filter.

  if (absl::Status s = SendToKernel(fd, &request, sizeof(request)); !s.ok()) {
    return s;
  }
  std::vector<char> buffer(kRecvBufferSize);
  bool done = false;
  while (!done) {
    absl::StatusOr<std::string_view> bytes = RecvFromKernel(fd, buffer);
    if (!bytes.ok()) return bytes.status();
    absl::Status status = ParseDiagMessages(*bytes, out, &done);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

std::string FormatEndpoint(int family, const void* addr, unsigned port) {
  if (family == AF_INET) {
    // By hand rather than inet_ntop(), whose sprintf() was a few percent of
    // the collector under a load of short connections: one call an event.
    unsigned char b[4];
    std::memcpy(b, addr, sizeof(b));
    return absl::StrCat(unsigned{b[0]}, ".", unsigned{b[1]}, ".", unsigned{b[2]},
                        ".", unsigned{b[3]}, ":", port);
  }
  char text[INET6_ADDRSTRLEN] = {};
  in6_addr a;
  std::memcpy(&a, addr, sizeof(a));
  if (inet_ntop(AF_INET6, &a, text, sizeof(text)) == nullptr) return "[?]";
  return absl::StrCat("[", text, "]:", port);
}

const char* TcpStateName(int state) {
  switch (state) {
    case kTcpEstablished:
      return "ESTABLISHED";
    case kTcpSynSent:
      return "SYN_SENT";
    case kTcpSynRecv:
      return "SYN_RECV";
    case kTcpFinWait1:
      return "FIN_WAIT1";
    case kTcpFinWait2:
      return "FIN_WAIT2";
    case kTcpTimeWait:
      return "TIME_WAIT";
    case kTcpClose:
      return "CLOSE";
    case kTcpCloseWait:
      return "CLOSE_WAIT";
    case kTcpLastAck:
      return "LAST_ACK";
    case kTcpListen:
      return "LISTEN";
    case kTcpClosing:
      return "CLOSING";
    case kTcpNewSynRecv:
      return "NEW_SYN_RECV";
    default:
      return "UNKNOWN";
  }
}

absl::Status ParseDiagMessages(std::string_view bytes,
                               std::vector<KernelSocket>* out, bool* done) {
  *done = false;
  while (!bytes.empty()) {
    if (bytes.size() < sizeof(nlmsghdr)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "truncated netlink header: %d bytes left", bytes.size()));
    }
    const auto header = Load<nlmsghdr>(bytes.data());
    if (header.nlmsg_len < sizeof(nlmsghdr)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "nlmsg_len %d is smaller than the header", header.nlmsg_len));
    }
    if (header.nlmsg_len > bytes.size()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("nlmsg_len %d exceeds the %d bytes left",
                          header.nlmsg_len, bytes.size()));
    }
    const std::string_view payload =
        bytes.substr(sizeof(nlmsghdr), header.nlmsg_len - sizeof(nlmsghdr));

    switch (header.nlmsg_type) {
      case NLMSG_DONE: {
        // The kernel's netlink_dump_done() puts the dump's final status (an
        // int, 0 or -errno) in the payload.
        if (payload.size() >= sizeof(int)) {
          const int error = Load<int>(payload.data());
          if (error != 0) return NetlinkErrorStatus(error, "NLMSG_DONE");
        }
        *done = true;
        return absl::OkStatus();
      }
      case NLMSG_ERROR: {
        // struct nlmsgerr: int error, then (a prefix of) the request. Error 0
        // is an ACK, which a dump without NLM_F_ACK does not send; skip it.
        if (payload.size() < sizeof(int)) {
          return absl::InvalidArgumentError("truncated NLMSG_ERROR");
        }
        const int error = Load<int>(payload.data());
        if (error != 0) return NetlinkErrorStatus(error, "NLMSG_ERROR");
        break;
      }
      case NLMSG_NOOP:
        break;
      case NLMSG_OVERRUN:
        return absl::DataLossError("netlink NLMSG_OVERRUN");
      case SOCK_DIAG_BY_FAMILY: {
        absl::StatusOr<KernelSocket> row = ParseInetDiagMsg(payload);
        if (!row.ok()) return row.status();
        out->push_back(*std::move(row));
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrFormat(
            "unexpected netlink message type %d", header.nlmsg_type));
    }

    // Messages start at NLMSG_ALIGNTO (4-byte) boundaries. The last one in a
    // buffer may legitimately end without padding.
    const size_t advance =
        std::min<size_t>(NLMSG_ALIGN(header.nlmsg_len), bytes.size());
    bytes.remove_prefix(advance);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<KernelSocket>> DumpTcpSockets(uint32_t state_mask) {
  std::vector<KernelSocket> result;
  if (state_mask == 0) return result;

  ScopedFd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (absl::Status s = PrepareDiagSocket(fd.get()); !s.ok()) return s;

  std::vector<KernelSocket> rows;
  uint32_t seq = 1;
  for (const int family : {AF_INET, AF_INET6}) {
    absl::Status status =
        DumpFamily(fd.get(), family, state_mask, seq++, &rows);
    if (!status.ok()) return status;
  }

  // The kernel filters by idiag_states already; filter again so the contract
  // holds whatever it adds (e.g. request sockets). A dump resumed between
  // recv()s can repeat a socket whose hash chain changed; keep the first.
  absl::flat_hash_set<uint64_t> seen;
  result.reserve(rows.size());
  for (KernelSocket& row : rows) {
    if (row.state < 0 || row.state >= 32) continue;
    if ((state_mask & StateBit(row.state)) == 0) continue;
    if (!seen.insert(row.cookie).second) continue;
    result.push_back(std::move(row));
  }
  return result;
}

namespace {

// "127.0.0.1:8080" or "[::1]:8080" back to its parts.
bool ParseEndpoint(std::string_view text, int* family, uint8_t addr[16],
                   uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string host(text.substr(0, colon));
  uint32_t number = 0;
  std::string digits(text.substr(colon + 1));
  if (!absl::SimpleAtoi(digits, &number) || number > 65535) {
    return false;
  }
  *port = static_cast<uint16_t>(number);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    *family = AF_INET6;
    return inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), addr) == 1;
  }
  *family = AF_INET;
  return inet_pton(AF_INET, host.c_str(), addr) == 1;
}

}  // namespace

std::optional<SocketKey> KeyFromEndpoints(uint64_t cookie, std::string_view local,
                                          std::string_view peer) {
  SocketKey key;
  key.cookie = cookie;
  int peer_family = 0;
  if (!ParseEndpoint(local, &key.family, key.local, &key.local_port) ||
      !ParseEndpoint(peer, &peer_family, key.peer, &key.peer_port) ||
      peer_family != key.family) {
    return std::nullopt;
  }
  return key;
}

absl::Status ParseLookupAnswers(std::string_view bytes, uint32_t first_seq,
                                uint32_t last_seq, std::vector<KernelSocket>* out,
                                size_t* answered) {
  while (bytes.size() >= sizeof(nlmsghdr)) {
    const auto header = Load<nlmsghdr>(bytes.data());
    if (header.nlmsg_len < sizeof(nlmsghdr) || header.nlmsg_len > bytes.size()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("sock_diag answer with nlmsg_len %d in %d bytes",
                          header.nlmsg_len, bytes.size()));
    }
    const std::string_view payload =
        bytes.substr(sizeof(nlmsghdr), header.nlmsg_len - sizeof(nlmsghdr));
    bytes.remove_prefix(
        std::min<size_t>(NLMSG_ALIGN(header.nlmsg_len), bytes.size()));
    // An answer to an earlier batch's request cannot come; one to no
    // request of ours is not counted.
    if (header.nlmsg_seq < first_seq || header.nlmsg_seq > last_seq) continue;
    if (header.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
      absl::StatusOr<KernelSocket> row = ParseInetDiagMsg(payload);
      if (!row.ok()) return row.status();
      out->push_back(*std::move(row));
    } else if (header.nlmsg_type == NLMSG_ERROR) {
      if (payload.size() < sizeof(int)) {
        return absl::InvalidArgumentError("truncated NLMSG_ERROR");
      }
      const int error = Load<int>(payload.data());
      // Gone, or its endpoints another socket's now (the cookie differs).
      if (error != 0 && error != -ENOENT && error != -ESTALE) {
        return NetlinkErrorStatus(error, "lookup");
      }
    } else {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unexpected netlink message type %d", header.nlmsg_type));
    }
    ++*answered;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<KernelSocket>> LookupTcpSockets(
    const std::vector<SocketKey>& keys) {
  std::vector<KernelSocket> found;
  if (keys.empty()) return found;
  ScopedFd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (absl::Status s = PrepareDiagSocket(fd.get()); !s.ok()) return s;
  // Each answer is a datagram of its own (about 90 bytes): a batch's
  // answers fit in the socket's receive buffer, none dropped.
  constexpr size_t kBatch = 64;
  struct Request {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  };
  std::vector<char> requests;
  std::vector<char> buffer(kRecvBufferSize);
  uint32_t seq = 0;
  for (size_t first = 0; first < keys.size(); first += kBatch) {
    const size_t n = std::min(kBatch, keys.size() - first);
    requests.assign(n * sizeof(Request), 0);
    const uint32_t first_seq = seq + 1;
    for (size_t i = 0; i < n; ++i) {
      const SocketKey& key = keys[first + i];
      Request r;
      std::memset(&r, 0, sizeof(r));
      r.nlh.nlmsg_len = sizeof(r);
      r.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
      r.nlh.nlmsg_flags = NLM_F_REQUEST;
      r.nlh.nlmsg_seq = ++seq;
      r.req.sdiag_family = static_cast<uint8_t>(key.family);
      r.req.sdiag_protocol = IPPROTO_TCP;
      r.req.idiag_states = ~0u;
      // The kernel's view: src is the socket's own end, dst its peer's.
      r.req.id.idiag_sport = htons(key.local_port);
      r.req.id.idiag_dport = htons(key.peer_port);
      const size_t bytes = key.family == AF_INET ? 4 : 16;
      std::memcpy(r.req.id.idiag_src, key.local, bytes);
      std::memcpy(r.req.id.idiag_dst, key.peer, bytes);
      r.req.id.idiag_cookie[0] = static_cast<uint32_t>(key.cookie);
      r.req.id.idiag_cookie[1] = static_cast<uint32_t>(key.cookie >> 32);
      std::memcpy(requests.data() + i * sizeof(Request), &r, sizeof(r));
    }
    if (absl::Status s = SendToKernel(fd.get(), requests.data(), requests.size());
        !s.ok()) {
      return s;
    }
    // One answer per request: the socket, or an error (ENOENT: not there).
    for (size_t answered = 0; answered < n;) {
      absl::StatusOr<std::string_view> bytes = RecvFromKernel(fd.get(), buffer);
      if (!bytes.ok()) return bytes.status();
      absl::Status parsed =
          ParseLookupAnswers(*bytes, first_seq, seq, &found, &answered);
      if (!parsed.ok()) return parsed;
    }
  }
  return found;
}

absl::flat_hash_map<uint64_t, std::vector<FdOwner>> FindSocketOwners(
    const std::vector<uint32_t>& pids,
    const absl::flat_hash_set<uint64_t>& inodes) {
  absl::flat_hash_map<uint64_t, std::vector<FdOwner>> owners;
  if (inodes.empty()) return owners;

  std::vector<uint32_t> unique_pids = pids;
  std::sort(unique_pids.begin(), unique_pids.end());
  unique_pids.erase(std::unique(unique_pids.begin(), unique_pids.end()),
                    unique_pids.end());

  constexpr std::string_view kPrefix = "socket:[";
  for (const uint32_t pid : unique_pids) {
    if (pid == 0) continue;
    const std::string dir_path = absl::StrCat("/proc/", pid, "/fd");
    // ENOENT (gone), EACCES (not ours to look at): skip.
    DIR* dir = opendir(dir_path.c_str());
    if (dir == nullptr) continue;
    const int dir_fd = dirfd(dir);
    while (const dirent* entry = readdir(dir)) {
      int fd_number;
      if (!absl::SimpleAtoi(entry->d_name, &fd_number) || fd_number < 0) {
        continue;  // "." and "..".
      }
      // The link text is "socket:[INODE]" for sockets; anything else (files,
      // pipes, "anon_inode:...") is not ours. The fd may be closed between
      // readdir() and readlinkat(); that is ENOENT, skipped.
      char link[64];
      const ssize_t n = readlinkat(dir_fd, entry->d_name, link, sizeof(link));
      if (n <= 0 || static_cast<size_t>(n) >= sizeof(link)) continue;
      std::string_view target(link, static_cast<size_t>(n));
      if (target.size() < kPrefix.size() + 2 ||
          target.substr(0, kPrefix.size()) != kPrefix || target.back() != ']') {
        continue;
      }
      target.remove_prefix(kPrefix.size());
      target.remove_suffix(1);
      uint64_t inode;
      if (!absl::SimpleAtoi(absl::string_view(target.data(), target.size()),
                            &inode) ||
          !inodes.contains(inode)) {
        continue;
      }
      owners[inode].push_back(FdOwner{pid, fd_number});
    }
    closedir(dir);
  }
  return owners;
}

}  // namespace closeaudit
