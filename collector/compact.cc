#include "collector/compact.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "collector/records.h"
#include "collector/trace.h"
#include "common/wire.h"

namespace closeaudit {
namespace {

// The socket a record is about, by cookie; 0 for the rest.
uint64_t CookieOf(const Record& record) {
  if (const auto* e = std::get_if<EventRecord>(&record)) {
    switch (e->event.type) {
      case wire::EventType::kAddress: {
        wire::AddressEvent a;
        std::memcpy(&a, &e->event, sizeof(a));
        return a.cookie;
      }
      case wire::EventType::kCloseUntracked:
      case wire::EventType::kFork:
      case wire::EventType::kModule:
      case wire::EventType::kExec:
      case wire::EventType::kRuntime:
        return 0;
      default:
        return e->event.ident.cookie;
    }
  }
  if (const auto* k = std::get_if<KernelRecord>(&record)) return k->cookie;
  return 0;
}

struct Kept {
  uint64_t order;
  Record record;
};

// A socket's records while the analyzer holds it, kept small: a busy
// server's last second of connections is held at once.
struct SocketRecords {
  std::vector<std::pair<uint64_t, EventRecord>> events;
  // What its closes read of bad_close's state (FoldRecord::LastClose, its
  // `ref` a stack id until written).
  std::vector<std::pair<uint64_t, FoldRecord::LastClose>> reads;
  std::vector<Kept> other;  // kernel samples
};

}  // namespace

absl::StatusOr<CompactStats> CompactTrace(const std::string& in, uint64_t prefix,
                                          const std::string& out,
                                          const AnalyzerOptions& options) {
  CompactStats stats;
  Analyzer analyzer(options);
  // The records of the sockets the analyzer holds, until it lets go of
  // them; and the rest, which stay.
  absl::flat_hash_map<uint64_t, SocketRecords> by_socket;
  std::vector<Kept> rest;
  int64_t folded = 0;
  int64_t dropped_events = 0;
  auto let_go = [&] {
    for (auto it = by_socket.begin(); it != by_socket.end();) {
      if (analyzer.Tracks(it->first)) {
        ++it;
        continue;
      }
      dropped_events += static_cast<int64_t>(it->second.events.size());
      by_socket.erase(it++);
    }
  };
  auto read_as_record = [](const FoldRecord::LastClose& c) {
    FoldRecord f;
    f.last_closes.push_back(c);
    return Record(std::move(f));
  };
  uint64_t order = 0;
  absl::Status read = ReadTrace(
      in,
      [&](const Record& r) {
        // bad_close reads the fd's latest close at every close: that close
        // may be one of the records let go, so each close in the trace is
        // preceded by what it read (its `ref` a stack id until written).
        std::optional<FoldRecord::LastClose> read_before;
        if (const auto* e = std::get_if<EventRecord>(&r);
            e != nullptr && (e->event.type == wire::EventType::kClose ||
                             e->event.type == wire::EventType::kCloseUntracked)) {
          read_before = analyzer.LastCloseOf(e->stream, e->event.fd);
        }
        analyzer.Add(r);
        // An earlier compaction's: what it says is in the new ones.
        if (std::holds_alternative<FoldRecord>(r)) return;
        uint64_t cookie = CookieOf(r);
        if (cookie != 0 && analyzer.Tracks(cookie)) {
          SocketRecords& to = by_socket[cookie];
          if (read_before) to.reads.emplace_back(order++, *read_before);
          if (const auto* e = std::get_if<EventRecord>(&r)) {
            to.events.emplace_back(order++, *e);
          } else {
            to.other.push_back({order++, r});
          }
        } else {
          if (read_before) rest.push_back({order++, read_as_record(*read_before)});
          rest.push_back({order++, r});
        }
        if (analyzer.sockets_folded() != folded) {
          folded = analyzer.sockets_folded();
          let_go();
        }
      },
      &stats.warning, prefix);
  if (!read.ok()) return read;
  analyzer.Fold();
  let_go();
  stats.sockets_folded = analyzer.sockets_folded();

  for (auto& [cookie, records] : by_socket) {
    for (auto& [at, e] : records.events) rest.push_back({at, e});
    for (auto& [at, c] : records.reads) rest.push_back({at, read_as_record(c)});
    for (Kept& k : records.other) rest.push_back(std::move(k));
  }
  by_socket.clear();
  std::sort(rest.begin(), rest.end(),
            [](const Kept& a, const Kept& b) { return a.order < b.order; });
  const Analyzer::StackNames name = analyzer.NameStacks();
  TraceWriter writer;
  if (absl::Status s = writer.Open(out); !s.ok()) return s;
  for (Kept& k : rest) {
    if (auto* f = std::get_if<FoldRecord>(&k.record)) {
      for (FoldRecord::LastClose& c : f->last_closes) {
        c.ref = name(c.ref, c.stream).second;
      }
    }
    writer.Append(k.record);
  }
  for (const FoldRecord& f : analyzer.FoldRecords(dropped_events)) {
    writer.Append(Record(f));
  }
  if (absl::Status s = writer.Flush(); !s.ok()) return s;
  struct stat st;
  if (::stat(in.c_str(), &st) == 0) {
    stats.bytes_in = std::min<uint64_t>(prefix, static_cast<uint64_t>(st.st_size));
  }
  if (::stat(out.c_str(), &st) == 0) stats.bytes_out = static_cast<uint64_t>(st.st_size);
  return stats;
}

}  // namespace closeaudit
