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
#include "absl/status/statusor.h"
#include "collector/symbolizer.h"

namespace closeaudit {

inline constexpr int kReportFormatVersion = 3;

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
  std::string host;  // the machine the run was on; "" before a merge
};

// A process that still held a socket (fork_held).
struct Holder {
  uint32_t pid = 0;
  int fd = -1;
  std::string exe;
  std::string host;  // merged reports only
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
  std::string reason;            // bad_close: double_close, reused_fd
  std::vector<PeerCount> peers;  // time_wait
  // When and where the first of its sockets went wrong (the EOF of a leak,
  // the close of a fork_held socket...), from the start of the run.
  std::optional<int64_t> began_ms;
  uint32_t began_pid = 0;
};

// What the kernel showed of one process's sockets in one TCP state, in a
// report where nothing could be audited: none of the program's calls were
// seen, so there are no stacks and no advice, only the kernel's view.
struct ObservedSocket {
  int fd = -1;
  std::string local, peer;  // "" if unknown
  int64_t seen_ms = 0;  // from the first to the latest sample in the state
};

struct KernelObservation {
  uint32_t pid = 0;
  std::string exe;        // "" if the process never reported
  std::string tcp_state;  // "CLOSE_WAIT" or "FIN_WAIT2"
  int64_t count = 0;      // sockets seen in the state longer than the grace
  int64_t longest_ms = 0;
  std::vector<ObservedSocket> sockets;  // the first few, earliest first
  std::string host;  // merged reports only
};

struct ProcessSummary {
  uint32_t pid = 0;
  uint32_t ppid = 0;
  std::string exe;
  std::vector<std::string> argv;
  std::optional<int32_t> exit_status;  // as a shell shows it: 128+N if killed
  std::string host;  // merged reports only
};

// One process's sockets over the run: a step function, sampled.
struct TimelinePoint {
  int64_t t_ms = 0;  // from the start of the run
  int64_t open = 0;  // sockets the process held
  int64_t close_wait = 0;  // of those, EOF seen and not closed (inferred)
  // Of those, how many the kernel showed in CLOSE_WAIT at this moment, when
  // it was sampled then.
  std::optional<int64_t> kernel_close_wait;
};

struct ProcessTimeline {
  uint32_t pid = 0;
  std::string exe;
  int64_t start_ms = 0;  // when the process reported
  int64_t end_ms = 0;    // when it exited, or the end of the run
  std::vector<TimelinePoint> points;
};

// "0.1.0" for a packed version (common/version.h), "unknown" for 0.
std::string VersionName(uint32_t packed);

struct Report {
  // False when the program could not be audited at all (see warnings): the
  // report then has no findings, says so, and shows only what the kernel
  // showed of its sockets (kernel_observations).
  bool audited = true;
  int64_t processes = 0;
  // Of those, the ones that held a socket; the others (a shell, env, an
  // interpreter's wrapper scripts) are only counted.
  int64_t processes_with_sockets = 0;
  int64_t sockets_tracked = 0;
  int64_t events = 0;
  int64_t events_dropped = 0;
  double duration_s = 0;
  uint64_t grace_ms = 0;
  std::vector<ProcessSummary> process_list;
  std::vector<Finding> findings;
  // What the kernel showed of runs that could not be audited.
  std::vector<KernelObservation> kernel_observations;
  std::vector<std::string> warnings;  // about the data, e.g. dropped events
  std::string host;  // hostname of the audited machine ("" if unknown)
  // The version of the closeaudit that made the report, and the distinct
  // versions of the library in the processes, in the order they appeared.
  std::string closeaudit_version;
  std::vector<std::string> library_versions;
  std::vector<ProcessTimeline> timelines;
  int64_t timelines_omitted = 0;  // processes with sockets not drawn
};

// 3 for "error", 2 "warning", 1 "info", 0 anything else.
int SeverityRank(std::string_view severity);

// Worst first: errors, then warnings, then information; larger counts first
// within a severity. Stable.
void SortFindings(std::vector<Finding>& findings);

std::string RenderJson(const Report& report);
std::string RenderText(const Report& report);
// One self-contained page (no network fetches): see collector/html.cc.
std::string RenderHtml(const Report& report);
// Brendan Gregg's folded stacks: "kind;stack;outermost;...;innermost COUNT".
std::string RenderFolded(const Report& report);

// s as a JSON string, quotes included; bytes outside ASCII are escaped.
std::string JsonQuote(std::string_view s);

// "handle_client (server.c:42)" for a person; the full path, and a C++
// function's parameters and template arguments, are in the JSON.
// A frame without a function name is its module and offset,
// "server+0x1a2b", never its runtime address, which ASLR makes differ from
// one process to the next.
std::string FrameText(const Frame& frame);
// The function, or for a frame without one "server+0x1a2b" (or the bare
// address when even the module is unknown).
std::string FrameName(const Frame& frame);
// What makes two stacks the same place in the code, across processes, runs
// and hosts: each frame's function, file name and line; for a frame without
// a line, its module's file name and the offset in it. Never a runtime
// address: frames in modules nobody knows count only as "unknown".
std::string StackKey(const std::vector<Frame>& frames);
// What makes stacks one place in the program's own code (frames marked
// in_app), whatever the libraries did around it: findings group by it.
// Where the program's innermost frame calls into a library (asio's
// async_read_some, which reads speculatively in the call or later from its
// reactor), that call is the place: how the program got there depends on
// how the library scheduled it. Where it made the call itself (read(),
// recv()), its frames up to the nearest library frame are: its own call
// paths stay apart. A stack with none of the program's frames is keyed by
// all of its frames (StackKey).
std::string GroupKey(const std::vector<Frame>& frames);
// Frames of the C library's start-up code, which tell a reader nothing.
bool IsStartupFrame(const Frame& frame);

// The report in one of the formats `--format` names: text, json, html or
// folded. An unknown name is an error that lists them.
absl::StatusOr<std::string> RenderAs(const Report& report,
                                     std::string_view format);

// What --min-severity and --kind keep.
struct ReportFilter {
  int min_rank = 1;                // 1 info, 2 warning, 3 error
  std::vector<std::string> kinds;  // empty: every kind
  bool active() const { return min_rank > 1 || !kinds.empty(); }
};
// Parses the flags' values ("" means no filter); errors name what is valid.
absl::StatusOr<ReportFilter> ParseReportFilter(
    std::string_view min_severity, const std::vector<std::string>& kinds);
// Drops the findings the filter does not keep, and says so in the warnings.
void ApplyFilter(const ReportFilter& filter, Report& report);

// Writes `contents` to `path` atomically (a temp file, then rename).
absl::Status WriteFileAtomically(const std::string& path,
                                 const std::string& contents);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_REPORT_H_
