// A collection session: a Collector whose records go both to a trace file in
// the output directory and to an Analyzer, and the reports made at its end.
// This is what `closeaudit run`, `demo` and `daemon` share.
#ifndef CLOSEAUDIT_COLLECTOR_SESSION_H_
#define CLOSEAUDIT_COLLECTOR_SESSION_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "collector/analyzer.h"
#include "collector/app_frames.h"
#include "collector/background_job.h"
#include "collector/compact.h"
#include "collector/drain_priority.h"
#include "collector/kernel.h"
#include "collector/live.h"
#include "collector/module_finder.h"
#include "collector/request_server.h"
#include "collector/report.h"
#include "collector/server.h"
#include "collector/trace.h"

namespace closeaudit {

inline constexpr char kTraceFileName[] = "trace.catrace";
inline constexpr uint64_t kDefaultTraceLimit = uint64_t{1} << 30;
inline constexpr uint64_t kKernelSampleMs = 500;
inline constexpr uint64_t kKernelSampleMaxMs = 30'000;
// Between two dumps of the whole table, once a dump costs more than
// kLookUpAboveNs, a sweep asks the kernel about the audited processes' open
// TCP sockets one by one (and the sockets of theirs
// the shim never reported that the last dump showed), when the endpoints of
// them all are known and there are at most kMaxLookups: that costs nothing
// for the rest of the table. A dump still comes every kKernelDumpMs, to find
// sockets the shim never reported.
inline constexpr uint64_t kKernelDumpMs = 30'000;
inline constexpr size_t kMaxLookups = 4096;
// A dump of a table of some 3,000 sockets: a millisecond the kernel spends
// on the core the server may be waiting for.
inline constexpr uint64_t kLookUpAboveNs = 1'000'000;

// When to sweep the kernel's socket table again. The kernel walks every TCP
// socket of the namespace for each dump, TIME_WAIT minisockets included,
// and a machine where servers close first can have a few hundred thousand
// of those: a sweep's cost follows them, not what is audited. Sweeps spend
// from a budget that fills at 0.25% of a core up to kKernelSweepBurstMs of
// CPU: every kKernelSampleMs while it lasts (a short run, whatever the
// table), then only as often as it fills again, up to kKernelSampleMaxMs
// apart. (Under a Node.js server with Connection: close, sweeps twice a
// second were half of the collector's time, taken from the server's cores.)
inline constexpr uint64_t kKernelSweepBurstMs = 200;
class SweepBudget {
 public:
  // How long to wait after a sweep at `now_ns` that took `cost_ns` of this
  // thread's CPU time.
  uint64_t NextIntervalNs(uint64_t now_ns, uint64_t cost_ns);

 private:
  int64_t credit_ns_ = kKernelSweepBurstMs * 1'000'000;
  uint64_t last_ns_ = 0;  // the previous sweep; 0 = none yet
};

struct SessionOptions {
  uint64_t grace_ns = 5'000'000'000;
  std::string out_dir;    // created if missing
  std::string json_path;  // extra copy of the JSON report, if set
  std::string socket_path;
  std::string host;     // the machine's name in the reports; "" = hostname
  std::string metrics_listen;  // HOST:PORT to serve /metrics on, if set
  ReportFilter filter;  // applied to the reports this session writes
  AppRules app;  // which frames are the program's own; kept in the trace
  // The kernel's answer to a sweep: DumpTcpSockets() if unset (tests give
  // their own).
  std::function<absl::StatusOr<std::vector<KernelSocket>>(uint32_t state_mask)>
      dump_kernel;
  // The kernel's answer to a sweep that asks about sockets one by one:
  // LookupTcpSockets() if unset. With dump_kernel set and this not, every
  // sweep is a dump.
  std::function<absl::StatusOr<std::vector<KernelSocket>>(
      const std::vector<SocketKey>& keys)>
      lookup_kernel;
  // Once a dump costs the sweeper this much CPU, sweeps between dumps (up
  // to kKernelDumpMs apart) look the sockets up instead.
  uint64_t lookup_above_ns = kLookUpAboveNs;
  // Tests: called on a snapshot's thread before it makes the report.
  std::function<void()> on_snapshot;
  // When the trace reaches this size, it is compacted (collector/compact.h)
  // on a thread of its own; 0: never. docs/wire-format.md, "Compaction".
  uint64_t trace_limit = kDefaultTraceLimit;
  // The closeaudit binary, to compact in a process of its own
  // (CompactTraceApart), which gives back all it used; "": on the thread.
  std::string compactor_exe;
};

class Session : private IngestSink {
 public:
  explicit Session(SessionOptions options);

  absl::Status Start();
  Collector& collector() { return collector_; }

  // One turn of the collector's loop, then the trace goes to the kernel if
  // it has waited 100 ms: a collector killed with SIGKILL loses at most that.
  void Poll(int timeout_ms);
  // From now on, the calling thread (the one that calls Poll) drains at the
  // lowest priority while it keeps up (DrainPriority); CLOSEAUDIT_DRAIN_NICE
  // sets another nice value ("off": the process's). Call it once the
  // audited program is started: a child inherits its parent's priority.
  void LowerDrainPriority();

  // Ends the session: drains everything, writes report.json and report.txt
  // into the output directory (and the JSON to json_path) and returns the
  // report.
  absl::StatusOr<Report> Finish();

  // Said at the top of the report Finish() writes: what the run itself
  // knows about the data (the program could not be audited, say).
  // Both go into the trace, so `closeaudit report` says them too.
  void AddWarning(std::string warning, bool unaudited = false) {
    Sink(NoteRecord{std::move(warning), unaudited});
  }

  // Asks the kernel which sockets of the audited processes sit in
  // CLOSE_WAIT or FIN_WAIT2, and records what it says, before returning
  // (after the sweep in flight, if any). Poll() starts sweeps as
  // SweepBudget says, on a thread of their own, and records each when it
  // is done; call this just before the processes go away.
  void SampleKernel();  // a dump

  // Also asks the kernel about the sockets of `pid` (0: none) until told
  // otherwise: the command of `closeaudit run`, which may never report (a
  // statically linked or setuid program). What the kernel shows of its
  // sockets is then all the report can say about it.
  void WatchPid(uint32_t pid) { watched_pid_ = pid; }

  // Writes the reports as of now without ending the session (the daemon
  // does this whenever its last traced process has gone), on a thread of
  // its own: draining goes on meanwhile, and what arrives is analyzed once
  // the report is made. `done` is called with the outcome from Poll() or
  // FinishSnapshots(). One asked for while another is being made follows it.
  void StartSnapshot(std::function<void(absl::Status)> done);
  // Waits for every snapshot asked for so far.
  void FinishSnapshots();
  // The same, done: the reports are written when it returns.
  absl::Status WriteSnapshot();

  const SessionOptions& options() const { return options_; }
  // The kernel sweeps recorded so far.
  const SweepStats& sweep_stats() const { return sweep_stats_; }
  // The compactions of the trace that took its place so far.
  int64_t compactions() const { return compaction_.done; }

  // Counts as of now, for the status line, `closeaudit status` and /metrics.
  LiveStatus Live();

  // Answers `closeaudit status` and `closeaudit snapshot` on a Unix socket
  // at `path` (see Control() in session.cc), from Poll().
  absl::Status ServeControl(const std::string& path);
  // Serves Prometheus' /metrics on HOST:PORT from Poll(). Returns the
  // address it is bound to.
  absl::StatusOr<std::string> ServeMetrics(const std::string& host_port);
  // Closes the control socket and /metrics, and removes the run directory's
  // pointer to the control socket. Finish() does it too.
  void StopServing();

 private:
  std::optional<std::string> Control(std::string_view request,
                                     RequestServer::Reply later);
  std::string Http(std::string_view request);

  // What the collector drains: into the trace and the analyzer.
  void OnEvent(const EventRecord& record) override;
  void OnRecord(Record record) override { Sink(std::move(record)); }
  void OnBatchEnd() override { FlushIfDue(); }

  void Sink(Record record);
  // To the analyzer, or kept for it while a snapshot reads it.
  void Analyze(Record record);
  void FlushIfDue();
  void BeginSnapshot();    // the snapshots asked for, once none is in flight
  void AdvanceSnapshot();  // once reporter_ is done with one
  void MaybeCompact();       // starts a compaction if the trace is too large
  void AdvanceCompaction();  // puts the compacted trace in place, once done
  void FinishCompaction();   // waits for the one in flight, if any
  // A kernel sweep, in steps: the dump and the search for the owners of
  // sockets the shim never reported run on sweeper_; the rest here.
  void StartSweep(bool dump = false);  // dump: walk the whole table
  void AdvanceSweep();  // the next step, once sweeper_ is done with one
  void FinishSweep();   // waits for the sweep in flight, if any
  void RecordSweep();

  SessionOptions options_;
  Analyzer analyzer_;
  TraceWriter trace_;
  Collector collector_;
  uint64_t last_flush_ns_ = 0;
  uint64_t last_sample_ns_ = 0;
  uint64_t sample_interval_ns_ = kKernelSampleMs * 1'000'000;
  SweepBudget sweep_budget_;
  // The sweep in flight. While sweeper_ runs a step, only it touches the
  // fields that step fills.
  struct Sweep {
    enum class Step { kIdle, kDump, kOwners };
    Step step = Step::kIdle;
    std::vector<uint32_t> pids;
    uint64_t started_ns = 0;  // when it was asked for
    uint64_t mono_ns = 0;     // when the kernel answered
    uint64_t cpu_ns = 0;      // the sweeper's CPU time for it
    absl::StatusOr<std::vector<KernelSocket>> sockets =
        std::vector<KernelSocket>{};
    absl::flat_hash_set<uint64_t> untracked;  // inodes
    absl::flat_hash_map<uint64_t, std::vector<FdOwner>> owners;
    bool dump = true;  // or a lookup of `keys`
    std::vector<SocketKey> keys;
  };
  Sweep sweep_;
  uint64_t last_dump_ns_ = 0;  // 0: none yet
  uint64_t dump_cpu_ns_[2] = {0, 0};  // the latest two dumps' CPU time
  // What the last dump showed of the sockets the shim never reported: for
  // the lookups until the next, with their owners (by inode).
  std::vector<SocketKey> untracked_keys_;
  absl::flat_hash_map<uint64_t, std::vector<FdOwner>> untracked_owners_;
  SweepStats sweep_stats_;

  bool kernel_warned_ = false;
  uint32_t watched_pid_ = 0;
  std::unique_ptr<RequestServer> control_;
  std::unique_ptr<RequestServer> metrics_;
  // Live() counts over every socket seen: at most once a second.
  LiveStatus live_;
  uint64_t live_ns_ = 0;
  uint64_t dropped_floor_ = 0;  // events_dropped never goes down
  // Kept between snapshots: symbolizing is the slow part of a report.
  Symbolizer symbolizer_;
  // The objects processes loaded after their images started.
  ModuleFinder modules_;
  // The highest value each finding counter has shown on /metrics.
  std::map<std::pair<std::string, std::string>, int64_t> metrics_floor_;
  // The snapshot in flight: while it is, reporter_ reads analyzer_ and
  // symbolizer_, and nothing else touches them but to read.
  struct Snapshots {
    bool busy = false;
    absl::Status status;  // the one in flight's, once reporter_ is done
    std::vector<std::function<void(absl::Status)>> waiting;  // for it
    std::vector<std::function<void(absl::Status)>> next;     // for the next
    std::vector<Record> deferred;  // arrived while busy, for analyzer_
    int64_t deferred_events = 0;
  };
  Snapshots snapshot_;
  // The compaction in flight: compactor_ reads the trace up to `prefix`
  // and writes the compacted part beside it.
  struct Compaction {
    bool busy = false;
    uint64_t prefix = 0;
    uint64_t next_at = 0;  // the trace size that starts the next; 0: limit
    absl::StatusOr<CompactStats> result = CompactStats{};
    int64_t done = 0;
    bool warned = false;
  };
  Compaction compaction_;
  // Last: ended (their jobs finished) before what their jobs write to.
  BackgroundJob compactor_;
  BackgroundJob sweeper_;
  // At the process's priority: what arrives while it runs waits for it.
  BackgroundJob reporter_{ThreadNice()};
  std::optional<DrainPriority> drain_priority_;  // once LowerDrainPriority()
};

// In a running session's directory: the path of its control socket.
inline constexpr char kControlFileName[] = "control";

// Sends `request` ("status", "status json", "snapshot") to the collector of
// the run in `dir` and returns its answer. The errors say what to do instead.
absl::StatusOr<std::string> AskControl(const std::string& dir,
                                       const std::string& request);

// Regenerates the reports of a finished session from its trace file.
absl::StatusOr<Report> ReportFromTrace(const std::string& dir,
                                       AnalyzerOptions options);

// Writes report.json / report.txt into dir, and JSON to json_path if set.
absl::Status WriteReports(const Report& report, const std::string& dir,
                          const std::string& json_path);

// ${XDG_STATE_HOME:-$HOME/.local/state}/closeaudit: where runs keep their
// traces when no --out is given, with a `latest` link to the newest. Where
// that cannot be created (a service user whose HOME is not writable), the
// per-user runtime directory's state/ instead.
std::string StateDir();
// A fresh directory under StateDir(), which `latest` then points at.
absl::StatusOr<std::string> NewRunDir();
absl::Status MakeDirs(const std::string& dir);

uint64_t MonoNowNs();

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_SESSION_H_
