// What the kernel showed of the sockets of a program that could not be
// audited (statically linked, setuid, Go): Report::kernel_observations.
//
// Nothing of such a program's calls was seen, so nothing can say where a
// socket was made, read or left open. The kernel's samples (sock_diag, as
// `ss` shows them) still say which of its sockets sat in CLOSE_WAIT or
// FIN_WAIT2, and for how long: that is reported as it is, per process and
// state, without stacks and without advice.
#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

#include "collector/analyzer.h"
#include "collector/kernel.h"

namespace closeaudit {
namespace {

// Sockets listed per observation at most.
constexpr size_t kMaxSockets = 5;

int64_t Ms(uint64_t ns) { return static_cast<int64_t>(ns / 1000000); }

}  // namespace

void Analyzer::BuildKernelObservations(Report& report,
                                       uint64_t grace_ns) const {
  struct Seen {
    uint64_t first_ns;
    ObservedSocket socket;
  };
  // (pid, TCP state) -> the sockets the kernel showed in it.
  std::map<std::pair<uint32_t, int>, std::vector<Seen>> by_owner;
  auto add = [&](const Socket& s) {
    const SocketDetail& d = DetailOf(s);
    // Who held it: the owners the kernel sample found (sockets the shim
    // never saw), else the process that last held it.
    uint32_t pid = 0;
    int fd = -1;
    if (!d.kernel_owners.empty()) {
      std::tie(pid, fd) = d.kernel_owners.front();
    } else if (!s.holds.empty()) {
      auto stream = streams_.find(s.holds.back().stream);
      if (stream != streams_.end()) pid = stream->second.process.pid;
      fd = s.holds.back().fd;
    }
    if (pid == 0) return;
    const std::tuple<int, uint64_t, uint64_t> states[] = {
        {kTcpCloseWait, d.kernel_close_wait_ns, d.kernel_close_wait_last_ns},
        {kTcpFinWait2, d.kernel_fin_wait2_ns, d.kernel_fin_wait2_last_ns}};
    for (const auto& [state, first, last] : states) {
      // Sampled in the state for longer than the grace period: what the
      // findings of an audited run would call stuck.
      if (first == 0 || last - first <= grace_ns) continue;
      by_owner[{pid, state}].push_back(
          {first, {fd, d.local, d.peer, Ms(last - first)}});
    }
  };
  for (const Socket& s : sockets_) add(s);
  for (const auto& [inode, s] : untracked_) add(s);

  for (auto& [key, seen] : by_owner) {
    std::sort(seen.begin(), seen.end(), [](const Seen& x, const Seen& y) {
      return std::tie(x.first_ns, x.socket.fd) < std::tie(y.first_ns, y.socket.fd);
    });
    KernelObservation o;
    o.pid = key.first;
    o.tcp_state = TcpStateName(key.second);
    o.count = static_cast<int64_t>(seen.size());
    // The newest image under the pid names it.
    for (uint32_t id : stream_order_) {
      const Stream& stream = streams_.at(id);
      if (stream.process.pid == o.pid) o.exe = stream.process.exe;
    }
    for (const Seen& s : seen) {
      o.longest_ms = std::max(o.longest_ms, s.socket.seen_ms);
      if (o.sockets.size() < kMaxSockets) o.sockets.push_back(s.socket);
    }
    report.kernel_observations.push_back(std::move(o));
  }
}

}  // namespace closeaudit
