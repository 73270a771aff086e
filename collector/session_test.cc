#include "collector/session.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace closeaudit {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kBase = kKernelSampleMs * kMs;

// Sweeps that cost `cost` each, at the intervals the budget asks for:
// the intervals.
std::vector<uint64_t> Sweeps(SweepBudget& budget, uint64_t cost, int sweeps) {
  std::vector<uint64_t> intervals;
  uint64_t now = 1'000 * kMs;
  for (int i = 0; i < sweeps; ++i) {
    uint64_t wait = budget.NextIntervalNs(now, cost);
    intervals.push_back(wait);
    now += wait;
  }
  return intervals;
}

TEST(SweepBudget, CheapSweepsRunAtTheBaseRate) {
  SweepBudget budget;
  for (uint64_t wait : Sweeps(budget, kMs / 2, 1000)) EXPECT_EQ(wait, kBase);
}

// A short run sweeps at the base rate whatever the table: a few seconds of
// sweeps that cost 10 ms each (a machine with many TIME_WAIT sockets from
// other programs) fit in the burst.
TEST(SweepBudget, AShortRunSweepsAtTheBaseRateOnALargeTable) {
  SweepBudget budget;
  std::vector<uint64_t> waits = Sweeps(budget, 10 * kMs, 12);
  for (uint64_t wait : waits) EXPECT_EQ(wait, kBase);
}

// Under load the sweeps come down to a quarter of a percent of a core: 40 ms
// sweeps (about 100,000 TIME_WAIT minisockets) every 16 s.
TEST(SweepBudget, CostlySweepsTakeAtMostAQuarterOfAPercent) {
  SweepBudget budget;
  std::vector<uint64_t> waits = Sweeps(budget, 40 * kMs, 200);
  uint64_t total = 0;
  for (size_t i = 100; i < waits.size(); ++i) total += waits[i];
  EXPECT_EQ(waits.back(), 16'000 * kMs);
  EXPECT_GE(total / 400, 100 * 40 * kMs);  // 0.25% or less of the time
}

TEST(SweepBudget, NeverLongerThanTheCeiling) {
  SweepBudget budget;
  for (uint64_t wait : Sweeps(budget, 5'000 * kMs, 20)) {
    EXPECT_LE(wait, kKernelSampleMaxMs * kMs);
  }
  EXPECT_EQ(budget.NextIntervalNs(1'000'000 * kMs, UINT64_MAX),
            kKernelSampleMaxMs * kMs);
}

// A session in a directory of its own, whose kernel sweeps answer with
// `dump`.
struct SessionDir {
  std::string dir;
  explicit SessionDir() {
    char tmpl[] = "/tmp/closeaudit-session-test-XXXXXX";
    dir = mkdtemp(tmpl);
  }
  ~SessionDir() { std::system(("rm -rf " + dir).c_str()); }
  SessionOptions Options() const {
    SessionOptions o;
    o.out_dir = dir + "/out";
    o.socket_path = dir + "/collector.sock";
    return o;
  }
};

// What a background job waits on, so that a test sees what goes on
// meanwhile: at most a while, so that a session that waited for the job
// fails the test instead of hanging it.
struct Gate {
  std::promise<void> opened;
  std::shared_future<void> open = opened.get_future().share();
  void Wait() { open.wait_for(std::chrono::seconds(10)); }
  void Open() { opened.set_value(); }
};

// A sweep waits on the kernel on a thread of its own: polling (draining)
// goes on meanwhile, and SampleKernel() waits for it before its own.
TEST(Session, AKernelSweepInFlightDoesNotHoldUpPolling) {
  SessionDir d;
  Gate gate;
  std::atomic<int> dumps{0};
  std::atomic<bool> answered{false};
  SessionOptions o = d.Options();
  o.dump_kernel = [&](uint32_t) -> absl::StatusOr<std::vector<KernelSocket>> {
    // The first one waits.
    if (dumps.fetch_add(1) == 0) {
      gate.Wait();
      answered = true;
    }
    KernelSocket k;
    k.cookie = 77;
    k.inode = 123456789;  // no descriptor of ours: nobody's
    k.state = kTcpCloseWait;
    return std::vector<KernelSocket>{k};
  };
  Session session(o);
  ASSERT_TRUE(session.Start().ok());
  session.WatchPid(static_cast<uint32_t>(getpid()));
  session.Poll(0);  // the first sweep starts
  for (int i = 0; i < 1000 && dumps.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(dumps.load(), 1);
  for (int i = 0; i < 5; ++i) session.Poll(0);
  EXPECT_FALSE(answered.load());
  EXPECT_EQ(dumps.load(), 1);
  EXPECT_EQ(session.sweep_stats().sweeps, 0u);
  gate.Open();
  session.SampleKernel();
  EXPECT_TRUE(answered.load());
  EXPECT_EQ(dumps.load(), 2);
  EXPECT_EQ(session.sweep_stats().sweeps, 2u);
  EXPECT_EQ(session.sweep_stats().last_sockets, 1u);
  EXPECT_TRUE(session.Finish().ok());
  EXPECT_EQ(session.sweep_stats().sweeps, 3u);
}

// A kernel that cannot be asked ends each sweep at once, with nothing
// recorded, and the session goes on.
TEST(Session, ASweepTheKernelRefusesEndsAndIsCounted) {
  SessionDir d;
  SessionOptions o = d.Options();
  o.dump_kernel = [](uint32_t) -> absl::StatusOr<std::vector<KernelSocket>> {
    return absl::PermissionDeniedError("no sock_diag here");
  };
  Session session(o);
  ASSERT_TRUE(session.Start().ok());
  session.WatchPid(static_cast<uint32_t>(getpid()));
  session.SampleKernel();
  session.SampleKernel();
  EXPECT_EQ(session.sweep_stats().sweeps, 2u);
  EXPECT_EQ(session.sweep_stats().last_sockets, 0u);
  EXPECT_TRUE(session.Finish().ok());
}

// Between dumps, sweeps ask about sockets one by one: here the socket of
// ours the shim never reported (this test has no shim), found by the dump,
// is asked about by its endpoints and cookie, and recorded again.
TEST(Session, SweepsBetweenDumpsLookSocketsUp) {
  SessionDir d;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  KernelSocket k;
  k.cookie = 77;
  k.inode = st.st_ino;  // one of our descriptors: its owner is found
  k.state = kTcpCloseWait;
  k.family = AF_INET;
  k.local = "127.0.0.1:1000";
  k.peer = "127.0.0.1:2000";
  std::atomic<int> dumps{0};
  std::atomic<int> lookups{0};
  std::vector<SocketKey> asked;  // by the sweeper, read once it is done
  SessionOptions o = d.Options();
  o.lookup_above_ns = 0;  // however cheap the dumps
  o.dump_kernel = [&](uint32_t) -> absl::StatusOr<std::vector<KernelSocket>> {
    ++dumps;
    return std::vector<KernelSocket>{k};
  };
  o.lookup_kernel = [&](const std::vector<SocketKey>& keys)
      -> absl::StatusOr<std::vector<KernelSocket>> {
    ++lookups;
    asked = keys;
    KernelSocket established = k;
    established.cookie = 78;
    established.state = kTcpEstablished;  // not recorded
    return std::vector<KernelSocket>{k, established};
  };
  Session session(o);
  ASSERT_TRUE(session.Start().ok());
  session.WatchPid(static_cast<uint32_t>(getpid()));
  session.SampleKernel();
  session.SampleKernel();  // two: the cheaper of two dumps is judged
  EXPECT_EQ(dumps.load(), 2);
  EXPECT_EQ(session.sweep_stats().dumps, 2u);
  std::this_thread::sleep_for(std::chrono::milliseconds(kKernelSampleMs + 50));
  for (int i = 0; i < 2000 && session.sweep_stats().sweeps < 3; ++i) {
    session.Poll(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(session.sweep_stats().sweeps, 3u);
  EXPECT_EQ(dumps.load(), 2);
  EXPECT_EQ(lookups.load(), 1);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].cookie, 77u);
  EXPECT_EQ(asked[0].local_port, 1000);
  EXPECT_EQ(asked[0].peer_port, 2000);
  EXPECT_EQ(session.sweep_stats().last_sockets, 1u);
  absl::StatusOr<Report> report = session.Finish();  // a dump, the last
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(dumps.load(), 3);
  close(fd);
}

std::string ReadFile(const std::string& path) {
  std::string text;
  if (FILE* f = fopen(path.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
    fclose(f);
  }
  return text;
}

// A snapshot is made on a thread of its own: polling (draining) goes on
// meanwhile, and what arrives then reaches the analyzer once it is made,
// in order, so that it is in the next report and not in this one.
TEST(Session, ASnapshotInFlightDoesNotHoldUpPolling) {
  SessionDir d;
  Gate gate;
  std::atomic<int> started{0};
  SessionOptions o = d.Options();
  o.on_snapshot = [&] {
    if (started.fetch_add(1) == 0) gate.Wait();  // the first one
  };
  Session session(o);
  ASSERT_TRUE(session.Start().ok());
  session.AddWarning("before the snapshot");
  std::vector<absl::Status> done;
  session.StartSnapshot([&done](absl::Status s) { done.push_back(s); });
  for (int i = 0; i < 1000 && started.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(started.load(), 1);
  session.AddWarning("during the snapshot");
  // A second one asked for meanwhile follows the first.
  session.StartSnapshot([&done](absl::Status s) { done.push_back(s); });
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) session.Poll(0);
  LiveStatus live = session.Live();  // reads beside the snapshot's thread
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(done.empty());
  EXPECT_EQ(started.load(), 1);
  EXPECT_EQ(live.findings, 0);

  gate.Open();
  // While the report is being made (TSan sees a race if this reached the
  // analyzer).
  session.AddWarning("while it is made");
  for (int i = 0; i < 1000 && done.empty(); ++i) session.Poll(5);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].ok()) << done[0];
  // The first snapshot: as of its start.
  std::string first = ReadFile(o.out_dir + "/report.json");
  EXPECT_NE(first.find("before the snapshot"), std::string::npos) << first;
  EXPECT_EQ(first.find("during the snapshot"), std::string::npos) << first;

  session.FinishSnapshots();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_TRUE(done[1].ok()) << done[1];
  EXPECT_EQ(started.load(), 2);
  std::string second = ReadFile(o.out_dir + "/report.json");
  EXPECT_NE(second.find("during the snapshot"), std::string::npos) << second;
  EXPECT_NE(second.find("while it is made"), std::string::npos) << second;
  EXPECT_TRUE(session.Finish().ok());
}

// The trace is compacted when it reaches the limit, on the thread or in a
// process of its own (the closeaudit binary, CLOSEAUDIT_EXE), and a
// compaction that fails (here: its file cannot be made, or the binary is
// not there) leaves the trace as it was, with nothing lost, and no more are
// tried.
TEST(Session, ACompactionThatFailsLosesNothing) {
  const char* exe = getenv("CLOSEAUDIT_EXE");
  ASSERT_NE(exe, nullptr) << "CLOSEAUDIT_EXE: the closeaudit binary";
  const std::pair<std::string, bool> cases[] = {
      {"", false}, {"", true}, {exe, false}, {exe, true},
      {"/nonexistent/closeaudit", true}};
  for (const auto& [apart, fail] : cases) {
    SCOPED_TRACE(apart);
    SCOPED_TRACE(fail);
    SessionDir d;
    SessionOptions o = d.Options();
    o.trace_limit = 16 << 10;
    o.compactor_exe = apart;
    ASSERT_EQ(system(("mkdir -p " + o.out_dir).c_str()), 0);
    const std::string compact = o.out_dir + "/" + kTraceFileName + ".compact";
    const bool no_dir = fail && !apart.starts_with("/nonexistent");
    if (no_dir) {
      ASSERT_EQ(mkdir(compact.c_str(), 0700), 0);
    }
    Session session(o);
    ASSERT_TRUE(session.Start().ok());
    // What zstd cannot shrink, so that the trace passes the limit.
    uint64_t seed = 88172645463325252ull;
    for (int i = 0; i < 100; ++i) {
      std::string filler;
      for (int j = 0; j < 1000; ++j) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        filler.push_back(static_cast<char>('a' + seed % 26));
      }
      session.AddWarning("note " + std::to_string(i) + " " + filler);
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
      session.Poll(0);
    }
    absl::StatusOr<Report> report = session.Finish();
    ASSERT_TRUE(report.ok()) << report.status();
    if (fail) {
      EXPECT_EQ(session.compactions(), 0);
    } else {
      EXPECT_GT(session.compactions(), 0);
    }
    absl::StatusOr<Report> again = ReportFromTrace(o.out_dir, {});
    ASSERT_TRUE(again.ok()) << again.status();
    for (const Report* r : {&*report, &*again}) {
      int notes = 0;
      for (const std::string& w : r->warnings) notes += w.starts_with("note ");
      EXPECT_EQ(notes, 100);
    }
    struct stat st;
    EXPECT_EQ(stat(compact.c_str(), &st) == 0, no_dir);  // the directory
  }
}

}  // namespace
}  // namespace closeaudit
