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
#include <tuple>
#include <string_view>
#include <utility>
#include <vector>

#include "collector/analyzer.h"

namespace closeaudit {

Analyzer::Fate Analyzer::FateOf(const Socket& s, uint64_t horizon,
                                uint64_t grace) const {
  if (s.holds.size() != 1 || s.time_wait_example || s.took_a_held_number) {
    return Fate::kKeep;
  }
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

std::pair<uint32_t, uint32_t> Analyzer::StackNames::operator()(
    uint32_t stack, uint32_t stream) const {
  if (stack == 0) return {0, 0};
  if (auto it = in_stream_.find(std::pair(stream, stack)); it != in_stream_.end()) {
    return {stream, it->second};
  }
  auto it = anywhere_.find(stack);
  return it != anywhere_.end() ? it->second : std::pair<uint32_t, uint32_t>{0, 0};
}

Analyzer::StackNames Analyzer::NameStacks() const {
  StackNames names;
  for (uint32_t id : stream_order_) {
    for (const auto& [ref, stack] : streams_.at(id).stacks) {
      names.in_stream_.try_emplace(std::pair(id, stack), ref);
      names.anywhere_.try_emplace(stack, id, ref);
    }
  }
  return names;
}

std::optional<FoldRecord::LastClose> Analyzer::LastCloseOf(uint32_t stream,
                                                           int fd) const {
  auto s = streams_.find(stream);
  if (s == streams_.end()) return std::nullopt;
  auto it = s->second.last_close.find(fd);
  if (it == s->second.last_close.end()) return std::nullopt;
  const Stream::LastClose& c = it->second;
  return FoldRecord::LastClose{stream, fd, c.cookie, c.ns, c.stack, c.tid, c.reopened};
}

std::vector<FoldRecord> Analyzer::FoldRecords(int64_t events) const {
  const StackNames name = NameStacks();
  // Split so that no record comes near a frame's limit.
  constexpr size_t kRecordBytes = 256 << 10;
  std::vector<FoldRecord> out(1);
  size_t bytes = 0;
  auto room = [&](size_t more) -> FoldRecord& {
    if (bytes + more > kRecordBytes) {
      out.emplace_back();
      bytes = 0;
    }
    bytes += more;
    return out.back();
  };
  FoldRecord& head = out.front();
  head.grace_ns = options_.grace_ns.value_or(run_.grace_ns);
  head.latest_ns = latest_ns_;
  head.sockets = folded_;
  head.events = compacted_events_ + events;
  head.streams.assign(folded_streams_.begin(), folded_streams_.end());
  std::sort(head.streams.begin(), head.streams.end());
  bytes = head.streams.size() * 4;
  for (const auto& [stack, fold] : time_wait_folds_) {
    FoldRecord::TimeWait tw;
    std::tie(tw.stream, tw.ref) = name(stack, fold.first_stream);
    tw.count = fold.count;
    tw.first_ns = fold.first_ns;
    tw.first_stream = fold.first_stream;
    size_t size = 32;
    for (const auto& [host, n] : fold.peers) {
      tw.peers.emplace_back(host, n);
      size += 12 + host.size();
    }
    std::sort(tw.peers.begin(), tw.peers.end());
    room(size).time_wait.push_back(std::move(tw));
  }
  for (const auto& [stream, load] : folded_load_) {
    room(24 + 16 * load.open.size())
        .loads.push_back({stream, load.origin, load.width, load.open,
                          load.close_wait});
  }
  for (uint32_t id : stream_order_) {
    const Stream& s = streams_.at(id);
    if (s.exited || s.replaced) continue;
    for (const auto& [fd, c] : s.last_close) {
      room(33).last_closes.push_back(
          {id, fd, c.cookie, c.ns, name(c.stack, id).second, c.tid, c.reopened});
    }
  }
  return out;
}

void Analyzer::OnFold(const FoldRecord& f) {
  if (f.grace_ns != 0) compacted_grace_ = f.grace_ns;
  latest_ns_ = std::max(latest_ns_, f.latest_ns);
  folded_ += f.sockets;
  events_ += f.events;
  compacted_events_ += f.events;
  compacted_sockets_ += f.sockets;
  folded_streams_.insert(f.streams.begin(), f.streams.end());
  auto stack_of = [this](uint32_t stream, uint32_t ref) -> uint32_t {
    auto s = streams_.find(stream);
    if (s == streams_.end()) return 0;
    auto it = s->second.stacks.find(ref);
    return it != s->second.stacks.end() ? it->second : 0;
  };
  for (const FoldRecord::TimeWait& tw : f.time_wait) {
    TimeWaitFold& t = time_wait_folds_[stack_of(tw.stream, tw.ref)];
    t.count += tw.count;
    if (tw.first_ns < t.first_ns) {
      t.first_ns = tw.first_ns;
      t.first_stream = tw.first_stream;
    }
    for (const auto& [host, n] : tw.peers) t.peers[host] += n;
  }
  for (const FoldRecord::Load& l : f.loads) {
    MergeLoad(folded_load_[l.stream], {l.origin, l.width, l.open, l.close_wait});
  }
  // The state the compacted part left, whatever its kept records made of it.
  for (const FoldRecord::LastClose& c : f.last_closes) {
    auto s = streams_.find(c.stream);
    if (s == streams_.end()) continue;
    Stream::LastClose& last = s->second.last_close[c.fd];
    last.cookie = c.cookie;
    last.ns = c.ns;
    last.stack = stack_of(c.stream, c.ref);
    last.tid = c.tid;
    last.reopened = c.reopened;
  }
}

}  // namespace closeaudit
