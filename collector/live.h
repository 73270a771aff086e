// What a running collector knows now: for the status line `closeaudit run`
// shows on a terminal, `closeaudit status` (table or JSON) and the
// Prometheus /metrics endpoint. One snapshot feeds all three.
#ifndef CLOSEAUDIT_COLLECTOR_LIVE_H_
#define CLOSEAUDIT_COLLECTOR_LIVE_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace closeaudit {

struct LiveProcess {
  uint32_t pid = 0;
  std::string exe;
  int64_t open = 0;        // sockets it holds
  int64_t close_wait = 0;  // of those, EOF seen and not closed
};

// The collector's sweeps of the kernel's socket table so far.
struct SweepStats {
  uint64_t sweeps = 0;
  uint64_t dumps = 0;        // of those, walks of the whole table
  uint64_t cpu_ns = 0;       // the CPU time of all of them
  uint64_t last_cpu_ns = 0;  // of the latest
  uint64_t max_cpu_ns = 0;   // of the costliest
  uint64_t last_sockets = 0;  // what the latest showed in CLOSE_WAIT or FIN_WAIT2
};

struct LiveStatus {
  double uptime_s = 0;
  std::vector<LiveProcess> processes;  // the ones still running
  int64_t open_sockets = 0;
  int64_t close_wait = 0;
  int64_t findings = 0;  // findings so far, as the report would list them
  // Sockets in findings so far, by (kind, severity).
  std::map<std::pair<std::string, std::string>, int64_t> finding_sockets;
  uint64_t events = 0;
  uint64_t dropped = 0;
  SweepStats sweeps;
  // The collector's longest turn of work between two waits on its rings
  // (draining, recording kernel sweeps, answering status, writing
  // snapshots): the longest the rings went unread.
  uint64_t longest_turn_ns = 0;
  // Whether the draining thread runs at the lowest priority now, and how
  // often it was raised back because it fell behind (DrainPriority).
  bool drain_lowered = false;
  uint64_t drain_raises = 0;
};

// "3 processes · 120 open sockets · 4 in CLOSE_WAIT · 2 findings · 0 dropped"
std::string StatusLine(const LiveStatus& status);
// The same, with one row per process, for `closeaudit status`.
std::string StatusTable(const LiveStatus& status);
std::string StatusJson(const LiveStatus& status);

// The Prometheus text exposition format (version 0.0.4). Counters never go
// down: `floor` holds the highest value each finding counter has shown and
// is updated.
std::string MetricsText(
    const LiveStatus& status,
    std::map<std::pair<std::string, std::string>, int64_t>* floor);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_LIVE_H_
