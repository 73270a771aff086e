// The report: what a person (text) or a program (JSON) reads at the end of a
// run. The JSON form is specified, and versioned, in docs/report-format.md.
#ifndef CLOSEAUDIT_COLLECTOR_REPORT_H_
#define CLOSEAUDIT_COLLECTOR_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "collector/symbolizer.h"

namespace closeaudit {

inline constexpr int kReportFormatVersion = 1;

struct Example {
  uint32_t pid = 0;
  int fd = -1;
  std::string local;  // "127.0.0.1:8080", "[::1]:8080", or "" if unknown
  std::string peer;
  int64_t age_ms = 0;  // from creation to close, or to the end of the run
  std::optional<int64_t> eof_to_end_ms;  // how long it sat after the EOF
  std::optional<int64_t> closed_after_ms;  // EOF to close; none if never
  std::optional<std::string> tcp_state;
  std::string exe;  // the process's executable, where the kind names it
  std::optional<int64_t> unsent_bytes;  // abortive_close: queued at close
};

// A process that still held a socket (fork_held).
struct Holder {
  uint32_t pid = 0;
  int fd = -1;
  std::string exe;
};

// How many sockets of a time_wait finding went to one peer address.
struct PeerCount {
  std::string peer;
  int64_t count = 0;
};

struct Finding {
  std::string kind;
  std::string severity;  // "error", "warning", "info"
  int64_t count = 0;
  std::string message;
  std::string advice;
  bool confirmed_by_kernel = false;
  // Named stacks, in the order they should be shown.
  std::vector<std::pair<std::string, std::vector<Frame>>> stacks;
  std::vector<Example> examples;
  std::vector<Holder> holders;   // fork_held
  std::string reason;            // bad_close: ebadf, double_close, reused_fd
  std::vector<PeerCount> peers;  // time_wait
};

struct ProcessSummary {
  uint32_t pid = 0;
  uint32_t ppid = 0;
  std::string exe;
  std::vector<std::string> argv;
  std::optional<int32_t> exit_status;  // as a shell shows it: 128+N if killed
};

struct Report {
  // False when the program could not be audited at all (see warnings): an
  // empty findings list then means nothing, and the report says so.
  bool audited = true;
  int64_t processes = 0;
  int64_t sockets_tracked = 0;
  int64_t events = 0;
  int64_t events_dropped = 0;
  double duration_s = 0;
  uint64_t grace_ms = 0;
  std::vector<ProcessSummary> process_list;
  std::vector<Finding> findings;
  std::vector<std::string> warnings;  // about the data, e.g. dropped events
};

std::string RenderJson(const Report& report);
std::string RenderText(const Report& report);

// Writes `contents` to `path` atomically (a temp file, then rename).
absl::Status WriteFileAtomically(const std::string& path,
                                 const std::string& contents);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_REPORT_H_
