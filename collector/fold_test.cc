// Analyzer::Fold(): a run whose registry folds as it goes reports what the
// same run reports with every socket kept.
#include <stdlib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "collector/analyzer.h"
#include "collector/analyzer_feed.h"
#include "collector/compact.h"
#include "collector/trace.h"
#include "collector/report.h"
#include "common/wire.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

using namespace testing_feed;  // NOLINT: the fixtures of collector/analyzer_feed.h

constexpr uint16_t kConnected = wire::kStateConnected;

// A server that accepts a connection every 10 ms for `seconds`, each of them
// one of ten stories, two of which (the server's close first) add up to
// time_wait; and now and then a double close. The grace period is 1 s.
void Serve(Feed& run, int seconds) {
  run.Process(1, 100);
  uint64_t cookie = 1000;
  const uint64_t step = 10 * kMs;
  const int n = seconds * 100;
  for (int i = 0; i < n; ++i) {
    uint64_t t = kT0 + static_cast<uint64_t>(i) * step;
    int fd = 10 + i % 50;
    if (i % 1000 == 500) {
      // Now and then the last connection's number closed a second time
      // (bad_close), once its socket is gone.
      run.Event(1, wire::EventType::kCloseUntracked, 10 + (i - 1) % 50, 0, t, 0,
                kCloseRef);
    }
    ++cookie;
    run.Event(1, wire::EventType::kAccept, fd, cookie, t, kTcp, kAcceptRef, 3,
              0, kConnected);
    run.Address(1, fd, cookie, static_cast<uint8_t>(2 + i % 3));
    auto close = [&](uint64_t at, uint32_t ref = kCloseRef, uint16_t state = 0) {
      run.Event(1, wire::EventType::kClose, fd, cookie, at, 0, ref, 0, 0,
                static_cast<uint16_t>(kConnected | state));
    };
    switch (i % 10) {
      case 0:  // the peer closes first, and the server at once
      case 1:
        run.Eof(1, fd, cookie, t + kMs);
        close(t + 2 * kMs);
        break;
      case 2:  // the server closes first
      case 3:
        close(t + 2 * kMs);
        break;
      case 4:  // the same, at another place
        close(t + 2 * kMs, kEofRef2);
        break;
      case 5:  // the peer closes first; the close comes late (a leak)
        if (i % 100 == 5) {
          run.Eof(1, fd, cookie, t + kMs);
          close(t + 3 * kSec);
        } else {
          close(t + 3 * kMs);
        }
        break;
      case 6:  // shutdown, then the peer's EOF, then close: fine
        run.Event(1, wire::EventType::kShutdown, fd, cookie, t + kMs, kTcp,
                  kEofRef2, 0, SHUT_WR, kConnected);
        run.Eof(1, fd, cookie, t + 2 * kMs);
        close(t + 3 * kMs);
        break;
      case 7:  // now and then shut down and held for 2 s (fin_wait2_held)
        if (i % 200 == 7) {
          run.Event(1, wire::EventType::kShutdown, fd, cookie, t + kMs, kTcp,
                    kEofRef2, 0, SHUT_WR, kConnected);
          close(t + 2 * kSec);
        } else {
          close(t + kMs);
        }
        break;
      case 8:  // now and then SO_LINGER {1, 0}
        close(t + kMs, kCloseRef, i % 300 == 8 ? wire::kStateLinger0 : 0);
        break;
      case 9:  // now and then never closed after the EOF; or seen by the kernel
        if (i % 500 == 9) {
          run.Eof(1, fd + 100, cookie, t + kMs);
        } else if (i % 500 == 19) {
          run.Kernel(t + kMs, cookie, cookie + 1000, 8);
          close(t + 2 * kMs);
        } else {
          run.Eof(1, fd, cookie, t + kMs);
          close(t + kMs);
        }
        break;
    }
  }
  run.End(kT0 + static_cast<uint64_t>(seconds + 10) * kSec);
}

std::string Describe(const Finding& f) {
  std::string s = absl::StrCat(f.kind, " ", f.severity, " x", f.count, " ",
                               f.message, " | ", f.advice, " began ",
                               f.began_ms.value_or(-1), " pid ", f.began_pid,
                               " examples ", f.examples.size());
  for (const auto& [name, frames] : f.stacks) {
    absl::StrAppend(&s, " ", name, ":");
    for (const Frame& frame : frames) absl::StrAppend(&s, frame.address, ",");
  }
  for (const PeerCount& p : f.peers) absl::StrAppend(&s, " ", p.peer, "=", p.count);
  return s;
}

std::vector<std::string> Findings(const Report& r) {
  std::vector<std::string> out;
  for (const Finding& f : r.findings) out.push_back(Describe(f));
  return out;
}

int64_t Peak(const Report& r) {
  int64_t peak = 0;
  for (const ProcessTimeline& t : r.timelines) {
    for (const TimelinePoint& p : t.points) peak = std::max(peak, p.open);
  }
  return peak;
}

AnalyzerOptions FoldAt(uint32_t n) {
  AnalyzerOptions options;
  options.fold_at = n;
  return options;
}

// The same run twice: every socket kept, and folded as often as it can be.
struct Twins {
  explicit Twins(int seconds) {
    Serve(whole, seconds);
    Serve(folded, seconds);
  }
  Feed whole{kSec, FoldAt(0)};
  Feed folded{kSec, FoldAt(256)};
};

TEST(Fold, AFoldedRunReportsWhatTheWholeRunReports) {
  Twins twins(60);
  Feed& whole = twins.whole;
  Feed& folded = twins.folded;

  ASSERT_EQ(whole.analyzer().sockets_folded(), 0);
  EXPECT_GT(folded.analyzer().sockets_folded(), 5000);
  // What stays: the leaks, the first examples, the last few seconds.
  EXPECT_LT(folded.analyzer().sockets_held(), 1000u);

  Report a = whole.Build();
  Report b = folded.Build();
  std::vector<std::string> kinds;
  for (const Finding& f : a.findings) kinds.push_back(f.kind);
  EXPECT_THAT(kinds, ::testing::IsSupersetOf({"close_wait_leak", "time_wait",
                                               "fin_wait2_held",
                                               "abortive_close"}));
  EXPECT_THAT(Findings(b), ::testing::ElementsAreArray(Findings(a)));
  EXPECT_EQ(b.sockets_tracked, a.sockets_tracked);
  EXPECT_EQ(b.sockets_tracked, 6000);
  EXPECT_EQ(b.events, a.events);
  EXPECT_EQ(b.processes_with_sockets, a.processes_with_sockets);
  // The timeline: the same process, as many sockets left open at the end.
  ASSERT_EQ(b.timelines.size(), 1u);
  ASSERT_EQ(a.timelines.size(), 1u);
  EXPECT_EQ(b.timelines[0].points.back().open, a.timelines[0].points.back().open);
  EXPECT_GT(Peak(b), 0);
  EXPECT_LE(Peak(b), Peak(a) + 1);
}

// The live counts come from the same rules.
TEST(Fold, LiveCountsAgree) {
  Twins twins(30);
  Feed& whole = twins.whole;
  Feed& folded = twins.folded;
  uint64_t now = kT0 + 40 * kSec;
  LiveStatus a = whole.analyzer().Live(now);
  LiveStatus b = folded.analyzer().Live(now);
  EXPECT_EQ(b.findings, a.findings);
  EXPECT_EQ(b.finding_sockets, a.finding_sockets);
  EXPECT_EQ(b.open_sockets, a.open_sockets);
  EXPECT_EQ(b.close_wait, a.close_wait);
}

// Nothing folds while a late record may still come of it: within a second
// of its close.
TEST(Fold, KeepsWhatIsRecent) {
  Feed run(kSec, FoldAt(0));
  run.Process(1, 100);
  for (uint64_t i = 0; i < 100; ++i) {
    run.Event(1, wire::EventType::kAccept, 5, 200 + i, kT0 + i * kMs, kTcp,
              kAcceptRef, 3, 0, kConnected);
    run.Event(1, wire::EventType::kClose, 5, 200 + i, kT0 + i * kMs + 1, 0,
              kCloseRef, 0, 0, kConnected);
  }
  // 0.9 s after the last close: within the margin.
  run.Add(ExitRecord{1, kT0 + 1000 * kMs, 0, 0, 0, 0});
  Analyzer& a = run.analyzer();
  a.Fold();
  EXPECT_EQ(a.sockets_folded(), 0);
  run.End(kT0 + 3 * kSec);
  a.Fold();
  // All are time_wait; the first five stay as the finding's examples.
  EXPECT_EQ(a.sockets_folded(), 95);
  Report r = run.Build();
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].kind, "time_wait");
  EXPECT_EQ(r.findings[0].count, 100);
  EXPECT_EQ(r.findings[0].examples.size(), 5u);
  EXPECT_EQ(r.sockets_tracked, 100);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

Report ReportOf(const std::string& trace, std::string* warning) {
  Analyzer analyzer;
  EXPECT_TRUE(ReadTrace(trace, [&](const Record& r) { analyzer.Add(r); }, warning)
                  .ok());
  Symbolizer symbolizer;
  return analyzer.Build(symbolizer);
}

// A trace compacted part-way, as the collector does when its trace reaches
// --trace-limit (the compacted part, then the rest as it was), reports
// what the whole trace reports; and so after a second compaction, which
// reads the first's FoldRecords.
TEST(Fold, ACompactedTraceReportsWhatTheWholeOneDoes) {
  std::vector<Record> records;
  Feed run(kSec, FoldAt(0));
  run.Tap(&records);
  Serve(run, 60);
  char tmpl[] = "/tmp/closeaudit-fold-test-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string whole = dir + "/whole", first = dir + "/first",
                    second = dir + "/second";
  uint64_t prefix = 0;
  {
    TraceWriter w;
    ASSERT_TRUE(w.Open(whole).ok());
    // Compacted just before a double close, whose socket's records are in
    // the compacted part.
    size_t cut = records.size() * 2 / 5;
    while (cut < records.size() &&
           !(std::holds_alternative<EventRecord>(records[cut]) &&
             std::get<EventRecord>(records[cut]).event.type ==
                 wire::EventType::kCloseUntracked)) {
      ++cut;
    }
    ASSERT_LT(cut, records.size());
    for (size_t i = 0; i < records.size(); ++i) {
      if (i == cut) {
        ASSERT_TRUE(w.Flush().ok());
        prefix = Slurp(whole).size();
      }
      w.Append(records[i]);
    }
  }
  const std::string bytes = Slurp(whole);
  absl::StatusOr<CompactStats> one = CompactTrace(whole, prefix, first, FoldAt(256));
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->warning, "");
  EXPECT_GT(one->sockets_folded, 1500);
  EXPECT_LT(one->bytes_out * 4, one->bytes_in);
  {
    std::ofstream out(first, std::ios::binary | std::ios::app);
    out << bytes.substr(prefix);
  }
  absl::StatusOr<CompactStats> two =
      CompactTrace(first, Slurp(first).size(), second, FoldAt(256));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_GT(two->sockets_folded, 5000);
  EXPECT_LT(two->bytes_out * 4, bytes.size());

  std::string warning;
  Report a = ReportOf(whole, &warning);
  EXPECT_EQ(warning, "");
  ASSERT_EQ(a.sockets_tracked, 6000);
  std::vector<std::string> kinds;
  for (const Finding& f : a.findings) kinds.push_back(f.kind);
  EXPECT_THAT(kinds, ::testing::Contains("bad_close"));
  for (const std::string& compacted : {first, second}) {
    SCOPED_TRACE(compacted);
    Report b = ReportOf(compacted, &warning);
    EXPECT_EQ(warning, "");
    EXPECT_THAT(Findings(b), ::testing::ElementsAreArray(Findings(a)));
    EXPECT_EQ(b.sockets_tracked, a.sockets_tracked);
    EXPECT_EQ(b.events, a.events);
    EXPECT_EQ(b.processes_with_sockets, a.processes_with_sockets);
    ASSERT_EQ(b.timelines.size(), 1u);
    EXPECT_EQ(b.timelines[0].points.back().open, a.timelines[0].points.back().open);
    EXPECT_GT(Peak(b), 0);
  }
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace closeaudit
