// Analyzer: the registry of sockets and who holds them, and the findings that
// follow from it.
//
// It consumes Records (collector/records.h) in arrival order, from the live
// collector or from a trace file, and Build() turns what it learned into a
// Report. Sockets are keyed by the kernel's cookie, never by fd number, so
// events of different processes may arrive in any order relative to each
// other. Not thread-safe.
#ifndef CLOSEAUDIT_COLLECTOR_ANALYZER_H_
#define CLOSEAUDIT_COLLECTOR_ANALYZER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "collector/records.h"
#include "collector/report.h"
#include "collector/symbolizer.h"

namespace closeaudit {

struct AnalyzerOptions {
  // Overrides the grace period recorded in the trace's RunRecord.
  std::optional<uint64_t> grace_ns;
};

class Analyzer {
 public:
  explicit Analyzer(AnalyzerOptions options = {});

  void Add(const Record& record);

  // The report as of `as_of` (CLOCK_MONOTONIC ns), by default the EndRecord's
  // time or, without one, the latest time seen.
  Report Build(Symbolizer& symbolizer,
               std::optional<uint64_t> as_of = std::nullopt) const;

  int64_t events() const { return events_; }

  // Implementation details follow.
 private:
  struct NormFrame {
    uint32_t module;  // index into modules_; kNoModule if unknown
    uint64_t offset;  // address - load bias, or the address if no module
    uint64_t address;  // as seen in the first process that had it
  };
  static constexpr uint32_t kNoModule = ~0u;

  struct Stream {
    ProcessRecord process;
    std::vector<ModuleRecord> modules;
    absl::flat_hash_map<uint32_t, uint32_t> stacks;  // ref -> stack id
    absl::flat_hash_map<int, uint64_t> fds;          // fd -> cookie
    bool exited = false;
    uint64_t exit_ns = 0;
    int32_t exit_status = -1;
  };

  struct Socket {
    uint8_t flags = 0;  // wire::EventFlags
    uint32_t created_stack = 0;  // stack ids start at 1; 0 = unknown
    uint64_t created_ns = 0;
    uint32_t creator_stream = 0;
    uint64_t eof_ns = 0;
    uint32_t eof_stack = 0;
    uint32_t last_use_stack = 0;
    uint32_t eof_stream = 0;
    int eof_fd = -1;
    uint64_t closed_ns = 0;  // the program closed its last reference
    uint64_t gone_ns = 0;    // the last reference went, by close or exit
    uint32_t close_stack = 0;
    absl::flat_hash_set<std::pair<uint32_t, int>> holders;  // (stream, fd)
    std::string local, peer;
  };

  void OnEvent(const EventRecord& record);
  void AddHolder(Stream& stream, uint32_t stream_id, int fd, uint64_t cookie,
                 uint64_t now);
  // Drops (stream, fd) as a holder of cookie; closed_by_program says whether
  // it was the program's own close().
  void DropHolder(Stream& stream, uint32_t stream_id, int fd, uint64_t cookie,
                  uint64_t now, bool closed_by_program, uint32_t stack);
  uint32_t StackFor(const Stream& stream, uint32_t ref) const;
  uint32_t InternFrames(const Stream& stream,
                        const std::vector<uint64_t>& frames);
  uint32_t InternModule(const ModuleRecord& module);
  std::vector<Frame> Symbolize(uint32_t stack, Symbolizer& symbolizer) const;
  void BuildCloseWaitLeaks(Symbolizer& symbolizer, uint64_t end_ns,
                           Report& report) const;
  uint64_t EndNs() const;

  AnalyzerOptions options_;
  RunRecord run_;
  bool have_end_ = false;
  uint64_t end_ns_ = 0;
  uint64_t latest_ns_ = 0;
  int64_t events_ = 0;
  int64_t dropped_ = 0;
  std::vector<uint32_t> stream_order_;
  absl::flat_hash_map<uint32_t, Stream> streams_;
  std::vector<ModuleRecord> modules_;
  absl::flat_hash_map<std::pair<std::string, std::string>, uint32_t>
      module_ids_;
  std::vector<std::vector<NormFrame>> stacks_;  // index 0 unused
  absl::flat_hash_map<std::string, uint32_t> stack_ids_;
  absl::flat_hash_map<uint64_t, Socket> sockets_;
};

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_ANALYZER_H_
