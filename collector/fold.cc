// Analyzer::Fold(): letting go of the sockets that can no longer change any
// finding, so that a long run's registry follows what is open, not what has
// ever been.
//
// Which sockets go is decided by the rules of collector/findings.cc, taken
// the other way round: a socket goes only when no rule there can pick it,
// whatever happens later, and only a kind of socket every long run makes
// by the million: made by one process (socket() or accept()), closed by
// it, with nothing the kernel showed of it. Everything rarer stays.
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "collector/analyzer.h"

namespace closeaudit {

Analyzer::Fate Analyzer::FateOf(const Socket& s, uint64_t horizon,
                                uint64_t grace) const {
  if (s.holds.size() != 1 || s.time_wait_example) return Fate::kKeep;
  const Hold& h = s.holds.front();
  // Closed by the process that made it, long enough ago that no record of
  // another process can still be on its way.
  if (h.end != End::kClose || h.origin != Origin::kCreated || h.to > horizon) {
    return Fate::kKeep;
  }
  // Accepted sockets name their listener by index.
  if (s.state & wire::kStateListening) return Fate::kKeep;
  // abortive_close
  if ((h.close_state & wire::kStateLinger0) || s.linger_stack != 0) {
    return Fate::kKeep;
  }
  // What the kernel showed of it: close_wait_leak (never read), the
  // confirmations, and the state examples give.
  if (s.detail != 0) {
    const SocketDetail& d = details_[s.detail];
    if (d.kernel_close_wait_ns != 0 || d.kernel_fin_wait2_ns != 0 ||
        d.kernel_state != 0 || !d.kernel_owners.empty()) {
      return Fate::kKeep;
    }
  }
  // close_wait_leak: closed more than the grace period after the EOF.
  if (s.eof_ns != 0 && (s.flags & wire::kFlagStream) && h.to >= s.eof_ns &&
      h.to - s.eof_ns > grace) {
    return Fate::kKeep;
  }
  // fin_wait2_held: still open when the grace after its shutdown ran out,
  // with no EOF by then.
  if (s.shutdown_ns != 0 && ConnectedStream(s)) {
    uint64_t deadline = s.shutdown_ns + grace;
    bool answered = s.eof_ns != 0 && s.eof_ns <= deadline;
    if (!answered && h.from <= deadline && h.to > deadline) return Fate::kKeep;
  }
  // time_wait: this side's FIN went first.
  if (FinFirst(s).ns != 0) return Fate::kTimeWait;
  // fork_held and exec_inherited need a second hold; bad_close keeps its
  // own records (Fold() keeps the sockets reused_fd names).
  return Fate::kNothing;
}

void Analyzer::Fold() {
  const uint64_t grace = options_.grace_ns.value_or(run_.grace_ns);
  // A program that could not be audited is reported from every socket
  // (collector/observations.cc).
  // The next pass once the registry has doubled: each socket is looked at
  // a bounded number of times on average.
  auto next = [this] {
    next_fold_ = options_.fold_at == 0
                     ? ~0u
                     : static_cast<uint32_t>(std::clamp<uint64_t>(
                           2ull * sockets_.size(), options_.fold_at, ~0u));
  };
  const uint64_t now = std::max(latest_ns_, have_end_ ? end_ns_ : 0);
  if (unaudited_ || now <= kFoldMarginNs) {
    next();
    return;
  }
  const uint64_t horizon = now - kFoldMarginNs;
  std::vector<uint64_t> cookies = sockets_.Cookies();
  SocketTable kept;
  std::vector<SocketDetail> details;
  details.emplace_back();
  // Old index -> 1 + new index, for the accepted sockets' listeners.
  std::vector<uint32_t> moved(sockets_.size(), 0);
  for (uint32_t i = 0; i < sockets_.size(); ++i) {
    Socket& s = sockets_.At(i);
    Fate fate = reuse_victims_.contains(cookies[i]) ? Fate::kKeep
                                                    : FateOf(s, horizon, grace);
    const Fin fin = fate == Fate::kTimeWait ? FinFirst(s) : Fin{};
    if (fate == Fate::kTimeWait) {
      uint32_t& examples = time_wait_examples_[fin.stack];
      if (examples < kMaxExamples) {
        ++examples;
        s.time_wait_example = true;
        fate = Fate::kKeep;
      }
    }
    if (fate == Fate::kKeep) {
      Socket& n = kept.Add(cookies[i]);
      n = std::move(s);
      if (n.detail != 0) {
        details.push_back(std::move(details_[n.detail]));
        n.detail = static_cast<uint32_t>(details.size() - 1);
      }
      moved[i] = kept.size();
      continue;
    }
    const Hold& h = s.holds.front();
    ++folded_;
    folded_streams_.insert(h.stream);
    FoldIntoTimeline(s);
    if (fate != Fate::kTimeWait) continue;
    TimeWaitFold& t = time_wait_folds_[fin.stack];
    ++t.count;
    if (fin.ns < t.first_ns) {
      t.first_ns = fin.ns;
      t.first_stream = fin.stream;
    }
    std::string_view peer = details_[s.detail].peer;
    ++t.peers[std::string(peer.empty() ? "unknown" : peer.substr(0, peer.rfind(':')))];
  }
  for (uint32_t i = 0; i < kept.size(); ++i) {
    Socket& s = kept.At(i);
    if (s.listener != 0) s.listener = moved[s.listener - 1];
  }
  sockets_ = std::move(kept);
  details_ = std::move(details);
  next();
}

}  // namespace closeaudit
