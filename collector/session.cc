#include "collector/session.h"

#include <malloc.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "collector/kernel.h"
#include "common/paths.h"

namespace closeaudit {

uint64_t MonoNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

namespace {

// Appends the bytes of `from` past `offset` to the file `to`.
absl::Status AppendFileTail(const std::string& from, uint64_t offset,
                            const std::string& to) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return absl::ErrnoToStatus(errno, "open " + from);
  int out = ::open(to.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (out < 0) {
    absl::Status s = absl::ErrnoToStatus(errno, "open " + to);
    ::close(in);
    return s;
  }
  absl::Status status;
  off_t at = static_cast<off_t>(offset);
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::pread(in, buf, sizeof(buf), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = absl::ErrnoToStatus(errno, "read " + from);
      break;
    }
    if (n == 0) break;
    at += n;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out, buf + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        status = absl::ErrnoToStatus(errno, "write " + to);
        break;
      }
      done += w;
    }
    if (!status.ok()) break;
  }
  ::close(in);
  ::close(out);
  return status;
}

uint64_t RealNowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

// This thread's CPU time, the kernel's work on its behalf included.
uint64_t ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

}  // namespace

absl::Status MakeDirs(const std::string& dir) {
  std::string path;
  for (size_t pos = 0; pos != std::string::npos;) {
    size_t next = dir.find('/', pos + 1);
    path = dir.substr(0, next);
    pos = next;
    if (path.empty()) continue;
    if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, "create directory " + path);
    }
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(dir + " is not a directory");
  }
  return absl::OkStatus();
}

std::string StateDir() {
  std::string home_dir;
  const char* state = getenv("XDG_STATE_HOME");
  const char* home = getenv("HOME");
  if (state && state[0] == '/') {
    home_dir = absl::StrCat(state, "/closeaudit");
  } else if (home && home[0] == '/') {
    home_dir = absl::StrCat(home, "/.local/state/closeaudit");
  }
  // A service user's HOME is often not theirs to write (HOME=/root for
  // nobody, or / for a daemon account): then the per-user runtime
  // directory, which is.
  if (!home_dir.empty() && MakeDirs(home_dir).ok()) return home_dir;
  char runtime[256];
  paths::DefaultRuntimeDir(runtime, sizeof(runtime));
  return absl::StrCat(runtime, "/state");
}

absl::StatusOr<std::string> NewRunDir() {
  std::string base = StateDir();
  if (absl::Status s = MakeDirs(base); !s.ok()) return s;
  time_t now = time(nullptr);
  tm local;
  localtime_r(&now, &local);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &local);
  std::string dir = absl::StrFormat("%s/%s-%d", base, stamp, getpid());
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  std::string link = base + "/latest";
  std::string tmp = absl::StrCat(link, ".", getpid());
  ::unlink(tmp.c_str());
  if (::symlink(dir.c_str(), tmp.c_str()) == 0) ::rename(tmp.c_str(), link.c_str());
  return dir;
}

Session::Session(SessionOptions options)
    : options_(std::move(options)),
      collector_(*this) {}

absl::Status Session::Start() {
  if (absl::Status s = MakeDirs(options_.out_dir); !s.ok()) return s;
  // An earlier run's compaction that never took the trace's place.
  ::unlink((options_.out_dir + "/" + kTraceFileName + ".compact").c_str());
  if (absl::Status s = trace_.Open(options_.out_dir + "/" + kTraceFileName);
      !s.ok()) {
    return s;
  }
  RunRecord run;
  run.grace_ns = options_.grace_ns;
  run.start_mono_ns = MonoNowNs();
  run.start_real_ns = RealNowNs();
  run.host = options_.host;
  run.app_paths = options_.app.app_paths;
  run.not_app = options_.app.not_app;
  if (run.host.empty()) {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0) run.host = name;
  }
  Sink(run);
  if (absl::Status s = collector_.Listen(options_.socket_path); !s.ok()) {
    return s;
  }
  // The control socket sits next to the collector's; the run's directory
  // says where, for `closeaudit status DIR`.
  std::string control = options_.socket_path + ".control";
  if (absl::Status s = ServeControl(control); !s.ok()) {
    fprintf(stderr, "closeaudit: no control socket (%s); status and snapshot "
            "will not reach this run\n", std::string(s.message()).c_str());
    control_.reset();
  } else if (absl::Status s = WriteFileAtomically(
                 options_.out_dir + "/" + kControlFileName, control + "\n");
             !s.ok()) {
    StopServing();
    return s;
  }
  if (!options_.metrics_listen.empty()) {
    absl::StatusOr<std::string> bound = ServeMetrics(options_.metrics_listen);
    if (!bound.ok()) {
      StopServing();
      return bound.status();
    }
    fprintf(stderr, "closeaudit: metrics on http://%s/metrics\n",
            bound->c_str());
  }
  return absl::OkStatus();
}

void Session::Sink(Record record) {
  if (const auto* stack = std::get_if<StackRecord>(&record)) {
    // Objects loaded after the image started, under this stack's frames:
    // recorded before the stack, which the analyzer places at once.
    for (ModuleRecord& m : modules_.Find(*stack)) {
      Record found = std::move(m);
      trace_.Append(found);
      Analyze(std::move(found));
    }
  } else if (std::holds_alternative<ExitRecord>(record)) {
    uint32_t stream = std::get<ExitRecord>(record).stream;
    // V8's perf map of a Node.js process closeaudit set up: what it named
    // is in the trace; the file would stay in /tmp for good.
    if (analyzer_.OwnsPerfMap(stream)) modules_.RemovePerfMap(stream);
    modules_.Retire(stream);
  }
  modules_.Note(record);
  trace_.Append(record);
  Analyze(std::move(record));
  FlushIfDue();
}

void Session::Analyze(Record record) {
  if (snapshot_.busy) {
    snapshot_.deferred.push_back(std::move(record));
  } else {
    analyzer_.Add(record);
  }
}

// Events come in batches, and OnBatchEnd() flushes: no clock read per event.
void Session::OnEvent(const EventRecord& record) {
  // After an exec the pid runs another image: never read its maps for this
  // stream's stacks.
  if (record.event.type == wire::EventType::kExec) {
    modules_.Retire(record.stream);
  }
  trace_.Append(record);
  if (snapshot_.busy) {
    snapshot_.deferred.push_back(record);
    ++snapshot_.deferred_events;
  } else {
    analyzer_.Add(record);
  }
}

void Session::FlushIfDue() {
  uint64_t now = MonoNowNs();
  if (now - last_flush_ns_ < 100'000'000) return;
  last_flush_ns_ = now;
  if (absl::Status s = trace_.Flush(); !s.ok()) {
    fprintf(stderr, "closeaudit: %s\n", std::string(s.message()).c_str());
  }
  MaybeCompact();
}

constexpr uint32_t kCompactionFoldAt = 2048;

void Session::MaybeCompact() {
  if (options_.trace_limit == 0 || compaction_.busy || !trace_.is_open() ||
      !trace_.flushed()) {
    return;
  }
  uint64_t at = std::max(options_.trace_limit, compaction_.next_at);
  if (trace_.size() < at) return;
  // What has been flushed is whole frames; what comes meanwhile is copied
  // after the compacted part when it is done.
  compaction_.busy = true;
  compaction_.prefix = trace_.size();
  const std::string path = options_.out_dir + "/" + kTraceFileName;
  compactor_.Start([this, path, prefix = compaction_.prefix] {
    // Its own registry, folded often: it holds the records of what it
    // holds until it lets go of them.
    AnalyzerOptions options;
    options.fold_at = kCompactionFoldAt;
    if (!options_.compactor_exe.empty()) {
      compaction_.result = CompactTraceApart(options_.compactor_exe, path, prefix,
                                             path + ".compact", options);
      return;
    }
    compaction_.result = CompactTrace(path, prefix, path + ".compact", options);
    malloc_trim(0);  // what it used, back to the system (not all comes back)
  });
}

void Session::AdvanceCompaction() {
  if (!compaction_.busy || !compactor_.Idle()) return;
  compaction_.busy = false;
  const std::string path = options_.out_dir + "/" + kTraceFileName;
  const std::string compacted = path + ".compact";
  absl::Status s = compaction_.result.status();
  // Damage in the part it read: the reports say where; the trace stays.
  if (s.ok() && !compaction_.result->warning.empty()) {
    s = absl::DataLossError(compaction_.result->warning);
  }
  if (s.ok()) s = trace_.Flush();
  // The records that came while it ran, after the compacted part; then the
  // compacted trace takes the old one's place in one rename.
  if (s.ok()) s = AppendFileTail(path, compaction_.prefix, compacted);
  if (s.ok() && ::rename(compacted.c_str(), path.c_str()) != 0) {
    s = absl::ErrnoToStatus(errno, "rename " + compacted);
  }
  if (!s.ok()) {
    ::unlink(compacted.c_str());
    options_.trace_limit = 0;
    fprintf(stderr,
            "closeaudit: could not compact the trace (%s); it grows without "
            "a limit from now on\n",
            std::string(s.message()).c_str());
    return;
  }
  if (absl::Status r = trace_.Reopen(path); !r.ok()) {
    fprintf(stderr, "closeaudit: %s; the trace ends here\n",
            std::string(r.message()).c_str());
    return;
  }
  ++compaction_.done;
  // What stays (open sockets and the findings' own) may itself be large:
  // the next one when the trace has doubled, and the reader told once.
  compaction_.next_at = 2 * trace_.size();
  if (trace_.size() > options_.trace_limit / 2 && !compaction_.warned) {
    compaction_.warned = true;
    AddWarning(absl::StrCat(
        "the trace's open sockets and findings alone take ",
        trace_.size() >> 20, " MiB after compaction, more than half of "
        "--trace-limit: it will pass the limit"));
  }
}

void Session::FinishCompaction() {
  if (!compaction_.busy) return;
  compactor_.Wait();
  AdvanceCompaction();
}

void Session::LowerDrainPriority() {
  if (drain_priority_) return;
  DrainPriority::Options o;
  if (const char* v = getenv("CLOSEAUDIT_DRAIN_NICE"); v && *v) {
    int nice = 0;
    if (absl::string_view(v) == "off") return;
    if (!absl::SimpleAtoi(v, &nice) || nice < -20 || nice > 19) {
      fprintf(stderr,
              "closeaudit: CLOSEAUDIT_DRAIN_NICE=%s is neither a nice value "
              "(-20 to 19) nor \"off\"; draining at nice %d\n",
              v, o.nice);
    } else {
      o.nice = nice;
    }
  }
  drain_priority_.emplace(o);
  (void)drain_priority_->Start();
}

void Session::Poll(int timeout_ms) {
  if (drain_priority_) drain_priority_->TurnDone();
  collector_.Poll(timeout_ms);
  if (control_) control_->Poll();
  if (metrics_) metrics_->Poll();
  AdvanceSnapshot();
  AdvanceCompaction();
  AdvanceSweep();
  if (sweep_.step == Sweep::Step::kIdle &&
      MonoNowNs() - last_sample_ns_ >= sample_interval_ns_) {
    StartSweep();
  }
  FlushIfDue();
}

uint64_t SweepBudget::NextIntervalNs(uint64_t now_ns, uint64_t cost_ns) {
  constexpr int64_t kMs = 1'000'000;
  constexpr int64_t kShare = 400;  // the budget fills at 1/400 of a core
  constexpr int64_t kBurst = kKernelSweepBurstMs * kMs;
  // What the longest interval earns: more debt than that is forgiven, so
  // that sweeps are never further apart than kKernelSampleMaxMs.
  constexpr int64_t kMaxDebt = int64_t{kKernelSampleMaxMs} * kMs / kShare;
  if (last_ns_ != 0 && now_ns > last_ns_) {
    uint64_t earned = std::min<uint64_t>((now_ns - last_ns_) / kShare,
                                         kBurst + kMaxDebt);
    credit_ns_ = std::min(kBurst, credit_ns_ + static_cast<int64_t>(earned));
  }
  last_ns_ = now_ns;
  uint64_t spent = std::min<uint64_t>(cost_ns, kBurst + kMaxDebt);
  credit_ns_ = std::max(credit_ns_ - static_cast<int64_t>(spent), -kMaxDebt);
  if (credit_ns_ >= 0) return kKernelSampleMs * kMs;
  return std::max<uint64_t>(-credit_ns_ * kShare, kKernelSampleMs * kMs);
}

void Session::SampleKernel() {
  FinishSweep();
  StartSweep(/*dump=*/true);
  FinishSweep();
}

void Session::StartSweep(bool dump) {
  uint64_t now = MonoNowNs();
  last_sample_ns_ = now;
  std::vector<uint32_t> pids = collector_.live_pids();
  if (watched_pid_ != 0 &&
      std::find(pids.begin(), pids.end(), watched_pid_) == pids.end()) {
    pids.push_back(watched_pid_);
  }
  if (pids.empty()) return;
  sweep_ = Sweep{};
  sweep_.step = Sweep::Step::kDump;
  sweep_.pids = std::move(pids);
  sweep_.started_ns = now;
  // A dump walks every socket of the namespace, TIME_WAIT ones included,
  // however few are asked for; a lookup costs what it asks about, but sees
  // only what it asks about: sockets the shim never reported that are new
  // since the last dump wait for the next. So dumps go on while they are
  // cheap.
  const bool can_look_up = !options_.dump_kernel || options_.lookup_kernel;
  sweep_.dump = dump || !can_look_up || last_dump_ns_ == 0 ||
                std::min(dump_cpu_ns_[0], dump_cpu_ns_[1]) < options_.lookup_above_ns ||
                now - last_dump_ns_ >= kKernelDumpMs * 1'000'000 ||
                !analyzer_.OpenSocketKeys(kMaxLookups, &sweep_.keys) ||
                sweep_.keys.size() + untracked_keys_.size() > kMaxLookups;
  if (sweep_.dump) {
    last_dump_ns_ = now;
    sweep_.keys.clear();
  } else {
    sweep_.keys.insert(sweep_.keys.end(), untracked_keys_.begin(),
                       untracked_keys_.end());
    sweep_.owners = untracked_owners_;
  }
  sweeper_.Start([this] {
    uint64_t cpu = ThreadCpuNs();
    uint32_t mask = StateBit(kTcpCloseWait) | StateBit(kTcpFinWait2);
    if (sweep_.dump) {
      sweep_.sockets = options_.dump_kernel ? options_.dump_kernel(mask)
                                            : DumpTcpSockets(mask);
    } else {
      sweep_.sockets = options_.lookup_kernel ? options_.lookup_kernel(sweep_.keys)
                                              : LookupTcpSockets(sweep_.keys);
      // What a dump would show of them: those in either state.
      if (sweep_.sockets.ok()) {
        std::erase_if(*sweep_.sockets, [mask](const KernelSocket& k) {
          return k.state < 0 || k.state >= 32 || !(mask & StateBit(k.state));
        });
      }
    }
    sweep_.mono_ns = MonoNowNs();
    sweep_.cpu_ns += ThreadCpuNs() - cpu;
  });
}

void Session::AdvanceSweep() {
  if (sweep_.step == Sweep::Step::kIdle || !sweeper_.Idle()) return;
  if (sweep_.step == Sweep::Step::kDump && sweep_.dump && sweep_.sockets.ok()) {
    // Which of them the shim never reported, looked for among the audited
    // processes' descriptors: on the sweeper too, since a process may have
    // very many.
    for (const KernelSocket& k : *sweep_.sockets) {
      if (!analyzer_.Tracks(k.cookie) && k.inode != 0) {
        sweep_.untracked.insert(k.inode);
      }
    }
    if (!sweep_.untracked.empty()) {
      sweep_.step = Sweep::Step::kOwners;
      sweeper_.Start([this] {
        uint64_t cpu = ThreadCpuNs();
        sweep_.owners = FindSocketOwners(sweep_.pids, sweep_.untracked);
        sweep_.cpu_ns += ThreadCpuNs() - cpu;
      });
      return;
    }
  }
  RecordSweep();
  sweep_stats_.sweeps += 1;
  if (sweep_.dump) {
    sweep_stats_.dumps += 1;
    // The cheaper of the last two: the first is dearer (the thread's start).
    dump_cpu_ns_[1] = dump_cpu_ns_[0];
    dump_cpu_ns_[0] = sweep_.cpu_ns;
    // The sockets of audited processes the shim never reported: the
    // lookups until the next dump ask about them too.
    untracked_keys_.clear();
    untracked_owners_.clear();
    if (sweep_.sockets.ok()) {
      for (const KernelSocket& k : *sweep_.sockets) {
        auto it = sweep_.owners.find(k.inode);
        if (analyzer_.Tracks(k.cookie) || it == sweep_.owners.end()) continue;
        if (std::optional<SocketKey> key = KeyFromEndpoints(k.cookie, k.local, k.peer)) {
          untracked_keys_.push_back(*key);
          untracked_owners_.insert(*it);
        }
      }
    }
  }
  sweep_stats_.cpu_ns += sweep_.cpu_ns;
  sweep_stats_.last_cpu_ns = sweep_.cpu_ns;
  sweep_stats_.max_cpu_ns = std::max(sweep_stats_.max_cpu_ns, sweep_.cpu_ns);
  sample_interval_ns_ =
      sweep_budget_.NextIntervalNs(sweep_.started_ns, sweep_.cpu_ns);
  sweep_ = Sweep{};
}

void Session::FinishSweep() {
  while (sweep_.step != Sweep::Step::kIdle) {
    sweeper_.Wait();
    AdvanceSweep();
  }
}

void Session::RecordSweep() {
  if (!sweep_.sockets.ok()) {
    if (!kernel_warned_) {
      kernel_warned_ = true;
      fprintf(stderr,
              "closeaudit: cannot read the kernel's socket table (%s); "
              "findings will be inferred from the program's calls only\n",
              std::string(sweep_.sockets.status().message()).c_str());
    }
    return;
  }
  sweep_stats_.last_sockets = sweep_.sockets->size();
  // A record with no socket marks the sweep itself, so that the timelines
  // know the kernel was asked then even when it showed nothing.
  KernelRecord sweep;
  sweep.mono_ns = sweep_.mono_ns;
  Sink(std::move(sweep));
  for (const KernelSocket& k : *sweep_.sockets) {
    KernelRecord rec;
    // One the shim reported since the dump (an accept drained meanwhile)
    // is recorded as tracked.
    if (!analyzer_.Tracks(k.cookie)) {
      auto it = sweep_.owners.find(k.inode);
      if (it == sweep_.owners.end()) continue;  // not an audited process's socket
      for (const FdOwner& o : it->second) rec.owners.emplace_back(o.pid, o.fd);
    }
    rec.mono_ns = sweep_.mono_ns;
    rec.cookie = k.cookie;
    rec.inode = k.inode;
    rec.state = k.state;
    rec.send_queue = k.send_queue;
    rec.recv_queue = k.recv_queue;
    rec.local = k.local;
    rec.peer = k.peer;
    Sink(std::move(rec));
  }
}

absl::StatusOr<Report> Session::Finish() {
  // What is left is done at the process's priority.
  if (drain_priority_) drain_priority_->Stop();
  FinishSnapshots();
  FinishCompaction();
  options_.trace_limit = 0;  // none started on the way out
  if (control_) control_->Poll();  // the answers to `closeaudit snapshot`
  StopServing();
  collector_.DrainAll();
  SampleKernel();
  Sink(EndRecord{MonoNowNs()});
  if (absl::Status s = trace_.Flush(); !s.ok()) return s;
  Report report = analyzer_.Build(symbolizer_);
  ApplyFilter(options_.filter, report);
  if (absl::Status s = WriteReports(report, options_.out_dir, options_.json_path);
      !s.ok()) {
    return s;
  }
  return report;
}

void Session::StartSnapshot(std::function<void(absl::Status)> done) {
  snapshot_.next.push_back(std::move(done));
  if (!snapshot_.busy) BeginSnapshot();
}

void Session::BeginSnapshot() {
  std::vector<std::function<void(absl::Status)>> asked;
  asked.swap(snapshot_.next);
  collector_.DrainAll();
  if (absl::Status s = trace_.Flush(); !s.ok()) {
    for (auto& done : asked) done(s);
    return;
  }
  snapshot_.busy = true;
  snapshot_.waiting = std::move(asked);
  reporter_.Start([this, as_of = MonoNowNs()] {
    if (options_.on_snapshot) options_.on_snapshot();
    Report report = analyzer_.Build(symbolizer_, as_of);
    ApplyFilter(options_.filter, report);
    snapshot_.status = WriteReports(report, options_.out_dir, options_.json_path);
    report = Report{};
    // This thread's malloc arena would otherwise keep the pages the report
    // used until the next snapshot, for nothing.
    malloc_trim(0);
  });
}

void Session::AdvanceSnapshot() {
  if (!snapshot_.busy || !reporter_.Idle()) return;
  snapshot_.busy = false;
  std::vector<Record> deferred;
  deferred.swap(snapshot_.deferred);
  snapshot_.deferred_events = 0;
  for (const Record& record : deferred) analyzer_.Add(record);
  std::vector<std::function<void(absl::Status)>> waiting;
  waiting.swap(snapshot_.waiting);
  for (auto& done : waiting) done(snapshot_.status);
  if (!snapshot_.next.empty()) BeginSnapshot();
}

void Session::FinishSnapshots() {
  while (snapshot_.busy) {
    reporter_.Wait();
    AdvanceSnapshot();
  }
}

absl::Status Session::WriteSnapshot() {
  absl::Status result;
  StartSnapshot([&result](absl::Status s) { result = std::move(s); });
  FinishSnapshots();
  return result;
}

LiveStatus Session::Live() {
  uint64_t now = MonoNowNs();
  if (live_ns_ != 0 && now - live_ns_ < 1'000'000'000) return live_;
  collector_.DrainAll();
  live_ = analyzer_.Live(now);
  live_.events += snapshot_.deferred_events;
  live_.sweeps = sweep_stats_;
  live_.longest_turn_ns = collector_.longest_away_ns();
  live_.drain_lowered = drain_priority_ && drain_priority_->lowered();
  live_.drain_raises = drain_priority_ ? drain_priority_->raises() : 0;
  live_.dropped += collector_.live_dropped_events();
  // A process that exec'd takes its ring's count along until its exit
  // record: what was shown once stays counted.
  dropped_floor_ = std::max(dropped_floor_, live_.dropped);
  live_.dropped = dropped_floor_;
  live_ns_ = now;
  return live_;
}

void Session::StopServing() {
  if (control_) {
    control_.reset();
    ::unlink((options_.out_dir + "/" + kControlFileName).c_str());
  }
  metrics_.reset();
}

absl::Status Session::ServeControl(const std::string& path) {
  control_ = std::make_unique<RequestServer>(
      "\n", [this](std::string_view r, RequestServer::Reply later) {
        return Control(r, std::move(later));
      });
  return control_->ListenUnix(path);
}

absl::StatusOr<std::string> Session::ServeMetrics(const std::string& host_port) {
  metrics_ = std::make_unique<RequestServer>(
      "\r\n\r\n", [this](std::string_view r, RequestServer::Reply) {
        return std::optional<std::string>(Http(r));
      });
  return metrics_->ListenTcp(host_port);
}

// One line in, the answer out: "status", "status json" or "snapshot".
std::optional<std::string> Session::Control(std::string_view request,
                                            RequestServer::Reply later) {
  if (!request.empty() && request.back() == '\r') request.remove_suffix(1);
  if (request == "status") return StatusTable(Live());
  if (request == "status json") return StatusJson(Live());
  if (request == "snapshot") {
    // Answered once the reports are written; draining goes on meanwhile.
    StartSnapshot([this, later = std::move(later)](absl::Status s) {
      later(s.ok() ? absl::StrCat("reports written to ", options_.out_dir, "\n")
                   : absl::StrCat("error: ", s.message(), "\n"));
    });
    return std::nullopt;
  }
  return absl::StrCat("error: unknown request '", std::string(request),
                      "' (status, status json, snapshot)\n");
}

// An HTTP/1.x request head in, a whole response out (then the connection
// closes): GET /metrics, in Prometheus' text format.
std::string Session::Http(std::string_view request) {
  auto respond = [](int code, const char* reason, const char* type,
                    const std::string& body, bool head) {
    return absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ",
                        type, "\r\nContent-Length: ", body.size(),
                        "\r\nConnection: close\r\n\r\n", head ? "" : body);
  };
  std::string_view line = request.substr(0, request.find("\r\n"));
  size_t sp1 = line.find(' ');
  size_t sp2 = line.find(' ', sp1 == std::string_view::npos ? sp1 : sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.substr(sp2 + 1).substr(0, 5) != "HTTP/") {
    return respond(400, "Bad Request", "text/plain", "bad request\n", false);
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  bool head = method == "HEAD";
  if (method != "GET" && !head) {
    return respond(405, "Method Not Allowed", "text/plain",
                   "only GET /metrics\n", false);
  }
  if (target == "/metrics") {
    return respond(200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                   MetricsText(Live(), &metrics_floor_), head);
  }
  return respond(404, "Not Found", "text/plain",
                 "closeaudit serves /metrics only\n", head);
}

absl::StatusOr<std::string> AskControl(const std::string& dir,
                                       const std::string& request) {
  std::string path;
  {
    std::ifstream in(dir + "/" + kControlFileName);
    if (!std::getline(in, path) || path.empty()) {
      struct stat st;
      if (::stat((dir + "/report.json").c_str(), &st) == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the run in ", dir, " has finished; its reports are there"));
      }
      return absl::NotFoundError(
          absl::StrCat("no running closeaudit collector in ", dir));
    }
  }
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("control socket path too long: " + path);
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat(
        "the collector of ", dir, " does not answer (", strerror(err),
        "): it has stopped; `closeaudit report ", dir,
        "` rebuilds the reports from its trace"));
  }
  std::string line = request + "\n";
  std::string answer;
  bool sent = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL) ==
              static_cast<ssize_t>(line.size());
  // A snapshot symbolizes every stack: give it time.
  constexpr int kAnswerTimeoutMs = 60'000;
  pollfd p{fd, POLLIN, 0};
  while (sent && ::poll(&p, 1, kAnswerTimeoutMs) == 1) {
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (answer.empty()) {
    return absl::DeadlineExceededError(
        absl::StrCat("the collector of ", dir, " gave no answer"));
  }
  return answer;
}

absl::Status WriteReports(const Report& report, const std::string& dir,
                          const std::string& json_path) {
  std::string json = RenderJson(report);
  if (!dir.empty()) {
    if (absl::Status s = WriteFileAtomically(dir + "/report.json", json); !s.ok()) {
      return s;
    }
    static constexpr std::pair<const char*, const char*> kFiles[] = {
        {"text", "report.txt"}, {"html", "report.html"},
        {"folded", "report.folded"}};
    for (const auto& [format, file] : kFiles) {
      if (absl::Status s = WriteFileAtomically(absl::StrCat(dir, "/", file),
                                               *RenderAs(report, format));
          !s.ok()) {
        return s;
      }
    }
  }
  if (!json_path.empty()) return WriteFileAtomically(json_path, json);
  return absl::OkStatus();
}

absl::StatusOr<Report> ReportFromTrace(const std::string& dir,
                                       AnalyzerOptions options) {
  Analyzer analyzer(options);
  std::string warning;
  absl::Status s = ReadTrace(dir + "/" + kTraceFileName,
                             [&](const Record& r) { analyzer.Add(r); }, &warning);
  if (!s.ok()) return s;
  Symbolizer symbolizer;
  Report report = analyzer.Build(symbolizer);
  if (!warning.empty()) report.warnings.insert(report.warnings.begin(), warning);
  return report;
}

}  // namespace closeaudit
