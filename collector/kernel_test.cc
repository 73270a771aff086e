#include "collector/kernel.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

// ---- Helpers for real sockets ----

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

uint64_t SocketCookie(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len), 0)
      << strerror(errno);
  return cookie;
}

uint64_t SocketInode(int fd) {
  struct stat st = {};
  EXPECT_EQ(fstat(fd, &st), 0) << strerror(errno);
  return st.st_ino;
}

// "127.0.0.1:N" / "[::1]:N" for a bound socket's own or peer address.
std::string Endpoint(int fd, bool peer) {
  sockaddr_storage ss = {};
  socklen_t len = sizeof(ss);
  const int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                      : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  EXPECT_EQ(rc, 0) << strerror(errno);
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    return absl::StrCat(text, ":", ntohs(sin->sin_port));
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
  return absl::StrCat("[", text, "]:", ntohs(sin6->sin6_port));
}

// A connected loopback pair: client, and the server's accepted socket.
struct Connection {
  Fd listener;
  Fd client;
  Fd accepted;
};

// Returns false if the address family is unavailable (no ::1).
bool Connect(int family, Connection* c) {
  sockaddr_storage ss = {};
  socklen_t len;
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*sin);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = in6addr_loopback;
    len = sizeof(*sin6);
  }
  c->listener.Reset(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (c->listener.get() < 0) return false;
  if (bind(c->listener.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return false;
  }
  EXPECT_EQ(listen(c->listener.get(), 4), 0) << strerror(errno);
  EXPECT_EQ(
      getsockname(c->listener.get(), reinterpret_cast<sockaddr*>(&ss), &len),
      0);
  c->client.Reset(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(connect(c->client.get(), reinterpret_cast<sockaddr*>(&ss), len), 0)
      << strerror(errno);
  c->accepted.Reset(accept4(c->listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_GE(c->accepted.get(), 0) << strerror(errno);
  return c->accepted.get() >= 0;
}

// Polls DumpTcpSockets(mask) for up to 10 s until a row matches.
template <typename Pred>
// It waits (no timing is asserted): on a busy machine with many sockets the
// dump can take a while.
std::optional<KernelSocket> WaitForSocket(uint32_t mask, Pred pred) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    absl::StatusOr<std::vector<KernelSocket>> rows = DumpTcpSockets(mask);
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return std::nullopt;
    for (const KernelSocket& row : *rows) {
      if (pred(row)) return row;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } while (std::chrono::steady_clock::now() < deadline);
  return std::nullopt;
}

void CheckCloseWait(int family) {
  Connection c;
  if (!Connect(family, &c)) {
    if (family == AF_INET6) GTEST_SKIP() << "::1 unavailable";
    FAIL() << "cannot set up a loopback connection";
  }
  const std::string server = Endpoint(c.accepted.get(), /*peer=*/false);
  const std::string client = Endpoint(c.accepted.get(), /*peer=*/true);
  ASSERT_EQ(Endpoint(c.client.get(), false), client);
  const uint64_t cookie = SocketCookie(c.accepted.get());
  const uint64_t inode = SocketInode(c.accepted.get());
  ASSERT_NE(cookie, 0u);
  // Generating the client's cookie now makes it stick: the orphan, and the
  // timewait minisocket that replaces it, inherit sk_cookie.
  const uint64_t client_cookie = SocketCookie(c.client.get());

  c.client.Reset();  // Client sends FIN: accepted -> CLOSE_WAIT.

  std::optional<KernelSocket> row =
      WaitForSocket(StateBit(kTcpCloseWait),
                    [&](const KernelSocket& s) { return s.cookie == cookie; });
  ASSERT_TRUE(row.has_value()) << "CLOSE_WAIT socket not seen";
  EXPECT_EQ(row->state, 8);
  EXPECT_STREQ(TcpStateName(row->state), "CLOSE_WAIT");
  EXPECT_EQ(row->family, family);
  EXPECT_EQ(row->local, server);
  EXPECT_EQ(row->peer, client);
  EXPECT_EQ(row->inode, inode);
  EXPECT_EQ(row->uid, geteuid());
  // The peer's FIN takes a sequence number, and idiag_rqueue is
  // rcv_nxt - copied_seq, so an unread EOF counts as one queued byte...
  EXPECT_EQ(row->recv_queue, 1u);
  EXPECT_EQ(row->send_queue, 0u);

  // ...until the application reads the EOF.
  char byte;
  ASSERT_EQ(read(c.accepted.get(), &byte, 1), 0);
  absl::StatusOr<std::vector<KernelSocket>> after =
      DumpTcpSockets(StateBit(kTcpCloseWait));
  ASSERT_TRUE(after.ok()) << after.status();
  bool found = false;
  for (const KernelSocket& s : *after) {
    if (s.cookie != cookie) continue;
    found = true;
    EXPECT_EQ(s.recv_queue, 0u);
  }
  EXPECT_TRUE(found);

  // The client closed with everything acknowledged: an orphan in FIN_WAIT2
  // (typically already a timewait minisocket with sub-state FIN_WAIT2).
  std::optional<KernelSocket> orphan =
      WaitForSocket(StateBit(kTcpFinWait2), [&](const KernelSocket& s) {
        return s.local == client && s.peer == server;
      });
  ASSERT_TRUE(orphan.has_value()) << "FIN_WAIT2 client not seen";
  EXPECT_EQ(orphan->state, kTcpFinWait2);
  EXPECT_EQ(orphan->family, family);
  EXPECT_EQ(orphan->inode, 0u);
  EXPECT_EQ(orphan->cookie, client_cookie);

  // Asking only for CLOSE_WAIT does not return the FIN_WAIT2 side.
  absl::StatusOr<std::vector<KernelSocket>> rows =
      DumpTcpSockets(StateBit(kTcpCloseWait));
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (const KernelSocket& s : *rows) {
    EXPECT_EQ(s.state, kTcpCloseWait);
    EXPECT_FALSE(s.local == client && s.peer == server);
  }
}

// One socket looked up by its endpoints and cookie, as the sweeps between
// two dumps do: its state whatever it is, and nothing for a cookie or
// endpoints that are not its own.
void CheckLookup(int family) {
  Connection c;
  if (!Connect(family, &c)) {
    if (family == AF_INET6) GTEST_SKIP() << "::1 unavailable";
    FAIL() << "cannot set up a loopback connection";
  }
  const std::string server = Endpoint(c.accepted.get(), false);
  const std::string client = Endpoint(c.accepted.get(), true);
  const uint64_t cookie = SocketCookie(c.accepted.get());
  const uint64_t client_cookie = SocketCookie(c.client.get());
  std::optional<SocketKey> key = KeyFromEndpoints(cookie, server, client);
  ASSERT_TRUE(key.has_value());
  std::optional<SocketKey> client_key =
      KeyFromEndpoints(client_cookie, client, server);
  ASSERT_TRUE(client_key.has_value());
  SocketKey stale = *key;
  stale.cookie = cookie + 1000;  // another socket's, once, perhaps
  SocketKey elsewhere = *key;
  elsewhere.peer_port = static_cast<uint16_t>(elsewhere.peer_port ^ 1);

  absl::StatusOr<std::vector<KernelSocket>> rows =
      LookupTcpSockets({stale, *key, elsewhere, *client_key});
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].cookie, cookie);
  EXPECT_EQ((*rows)[0].state, kTcpEstablished);
  EXPECT_EQ((*rows)[0].local, server);
  EXPECT_EQ((*rows)[0].peer, client);
  EXPECT_EQ((*rows)[0].inode, SocketInode(c.accepted.get()));
  EXPECT_EQ((*rows)[1].cookie, client_cookie);

  c.client.Reset();  // the server's end: CLOSE_WAIT, the client's FIN_WAIT2
  bool seen = false;
  for (int i = 0; i < 1000 && !seen; ++i) {
    rows = LookupTcpSockets({*key, *client_key});
    ASSERT_TRUE(rows.ok()) << rows.status();
    seen = rows->size() == 2 && (*rows)[0].state == kTcpCloseWait &&
           (*rows)[1].state == kTcpFinWait2;
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(seen) << "CLOSE_WAIT and FIN_WAIT2 not seen by lookup";
  EXPECT_EQ((*rows)[0].recv_queue, 1u);  // the unread EOF

  // The server closes too: its end goes (LAST_ACK, then nothing), the
  // client's becomes TIME_WAIT, still found under its cookie.
  c.accepted.Reset();
  bool gone = false;
  for (int i = 0; i < 1000 && !gone; ++i) {
    rows = LookupTcpSockets({*key, *client_key});
    ASSERT_TRUE(rows.ok()) << rows.status();
    gone = rows->size() == 1 && (*rows)[0].cookie == client_cookie &&
           (*rows)[0].state == kTcpTimeWait;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone) << "the closed server end was still found";
}

TEST(Kernel, LookupIPv4) { CheckLookup(AF_INET); }

TEST(Kernel, LookupIPv6) { CheckLookup(AF_INET6); }

TEST(Kernel, LookupNothing) {
  absl::StatusOr<std::vector<KernelSocket>> rows = LookupTcpSockets({});
  ASSERT_TRUE(rows.ok());
  EXPECT_TRUE(rows->empty());
}

// More keys than one batch holds, none of them there: every answer is read,
// none is taken for the next batch's.
TEST(Kernel, LookupManyBatches) {
  std::vector<SocketKey> keys;
  for (int i = 0; i < 300; ++i) {
    std::optional<SocketKey> k = KeyFromEndpoints(
        1 + i, "127.0.0.1:1", absl::StrCat("127.0.0.1:", 2 + i));
    ASSERT_TRUE(k.has_value());
    keys.push_back(*k);
  }
  Connection c;
  ASSERT_TRUE(Connect(AF_INET, &c));
  std::optional<SocketKey> real =
      KeyFromEndpoints(SocketCookie(c.client.get()), Endpoint(c.client.get(), false),
                       Endpoint(c.client.get(), true));
  ASSERT_TRUE(real.has_value());
  keys.push_back(*real);
  absl::StatusOr<std::vector<KernelSocket>> rows = LookupTcpSockets(keys);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].cookie, real->cookie);
}

TEST(Kernel, KeyFromEndpointsReadsWhatFormatEndpointWrites) {
  std::optional<SocketKey> k = KeyFromEndpoints(7, "10.1.2.3:80", "[::1]:9");
  EXPECT_FALSE(k.has_value());  // two families
  for (const char* bad : {"", ":80", "1.2.3.4", "1.2.3.4:65536", "[::1:80",
                          "1.2.3.4:x", "[zz]:1"}) {
    EXPECT_FALSE(KeyFromEndpoints(7, bad, "1.2.3.4:5").has_value()) << bad;
  }
  k = KeyFromEndpoints(7, "[::ffff:127.0.0.1]:8080", "[::1]:9");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->family, AF_INET6);
  EXPECT_EQ(k->local_port, 8080);
  EXPECT_EQ(FormatEndpoint(AF_INET6, k->local, k->local_port),
            "[::ffff:127.0.0.1]:8080");
  EXPECT_EQ(FormatEndpoint(AF_INET6, k->peer, k->peer_port), "[::1]:9");
  k = KeyFromEndpoints(7, "10.1.2.3:80", "127.0.0.1:65535");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->family, AF_INET);
  EXPECT_EQ(FormatEndpoint(AF_INET, k->local, k->local_port), "10.1.2.3:80");
  EXPECT_EQ(FormatEndpoint(AF_INET, k->peer, k->peer_port), "127.0.0.1:65535");
}

TEST(Kernel, CloseWaitIPv4) { CheckCloseWait(AF_INET); }

TEST(Kernel, CloseWaitIPv6) { CheckCloseWait(AF_INET6); }

TEST(Kernel, ListenerAndEstablished) {
  Connection c;
  ASSERT_TRUE(Connect(AF_INET, &c));
  const uint64_t listener_cookie = SocketCookie(c.listener.get());
  const uint64_t accepted_cookie = SocketCookie(c.accepted.get());
  absl::StatusOr<std::vector<KernelSocket>> rows =
      DumpTcpSockets(StateBit(kTcpListen) | StateBit(kTcpEstablished));
  ASSERT_TRUE(rows.ok()) << rows.status();
  bool saw_listener = false, saw_accepted = false;
  for (const KernelSocket& s : *rows) {
    if (s.cookie == listener_cookie) {
      saw_listener = true;
      EXPECT_EQ(s.state, kTcpListen);
      EXPECT_EQ(s.inode, SocketInode(c.listener.get()));
    }
    if (s.cookie == accepted_cookie) {
      saw_accepted = true;
      EXPECT_EQ(s.state, kTcpEstablished);
    }
  }
  EXPECT_TRUE(saw_listener);
  EXPECT_TRUE(saw_accepted);
}

TEST(Kernel, EmptyMaskIsEmpty) {
  absl::StatusOr<std::vector<KernelSocket>> rows = DumpTcpSockets(0);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_TRUE(rows->empty());
}

// Documents kernel behaviour the collector can rely on: the timewait
// minisocket left by the active closer carries the cookie the full socket had
// (inet_twsk_alloc() copies sk_cookie), provided the cookie had been
// generated before close, as SO_COOKIE does.
TEST(Kernel, TimeWaitKeepsCookie) {
  Connection c;
  ASSERT_TRUE(Connect(AF_INET, &c));
  const std::string server = Endpoint(c.accepted.get(), false);
  const std::string client = Endpoint(c.accepted.get(), true);
  const uint64_t cookie = SocketCookie(c.accepted.get());

  c.accepted.Reset();  // Server closes first: the active closer.
  ASSERT_TRUE(
      WaitForSocket(StateBit(kTcpCloseWait), [&](const KernelSocket& s) {
        return s.local == client && s.peer == server;
      }).has_value());
  c.client.Reset();  // Client's FIN: server FIN_WAIT2 -> TIME_WAIT.

  std::optional<KernelSocket> row =
      WaitForSocket(StateBit(kTcpTimeWait), [&](const KernelSocket& s) {
        return s.local == server && s.peer == client;
      });
  ASSERT_TRUE(row.has_value()) << "TIME_WAIT socket not seen";
  EXPECT_EQ(row->state, kTcpTimeWait);
  EXPECT_EQ(row->inode, 0u);
  EXPECT_EQ(row->cookie, cookie);
}

TEST(Kernel, FindSocketOwners) {
  Connection c;
  ASSERT_TRUE(Connect(AF_INET, &c));
  const uint64_t inode = SocketInode(c.accepted.get());
  const uint64_t client_inode = SocketInode(c.client.get());
  const uint32_t self = static_cast<uint32_t>(getpid());
  // Beyond any pid_max (at most 2^22), so certainly no such process.
  const uint32_t missing = 0x7ffffff0u;

  absl::flat_hash_map<uint64_t, std::vector<FdOwner>> owners = FindSocketOwners(
      {missing, self, self, 0}, {inode, client_inode, uint64_t{1} << 60});
  ASSERT_TRUE(owners.contains(inode));
  ASSERT_EQ(owners[inode].size(), 1u);
  EXPECT_EQ(owners[inode][0].pid, self);
  EXPECT_EQ(owners[inode][0].fd, c.accepted.get());
  ASSERT_TRUE(owners.contains(client_inode));
  EXPECT_EQ(owners[client_inode][0].fd, c.client.get());
  EXPECT_FALSE(owners.contains(uint64_t{1} << 60));
  EXPECT_EQ(owners.size(), 2u);

  EXPECT_TRUE(FindSocketOwners({missing}, {inode}).empty());
  EXPECT_TRUE(FindSocketOwners({self}, {}).empty());
}

TEST(Kernel, TcpStateName) {
  EXPECT_STREQ(TcpStateName(8), "CLOSE_WAIT");
  EXPECT_STREQ(TcpStateName(1), "ESTABLISHED");
  EXPECT_STREQ(TcpStateName(6), "TIME_WAIT");
  EXPECT_STREQ(TcpStateName(10), "LISTEN");
  EXPECT_STREQ(TcpStateName(12), "NEW_SYN_RECV");
  EXPECT_STREQ(TcpStateName(0), "UNKNOWN");
  EXPECT_STREQ(TcpStateName(13), "UNKNOWN");
  EXPECT_STREQ(TcpStateName(99), "UNKNOWN");
  EXPECT_STREQ(TcpStateName(-1), "UNKNOWN");
  EXPECT_EQ(StateBit(kTcpCloseWait), 0x100u);
}

// ---- ParseDiagMessages on synthetic bytes ----

// One netlink message: header + payload, padded to NLMSG_ALIGNTO. nlmsg_len
// is the real length unless `len` overrides it.
std::string Message(uint16_t type, const std::string& payload,
                    std::optional<uint32_t> len = std::nullopt) {
  nlmsghdr h = {};
  h.nlmsg_len = len.value_or(sizeof(h) + payload.size());
  h.nlmsg_type = type;
  h.nlmsg_flags = NLM_F_MULTI;
  std::string out(reinterpret_cast<const char*>(&h), sizeof(h));
  out += payload;
  out.resize(NLMSG_ALIGN(out.size()), '\0');
  return out;
}

template <typename T>
std::string Bytes(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(v));
}

std::string DiagV4(uint32_t inode, uint8_t state) {
  inet_diag_msg m = {};
  m.idiag_family = AF_INET;
  m.idiag_state = state;
  m.id.idiag_sport = htons(8080);
  m.id.idiag_dport = htons(40000);
  m.id.idiag_src[0] = htonl(INADDR_LOOPBACK);
  m.id.idiag_dst[0] = htonl(0x0a000001);  // 10.0.0.1
  m.id.idiag_cookie[0] = 0x11223344;
  m.id.idiag_cookie[1] = 0x55667788;
  m.idiag_inode = inode;
  m.idiag_uid = 1000;
  m.idiag_rqueue = 7;
  m.idiag_wqueue = 9;
  return Bytes(m);
}

// Parses from an exactly-sized heap copy, so ASan flags any over-read.
absl::Status Parse(const std::string& bytes, std::vector<KernelSocket>* out,
                   bool* done) {
  std::unique_ptr<char[]> copy(new char[bytes.size()]);
  std::memcpy(copy.get(), bytes.data(), bytes.size());
  return ParseDiagMessages(std::string_view(copy.get(), bytes.size()), out,
                           done);
}

TEST(Kernel, ParseWellFormed) {
  inet_diag_msg v6 = {};
  v6.idiag_family = AF_INET6;
  v6.idiag_state = kTcpCloseWait;
  v6.id.idiag_sport = htons(443);
  v6.id.idiag_dport = htons(51000);
  std::memcpy(v6.id.idiag_src, &in6addr_loopback, 16);
  std::memcpy(v6.id.idiag_dst, &in6addr_loopback, 16);
  // Trailing attribute bytes after the fixed header are ignored.
  const std::string bytes =
      Message(SOCK_DIAG_BY_FAMILY, DiagV4(42, 8)) +
      Message(SOCK_DIAG_BY_FAMILY, Bytes(v6) + std::string(8, '\x01')) +
      Message(NLMSG_DONE, Bytes(0)) + Message(SOCK_DIAG_BY_FAMILY, "ignored");
  std::vector<KernelSocket> out;
  bool done = false;
  ASSERT_TRUE(Parse(bytes, &out, &done).ok());
  EXPECT_TRUE(done);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].cookie, 0x5566778811223344u);
  EXPECT_EQ(out[0].inode, 42u);
  EXPECT_EQ(out[0].state, 8);
  EXPECT_EQ(out[0].family, AF_INET);
  EXPECT_EQ(out[0].local, "127.0.0.1:8080");
  EXPECT_EQ(out[0].peer, "10.0.0.1:40000");
  EXPECT_EQ(out[0].uid, 1000u);
  EXPECT_EQ(out[0].recv_queue, 7u);
  EXPECT_EQ(out[0].send_queue, 9u);
  EXPECT_EQ(out[1].family, AF_INET6);
  EXPECT_EQ(out[1].local, "[::1]:443");
  EXPECT_EQ(out[1].peer, "[::1]:51000");

  // A buffer without NLMSG_DONE: more parts to come.
  out.clear();
  ASSERT_TRUE(
      Parse(Message(SOCK_DIAG_BY_FAMILY, DiagV4(1, 1)), &out, &done).ok());
  EXPECT_FALSE(done);
  EXPECT_EQ(out.size(), 1u);

  // NLMSG_DONE without a status payload, and NLMSG_NOOP, are fine.
  ASSERT_TRUE(
      Parse(Message(NLMSG_NOOP, "") + Message(NLMSG_DONE, ""), &out, &done)
          .ok());
  EXPECT_TRUE(done);
}

TEST(Kernel, ParseEmpty) {
  std::vector<KernelSocket> out;
  bool done = true;
  EXPECT_TRUE(ParseDiagMessages("", &out, &done).ok());
  EXPECT_FALSE(done);
  EXPECT_TRUE(out.empty());
}

TEST(Kernel, ParseMalformed) {
  std::vector<KernelSocket> out;
  bool done = false;
  const std::string good = Message(SOCK_DIAG_BY_FAMILY, DiagV4(1, 8));

  // Truncated nlmsghdr, alone and after a good message.
  EXPECT_EQ(Parse(good.substr(0, 10), &out, &done).code(),
            absl::StatusCode::kInvalidArgument);
  out.clear();
  EXPECT_EQ(Parse(good + good.substr(0, 10), &out, &done).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.size(), 1u);  // The good one before the damage is kept.
  out.clear();

  // nlmsg_len larger than the buffer.
  EXPECT_EQ(Parse(Message(SOCK_DIAG_BY_FAMILY, DiagV4(1, 8), good.size() + 1),
                  &out, &done)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse(Message(NLMSG_DONE, "", UINT32_MAX), &out, &done).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(done);
  // The whole message minus its last byte.
  EXPECT_EQ(Parse(good.substr(0, good.size() - 1), &out, &done).code(),
            absl::StatusCode::kInvalidArgument);

  // nlmsg_len smaller than the header (0 would loop forever if trusted).
  for (uint32_t len : {0u, 1u, 15u}) {
    EXPECT_EQ(
        Parse(Message(SOCK_DIAG_BY_FAMILY, DiagV4(1, 8), len), &out, &done)
            .code(),
        absl::StatusCode::kInvalidArgument)
        << len;
  }

  // A SOCK_DIAG_BY_FAMILY payload shorter than inet_diag_msg.
  EXPECT_EQ(Parse(Message(SOCK_DIAG_BY_FAMILY, DiagV4(1, 8).substr(0, 20)),
                  &out, &done)
                .code(),
            absl::StatusCode::kInvalidArgument);

  // Unknown address family and unknown message type.
  std::string bad_family = DiagV4(1, 8);
  bad_family[0] = AF_UNIX;
  EXPECT_EQ(Parse(Message(SOCK_DIAG_BY_FAMILY, bad_family), &out, &done).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse(Message(0x1234, "x"), &out, &done).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse(Message(NLMSG_OVERRUN, ""), &out, &done).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(out.empty());
}

TEST(Kernel, ParseNetlinkErrors) {
  std::vector<KernelSocket> out;
  bool done = false;

  nlmsgerr err = {};
  err.error = -EPERM;
  absl::Status status = Parse(Message(NLMSG_ERROR, Bytes(err)), &out, &done);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;

  // Just the int, without the echoed request, still reports the errno.
  status = Parse(Message(NLMSG_ERROR, Bytes(-ENOENT)), &out, &done);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;

  // Too short to hold the error code.
  status = Parse(Message(NLMSG_ERROR, "ab"), &out, &done);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;

  // Nonsense error codes, including one that cannot be negated.
  for (int code : {INT_MIN, -5000, 17}) {
    status = Parse(Message(NLMSG_ERROR, Bytes(code)), &out, &done);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << code;
  }

  // Error 0 is an ACK: not an error.
  EXPECT_TRUE(Parse(Message(NLMSG_ERROR, Bytes(0)) + Message(NLMSG_DONE, ""),
                    &out, &done)
                  .ok());
  EXPECT_TRUE(done);

  // A dump that failed part-way reports it in NLMSG_DONE.
  status = Parse(Message(NLMSG_DONE, Bytes(-ENOBUFS)), &out, &done);
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(done);
  EXPECT_TRUE(out.empty());
}

// An answer to a single-socket request: Message() with its sequence number.
std::string Answer(uint16_t type, const std::string& payload, uint32_t seq) {
  std::string out = Message(type, payload);
  nlmsghdr h;
  std::memcpy(&h, out.data(), sizeof(h));
  h.nlmsg_flags = 0;
  h.nlmsg_seq = seq;
  std::memcpy(out.data(), &h, sizeof(h));
  return out;
}

absl::Status ParseAnswers(const std::string& bytes, uint32_t first, uint32_t last,
                          std::vector<KernelSocket>* out, size_t* answered) {
  std::unique_ptr<char[]> copy(new char[bytes.size()]);
  std::memcpy(copy.get(), bytes.data(), bytes.size());
  return ParseLookupAnswers(std::string_view(copy.get(), bytes.size()), first,
                            last, out, answered);
}

TEST(Kernel, ParseLookupAnswersCountsEachAnswerOfTheBatch) {
  std::vector<KernelSocket> out;
  size_t answered = 0;
  // Found, gone (ENOENT), another socket on its endpoints now (ESTALE), and
  // one for a request of an earlier batch, which is not counted.
  std::string bytes = Answer(SOCK_DIAG_BY_FAMILY, DiagV4(5, kTcpCloseWait), 10) +
                      Answer(NLMSG_ERROR, Bytes(-ENOENT), 11) +
                      Answer(NLMSG_ERROR, Bytes(-ESTALE), 12) +
                      Answer(SOCK_DIAG_BY_FAMILY, DiagV4(6, kTcpCloseWait), 3);
  ASSERT_TRUE(ParseAnswers(bytes, 10, 12, &out, &answered).ok());
  EXPECT_EQ(answered, 3u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].inode, 5u);
  EXPECT_EQ(out[0].local, "127.0.0.1:8080");

  // Any other error is the lookup's.
  absl::Status status =
      ParseAnswers(Answer(NLMSG_ERROR, Bytes(-EPERM), 10), 10, 12, &out, &answered);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  // Malformed: a length past the datagram, a short error, a stranger type.
  std::string longer = Answer(NLMSG_ERROR, Bytes(-ENOENT), 10);
  longer[0] = static_cast<char>(longer.size() + 4);
  for (const std::string& bad :
       {longer, Answer(NLMSG_ERROR, "ab", 10), Answer(NLMSG_DONE, Bytes(0), 10),
        Answer(SOCK_DIAG_BY_FAMILY, "short", 10)}) {
    answered = 0;
    out.clear();
    status = ParseAnswers(bad, 10, 12, &out, &answered);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_EQ(answered, 0u);
    EXPECT_TRUE(out.empty());
  }
}

// Garbage in, an error or rows out, never a crash or an out-of-bounds read.
TEST(Kernel, ParseRandomBytes) {
  std::mt19937 rng(20240611);
  const std::string seed_messages = Message(SOCK_DIAG_BY_FAMILY, DiagV4(5, 8)) +
                                    Message(NLMSG_ERROR, Bytes(-EPERM)) +
                                    Message(NLMSG_DONE, Bytes(0));
  int ok = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string bytes;
    if (i % 2 == 0) {
      // Pure noise.
      bytes.resize(rng() % 300);
      for (char& c : bytes) c = static_cast<char>(rng());
    } else {
      // Valid messages with a few bytes flipped and a random cut: reaches
      // deeper than noise, whose first nlmsg_len is almost always bad.
      bytes = seed_messages;
      for (int flips = 1 + rng() % 4; flips > 0; --flips) {
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
      }
      bytes.resize(rng() % (bytes.size() + 1));
    }
    std::vector<KernelSocket> out;
    bool done = false;
    if (Parse(bytes, &out, &done).ok()) ++ok;
    for (const KernelSocket& s : out) {
      EXPECT_TRUE(s.family == AF_INET || s.family == AF_INET6);
    }
  }
  EXPECT_GT(ok, 0);
}

}  // namespace
}  // namespace closeaudit

namespace closeaudit {
namespace {

// The shim's addresses and the kernel's go through this one spelling, so the
// same socket reads the same in every report.
TEST(Kernel, FormatEndpointSpellsAddressesOneWay) {
  const uint8_t v4[4] = {127, 0, 0, 1};
  EXPECT_EQ(FormatEndpoint(AF_INET, v4, 8080), "127.0.0.1:8080");
  const uint8_t ends[4] = {0, 255, 10, 200};
  EXPECT_EQ(FormatEndpoint(AF_INET, ends, 0), "0.255.10.200:0");
  EXPECT_EQ(FormatEndpoint(AF_INET, ends, 65535), "0.255.10.200:65535");
  uint8_t v6[16] = {};
  v6[15] = 1;
  EXPECT_EQ(FormatEndpoint(AF_INET6, v6, 443), "[::1]:443");
}

}  // namespace
}  // namespace closeaudit
