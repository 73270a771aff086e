// The collector's view of the kernel's TCP socket table, read over
// NETLINK_SOCK_DIAG (the inet_diag interface `ss` uses), plus the mapping
// from socket inodes back to the (pid, fd) pairs that hold them.
//
// Nothing here shells out or parses /proc/net/tcp: one netlink socket per
// dump, and /proc/PID/fd symlinks for ownership.
#ifndef CLOSEAUDIT_COLLECTOR_KERNEL_H_
#define CLOSEAUDIT_COLLECTOR_KERNEL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace closeaudit {

// TCP states as the kernel numbers them (include/net/tcp_states.h). These
// numbers are kernel ABI: inet_diag reports them in idiag_state and takes a
// bit mask of them (1 << state) in idiag_states.
inline constexpr int kTcpEstablished = 1;
inline constexpr int kTcpSynSent = 2;
inline constexpr int kTcpSynRecv = 3;
inline constexpr int kTcpFinWait1 = 4;
inline constexpr int kTcpFinWait2 = 5;
inline constexpr int kTcpTimeWait = 6;
inline constexpr int kTcpClose = 7;
inline constexpr int kTcpCloseWait = 8;
inline constexpr int kTcpLastAck = 9;
inline constexpr int kTcpListen = 10;
inline constexpr int kTcpClosing = 11;
inline constexpr int kTcpNewSynRecv = 12;

// "ESTABLISHED", "SYN_SENT", ..., "CLOSE_WAIT", ..., "NEW_SYN_RECV" for the
// states above; "UNKNOWN" for anything else. The result is a static string.
const char* TcpStateName(int state);

// "127.0.0.1:8080" or "[::1]:8080" for an IPv4 (4 bytes) or IPv6 (16 bytes)
// address in network order and a port in host order: the one spelling every
// report uses, whether the shim or the kernel supplied the address.
std::string FormatEndpoint(int family, const void* addr, unsigned port);

// The bit for `state` in a state mask (the kernel's TCPF_* values).
inline constexpr uint32_t StateBit(int state) { return 1u << state; }

// One row of the kernel's TCP socket table, as inet_diag reports it.
struct KernelSocket {
  // inet_diag_msg.id.idiag_cookie[0] | [1] << 32: the same 64-bit value
  // getsockopt(SO_COOKIE) returns for the socket. Unique for the life of the
  // system (a global counter), so usable as a key across dumps.
  //
  // The kernel assigns a cookie lazily, the first time anyone asks (SO_COOKIE
  // or a sock_diag dump), and then keeps it: the orphan and the timewait
  // minisocket that succeed a closed socket inherit it (inet_twsk_alloc()
  // copies sk_cookie). So a socket seen in one dump keeps its cookie through
  // FIN_WAIT2 and TIME_WAIT; one never asked about before close gets a fresh
  // cookie at its first dump.
  uint64_t cookie = 0;
  // idiag_inode: the socket's inode, as in "socket:[N]" under /proc/PID/fd
  // and fstat().st_ino. 0 for sockets no file refers to any more: TIME_WAIT
  // (and FIN_WAIT2 timewait) minisockets, orphans, request sockets.
  uint64_t inode = 0;
  int state = 0;   // idiag_state; see kTcp* above.
  int family = 0;  // AF_INET or AF_INET6.
  // "127.0.0.1:8080" or "[::1]:8080". An IPv6 socket talking IPv4 shows its
  // v4-mapped address ("[::ffff:127.0.0.1]:8080").
  std::string local;
  std::string peer;
  uint32_t uid = 0;  // idiag_uid: the socket's owner (0 for TIME_WAIT).
  // idiag_wqueue: bytes sent but not acknowledged, plus unsent ones. For
  // listeners: the accept queue limit (backlog).
  uint32_t send_queue = 0;
  // idiag_rqueue: received bytes not yet read. For non-listeners this is
  // rcv_nxt - copied_seq, and the peer's FIN takes a sequence number, so a
  // CLOSE_WAIT socket whose EOF the application has not read shows 1 (0 once
  // read() has returned 0). For listeners: the accept queue length.
  uint32_t recv_queue = 0;
};

// Dumps the TCP sockets (IPv4 and IPv6) whose state bit is set in
// `state_mask` (an OR of StateBit()), in the caller's network namespace.
//
// Opens one NETLINK_SOCK_DIAG socket per call and sends one
// SOCK_DIAG_BY_FAMILY / NLM_F_DUMP request per address family with
// idiag_states = state_mask, reading multi-part replies until NLMSG_DONE.
// Retries on EINTR; a reply that takes longer than a few seconds is
// DeadlineExceeded. NLMSG_ERROR replies become errors (EPERM etc.).
//
// The dump is not an atomic snapshot: the kernel walks its hash tables in
// chunks between our recv()s, so a socket created, closed or moved while the
// dump runs may be missing. Rows are de-duplicated by cookie and filtered to
// state_mask again on our side.
//
// Kernel behaviour relied upon: a timewait minisocket is reported, and
// matched against idiag_states, by its sub-state, so FIN_WAIT2 sockets that
// the kernel has already turned into timewait minisockets (an orphaned
// FIN_WAIT2 with the default tcp_fin_timeout) show up under FIN_WAIT2.
absl::StatusOr<std::vector<KernelSocket>> DumpTcpSockets(uint32_t state_mask);

// A TCP socket to look up by its endpoints, as the shim or a dump saw them,
// and its cookie.
struct SocketKey {
  uint64_t cookie = 0;
  int family = 0;  // AF_INET or AF_INET6
  uint8_t local[16] = {};  // network order; IPv4 in the first 4 bytes
  uint8_t peer[16] = {};
  uint16_t local_port = 0;  // host order
  uint16_t peer_port = 0;
};

// The key for the socket with these endpoints (FormatEndpoint()'s spelling)
// and this cookie; nullopt if either does not parse.
std::optional<SocketKey> KeyFromEndpoints(uint64_t cookie, std::string_view local,
                                          std::string_view peer);

// Looks each socket up on its own (a SOCK_DIAG_BY_FAMILY request without
// NLM_F_DUMP: the kernel finds it in its hash tables by the endpoints, and
// checks the cookie), and returns the rows of those found, in whatever
// state, TIME_WAIT minisockets included. A socket that is gone, or whose
// endpoints now belong to another socket, is not in the result. Unlike a
// dump, this costs the kernel nothing for the sockets not asked about, so
// a namespace full of TIME_WAIT sockets does not make it slower.
//
// Requests go in batches, each answered before the next is sent. Errors:
// as DumpTcpSockets(), and a kernel error other than "not found".
absl::StatusOr<std::vector<KernelSocket>> LookupTcpSockets(
    const std::vector<SocketKey>& keys);

// Parses one buffer of netlink replies to a sock_diag dump (what one recv()
// returned), appending each inet_diag_msg to *out and setting *done to
// whether NLMSG_DONE was seen (messages after it are ignored).
//
// Pure and total: any byte string is acceptable input. Every nlmsg_len is
// checked against the bytes remaining before anything is read, and every
// struct is copied out with memcpy, so unaligned or truncated input is safe.
// Attributes after the inet_diag_msg are not read (none are requested).
//
// Errors: InvalidArgument for malformed input (truncated header, nlmsg_len
// smaller than the header or past the end of the buffer, short payloads,
// unexpected message types or families), the errno of an NLMSG_ERROR or a
// negative NLMSG_DONE status. On error *out keeps whatever rows came before
// the bad message.
absl::Status ParseDiagMessages(std::string_view bytes,
                               std::vector<KernelSocket>* out, bool* done);

// Parses one datagram of the kernel's answers to single-socket requests
// (LookupTcpSockets) whose sequence numbers run first_seq..last_seq: the
// sockets found go to *out, and each answer, a socket or an error that says
// it is gone (ENOENT, ESTALE), adds one to *answered. Messages with other
// sequence numbers are skipped. Errors: InvalidArgument for malformed input,
// the errno of any other NLMSG_ERROR; *out keeps the rows before it.
absl::Status ParseLookupAnswers(std::string_view bytes, uint32_t first_seq,
                                uint32_t last_seq, std::vector<KernelSocket>* out,
                                size_t* answered);

// A process's file descriptor.
struct FdOwner {
  uint32_t pid;
  int fd;
};

// For each inode in `inodes`, the (pid, fd) pairs among `pids` whose
// /proc/PID/fd/N is a link to "socket:[inode]". Inodes no fd refers to are
// absent from the result. `pids` are process IDs; duplicates are ignored.
//
// Missing or unreadable /proc entries (the process has exited, the fd was
// closed while we looked, no permission to look) are skipped, not errors.
// The answer is a snapshot: descriptors can be closed, dup()ed or passed to
// other processes at any time.
absl::flat_hash_map<uint64_t, std::vector<FdOwner>> FindSocketOwners(
    const std::vector<uint32_t>& pids,
    const absl::flat_hash_set<uint64_t>& inodes);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_KERNEL_H_
