// Compacting a trace: the records of the sockets that can no longer change
// any finding (Analyzer::Fold()) are replaced by what they add up to
// (FoldRecord), so that a long run's trace, like its registry, follows what
// is open rather than everything that ever was. `closeaudit report` gives
// the same findings and counts from the compacted trace.
#ifndef CLOSEAUDIT_COLLECTOR_COMPACT_H_
#define CLOSEAUDIT_COLLECTOR_COMPACT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "collector/analyzer.h"

namespace closeaudit {

struct CompactStats {
  uint64_t bytes_in = 0;   // the part of the trace read
  uint64_t bytes_out = 0;  // the compacted trace written
  int64_t sockets_folded = 0;  // in all, earlier compactions' included
  std::string warning;     // the part read ended at damage, as for a report
};

// Reads the first `prefix` bytes of the trace at `in` (the whole frames in
// them) and writes their compaction to `out`, a new trace. `options` as for
// the run's own analyzer (its grace period comes from the trace).
absl::StatusOr<CompactStats> CompactTrace(const std::string& in, uint64_t prefix,
                                          const std::string& out,
                                          const AnalyzerOptions& options = {});

// The same in a process of its own: `exe` (the closeaudit binary) started as
// `exe internal-compact ...`, at the calling thread's priority. All that a
// compaction allocates (it replays the part it compacts) goes back to the
// system when that process exits, where malloc would keep much of it in
// this one. Of `options`, grace_ns and fold_at carry over. The process dies
// with the thread that started it.
absl::StatusOr<CompactStats> CompactTraceApart(const std::string& exe,
                                               const std::string& in, uint64_t prefix,
                                               const std::string& out,
                                               const AnalyzerOptions& options = {});

inline constexpr char kCompactCommand[] = "internal-compact";

// `closeaudit internal-compact ...`: the other side of CompactTraceApart.
// Returns the process's exit status.
int CompactTraceCommand(int argc, char** argv);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_COMPACT_H_
