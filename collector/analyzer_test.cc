// Golden-style tests of the Analyzer: hand-built records in, Report out.
//
// The module the stacks point into does not exist on disk, so the (real)
// Symbolizer answers with one unsymbolized frame per address; that is enough
// to see which stack a finding carries.
#include "collector/analyzer.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "collector/analyzer_feed.h"
#include "collector/kernel.h"
#include "collector/records.h"
#include "collector/report.h"
#include "collector/symbolizer.h"
#include "common/version.h"
#include "common/wire.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

using namespace testing_feed;  // NOLINT: the fixtures of collector/analyzer_feed.h

// Three accepted TCP connections whose peers closed at `eof`, +10 ms, +20 ms.
void ThreeEofs(Feed& run, uint64_t eof, uint8_t flags = kTcp) {
  for (int i = 0; i < 3; ++i) {
    run.Accept(1, 5 + i, 101 + i, kT0 + i * 10 * kMs, flags);
  }
  for (int i = 0; i < 3; ++i) {
    run.Eof(1, 5 + i, 101 + i, eof + i * 10 * kMs, kEofRef, flags);
  }
}

// (a)
TEST(Analyzer, NeverClosedAfterEofIsOneLeakFinding) {
  Feed run;
  run.Process(1, 100);
  const uint64_t eof = kT0 + kSec;
  ThreeEofs(run, eof);
  const uint64_t end = eof + 20 * kMs + 3 * kSec;  // 3 s after the last EOF
  run.End(end);

  Report r = run.Build();
  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.kind, "close_wait_leak");
  EXPECT_EQ(f.severity, "error");
  EXPECT_EQ(f.count, 3);
  EXPECT_THAT(f.message, HasSubstr("never closed"));
  EXPECT_THAT(f.advice, Not(IsEmpty()));

  ASSERT_EQ(f.examples.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const Example& ex = f.examples[i];  // ordered by EOF time
    EXPECT_EQ(ex.pid, 100u);
    EXPECT_EQ(ex.fd, 5 + i);
    EXPECT_FALSE(ex.closed_after_ms.has_value());
    EXPECT_EQ(ex.tcp_state, std::optional<std::string>("CLOSE_WAIT"));
    EXPECT_EQ(ex.eof_to_end_ms, std::optional<int64_t>(3020 - 10 * i));
    EXPECT_EQ(ex.age_ms, 4020 - 10 * i);  // creation to the end
  }

  // The stacks: where the EOF was seen, where the socket came from, and the
  // last read before the EOF, in that order.
  ASSERT_EQ(f.stacks.size(), 3u);
  EXPECT_EQ(f.stacks[0].first, "eof_seen");
  EXPECT_EQ(f.stacks[1].first, "created");
  EXPECT_EQ(f.stacks[2].first, "last_use");
  EXPECT_THAT(Addresses(f.stacks[0].second), ElementsAreArray(kEofFrames));
  EXPECT_THAT(Addresses(f.stacks[1].second), ElementsAreArray(kAcceptFrames));
  EXPECT_THAT(Addresses(f.stacks[2].second), ElementsAre(kLastUseIp));
  for (const Frame& frame : f.stacks[0].second) {
    EXPECT_EQ(frame.module, kModulePath);
  }

  EXPECT_EQ(r.processes, 1);
  EXPECT_EQ(r.sockets_tracked, 3);
  EXPECT_EQ(r.events, 6);
  EXPECT_EQ(r.events_dropped, 0);
  EXPECT_EQ(r.grace_ms, 1000u);
  EXPECT_DOUBLE_EQ(r.duration_s, 4.02);
}

TEST(Analyzer, NonInetStreamHasNoTcpState) {
  Feed run;
  run.Process(1, 100);
  ThreeEofs(run, kT0 + kSec, wire::kFlagStream);  // AF_UNIX stream
  run.End(kT0 + 10 * kSec);
  Report r = run.Build();
  ASSERT_EQ(r.findings.size(), 1u);
  ASSERT_FALSE(r.findings[0].examples.empty());
  for (const Example& ex : r.findings[0].examples) {
    EXPECT_FALSE(ex.tcp_state.has_value());
  }
}

TEST(Analyzer, OpenButWithinGraceIsNotReported) {
  Feed run;
  run.Process(1, 100);
  ThreeEofs(run, kT0 + kSec);
  run.End(kT0 + kSec + 20 * kMs + 500 * kMs);
  EXPECT_THAT(run.Build().findings, IsEmpty());
  // The same data judged later shows the leak.
  EXPECT_THAT(run.Build(kT0 + 10 * kSec).findings, Not(IsEmpty()));
}

// (b)
TEST(Analyzer, ClosedSoonAfterEofIsNotReported) {
  Feed run;
  run.Process(1, 100);
  const uint64_t eof = kT0 + kSec;
  ThreeEofs(run, eof);
  for (int i = 0; i < 3; ++i) {
    run.Close(1, 5 + i, 101 + i, eof + i * 10 * kMs + 100 * kMs);
  }
  run.End(eof + 10 * kSec);
  Report r = run.Build();
  EXPECT_THAT(r.findings, IsEmpty());
  EXPECT_EQ(r.sockets_tracked, 3);
  EXPECT_EQ(r.events, 9);
}

// (c)
TEST(Analyzer, LateCloseIsReportedWithClosedAfter) {
  Feed run(2 * kSec);
  run.Process(1, 100);
  const uint64_t eof = kT0 + kSec;
  run.Accept(1, 5, 101, kT0);
  run.Eof(1, 5, 101, eof);
  run.Close(1, 5, 101, eof + 8 * kSec);
  run.End(eof + 20 * kSec);
  Report r = run.Build();
  EXPECT_EQ(r.grace_ms, 2000u);
  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.count, 1);
  EXPECT_THAT(f.message, HasSubstr("came late"));
  ASSERT_EQ(f.examples.size(), 1u);
  EXPECT_EQ(f.examples[0].closed_after_ms, std::optional<int64_t>(8000));
  EXPECT_EQ(f.examples[0].eof_to_end_ms, std::optional<int64_t>(8000));
  EXPECT_EQ(f.examples[0].age_ms, 9000);
}

TEST(Analyzer, CloseExactlyAtGraceIsNotReported) {
  for (uint64_t after : {2 * kSec, 2 * kSec + kMs}) {
    Feed run(2 * kSec);
    run.Process(1, 100);
    run.Accept(1, 5, 101, kT0);
    run.Eof(1, 5, 101, kT0 + kSec);
    run.Close(1, 5, 101, kT0 + kSec + after);
    run.End(kT0 + 60 * kSec);
    EXPECT_EQ(run.Build().findings.size(), after > 2 * kSec ? 1u : 0u) << after;
  }
}

TEST(Analyzer, GraceOptionOverridesTheRunRecord) {
  AnalyzerOptions options;
  options.grace_ns = 10 * kSec;
  Feed run(2 * kSec, options);
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0);
  run.Eof(1, 5, 101, kT0 + kSec);
  run.Close(1, 5, 101, kT0 + 9 * kSec);
  run.End(kT0 + 60 * kSec);
  Report r = run.Build();
  EXPECT_EQ(r.grace_ms, 10000u);
  EXPECT_THAT(r.findings, IsEmpty());
}

// (d)
TEST(Analyzer, DifferentEofStacksAreSeparateFindingsByCount) {
  Feed run;
  run.Process(1, 100);
  const uint64_t eof = kT0 + kSec;
  // One leak through the first EOF stack, three through the second: the
  // second must still come first.
  run.Accept(1, 5, 101, kT0);
  run.Eof(1, 5, 101, eof, kEofRef);
  for (int i = 0; i < 3; ++i) {
    run.Accept(1, 6 + i, 201 + i, kT0);
    run.Eof(1, 6 + i, 201 + i, eof + kMs, kEofRef2);
  }
  run.End(eof + 5 * kSec);
  Report r = run.Build();
  ASSERT_EQ(r.findings.size(), 2u);
  EXPECT_EQ(r.findings[0].count, 3);
  EXPECT_EQ(r.findings[1].count, 1);
  const std::vector<Frame>* first = Stack(r.findings[0], "eof_seen");
  const std::vector<Frame>* second = Stack(r.findings[1], "eof_seen");
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_THAT(Addresses(*first), ElementsAreArray(kEofFrames2));
  EXPECT_THAT(Addresses(*second), ElementsAreArray(kEofFrames));
  EXPECT_EQ(r.findings[1].examples.at(0).fd, 5);
}

// One call site in many processes of one binary: every process has the
// module at another address (ASLR), and some loaded it under another path.
// Each leaks one connection from the same lines.
Report OneSitePerProcess(const std::vector<std::string>& paths,
                         const std::string& build_id) {
  Feed run;
  const uint64_t eof = kT0 + kSec;
  for (uint32_t i = 0; i < paths.size(); ++i) {
    uint32_t stream = i + 1;
    run.Process(stream, 100 + i, "/srv/server", {"server"},
                kBias + uint64_t{i} * 0x10'000'000, paths[i], build_id);
    run.Accept(stream, 5, 101 + i, kT0);
    run.Eof(stream, 5, 101 + i, eof);
  }
  run.End(eof + 5 * kSec);
  return run.Build();
}

TEST(Analyzer, OneCallSiteInManyProcessesIsOneFindingWhateverTheAddresses) {
  Report r = OneSitePerProcess(std::vector<std::string>(5, kModulePath), "");
  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.count, 5);
  EXPECT_EQ(f.examples.size(), 5u);
  // The frames name the module and the offset in it, never the address
  // one process had: the text and folded forms are the same in every run.
  const std::vector<Frame>* eof = Stack(f, "eof_seen");
  ASSERT_NE(eof, nullptr);
  ASSERT_EQ(eof->size(), kEofFrames.size());
  EXPECT_EQ((*eof)[0].offset, kEofFrames[0] - kBias);
  EXPECT_EQ(FrameText((*eof)[0]), "server+0x2100");
  EXPECT_EQ(RenderFolded(r).find("0x5555"), std::string::npos)
      << RenderFolded(r);
}

TEST(Analyzer, OneFileUnderTwoPathsIsOneModule) {
  // Merged /usr: /lib and /usr/lib are one directory, and processes load
  // the same library through either.
  const std::vector<std::string> paths = {
      "/usr/lib/closeaudit-test/server", "/lib/closeaudit-test/server",
      "/usr/lib/closeaudit-test/server"};
  for (const std::string build_id : {"", "\x12\x34\x56\x78"}) {
    SCOPED_TRACE(build_id.empty() ? "no build-id" : "with a build-id");
    Report r = OneSitePerProcess(paths, build_id);
    ASSERT_EQ(r.findings.size(), 1u);
    EXPECT_EQ(r.findings[0].count, 3);
  }
}

TEST(Analyzer, ReportsNameTheirVersionAndEachLibraryVersionOnce) {
  Feed run;
  uint32_t stream = 0;
  for (uint32_t lib : {0x000100u, 0x000100u, 0u, 0x000009u}) {
    ProcessRecord p;
    p.stream = ++stream;
    p.pid = 100 + stream;
    p.lib_version = lib;
    run.Add(p);
  }
  Report r = run.Build();
  EXPECT_EQ(r.closeaudit_version, kVersion);
  EXPECT_THAT(r.library_versions, ElementsAre("0.1.0", "unknown", "0.0.9"));
  std::string text = RenderText(r);
  EXPECT_EQ(text.substr(0, text.find(':')),
            absl::StrCat("closeaudit ", kVersion,
                         " (library 0.1.0, unknown, 0.0.9)"));
  EXPECT_THAT(RenderJson(r),
              HasSubstr(absl::StrCat("\"closeaudit_version\":\"", kVersion,
                                     "\",\"library_versions\":[\"0.1.0\","
                                     "\"unknown\",\"0.0.9\"]")));
  EXPECT_THAT(RenderHtml(r), HasSubstr("library <b>0.1.0, unknown, 0.0.9</b>"));
}

// (e)
TEST(Analyzer, DupKeepsTheSocketOpenUntilTheLastClose) {
  const uint64_t eof = kT0 + kSec;
  {
    Feed run;
    run.Process(1, 100);
    run.Accept(1, 5, 101, kT0);
    run.Eof(1, 5, 101, eof);
    run.Dup(1, 9, 5, 101, eof + 10 * kMs);
    run.Close(1, 5, 101, eof + 100 * kMs);  // fd 9 still refers to it
    run.End(eof + 3 * kSec);
    Report r = run.Build();
    ASSERT_EQ(r.findings.size(), 1u);
    ASSERT_EQ(r.findings[0].examples.size(), 1u);
    EXPECT_FALSE(r.findings[0].examples[0].closed_after_ms.has_value());
    EXPECT_EQ(r.findings[0].examples[0].eof_to_end_ms,
              std::optional<int64_t>(3000));
  }
  {
    Feed run;
    run.Process(1, 100);
    run.Accept(1, 5, 101, kT0);
    run.Eof(1, 5, 101, eof);
    run.Dup(1, 9, 5, 101, eof + 10 * kMs);
    run.Close(1, 5, 101, eof + 100 * kMs);
    run.Close(1, 9, 101, eof + 5 * kSec);  // the last reference
    run.End(eof + 6 * kSec);
    Report r = run.Build();
    ASSERT_EQ(r.findings.size(), 1u);
    ASSERT_EQ(r.findings[0].examples.size(), 1u);
    EXPECT_EQ(r.findings[0].examples[0].closed_after_ms,
              std::optional<int64_t>(5000));
    const std::vector<Frame>* created = Stack(r.findings[0], "created");
    ASSERT_NE(created, nullptr);
    EXPECT_THAT(Addresses(*created), ElementsAreArray(kAcceptFrames));
  }
  {
    // Both references closed soon: nothing to report.
    Feed run;
    run.Process(1, 100);
    run.Accept(1, 5, 101, kT0);
    run.Eof(1, 5, 101, eof);
    run.Dup(1, 9, 5, 101, eof + 10 * kMs);
    run.Close(1, 9, 101, eof + 20 * kMs);
    run.Close(1, 5, 101, eof + 100 * kMs);
    run.End(eof + 6 * kSec);
    EXPECT_THAT(run.Build().findings, IsEmpty());
  }
}

// (f)
TEST(Analyzer, ProcessExitClosesWhatItHeld) {
  const uint64_t eof = kT0 + kSec;
  {
    Feed run;
    run.Process(1, 100);
    run.Accept(1, 5, 101, kT0);
    run.Eof(1, 5, 101, eof);
    run.Exit(1, eof + 500 * kMs, 0);
    run.End(eof + 10 * kSec);
    Report r = run.Build();
    EXPECT_THAT(r.findings, IsEmpty());
    ASSERT_EQ(r.process_list.size(), 1u);
    EXPECT_EQ(r.process_list[0].exit_status, std::optional<int32_t>(0));
  }
  {
    Feed run;
    run.Process(1, 100);
    run.Accept(1, 5, 101, kT0);
    run.Eof(1, 5, 101, eof);
    run.Exit(1, eof + 3 * kSec, 137);
    run.End(eof + 10 * kSec);
    Report r = run.Build();
    ASSERT_EQ(r.findings.size(), 1u);
    ASSERT_EQ(r.findings[0].examples.size(), 1u);
    const Example& ex = r.findings[0].examples[0];
    EXPECT_FALSE(ex.closed_after_ms.has_value());  // the kernel closed it
    EXPECT_EQ(ex.eof_to_end_ms, std::optional<int64_t>(3000));
    ASSERT_EQ(r.process_list.size(), 1u);
    EXPECT_EQ(r.process_list[0].exit_status, std::optional<int32_t>(137));
  }
}

TEST(Analyzer, ForkChildHoldingTheSocketKeepsItInCloseWait) {
  const uint64_t eof = kT0 + kSec;
  Feed run;
  run.Process(1, 100);
  run.Process(2, 101);  // a fork child
  run.Accept(1, 5, 101, kT0);
  run.Event(2, wire::EventType::kInherited, 5, 101, kT0 + 10 * kMs, kTcp);
  run.Eof(1, 5, 101, eof);
  run.Close(1, 5, 101, eof + 50 * kMs);  // the parent is done with it...
  run.Exit(2, eof + 4 * kSec, 0);       // ...but the child held it till exit
  run.End(eof + 10 * kSec);
  Report r = run.Build();
  ASSERT_EQ(r.findings.size(), 1u);
  ASSERT_EQ(r.findings[0].examples.size(), 1u);
  EXPECT_EQ(r.findings[0].examples[0].eof_to_end_ms,
            std::optional<int64_t>(4000));
  EXPECT_EQ(r.findings[0].examples[0].pid, 100u);  // where the EOF was seen
  // Its age counts from the accept, not from the child's inheriting it.
  EXPECT_EQ(r.findings[0].examples[0].age_ms, 5000);
  // The child's inherit did not replace where the socket was created.
  const std::vector<Frame>* created = Stack(r.findings[0], "created");
  ASSERT_NE(created, nullptr);
  EXPECT_THAT(Addresses(*created), ElementsAreArray(kAcceptFrames));
}

// A process that took the collector for gone moves to a new ring and lists
// its open sockets there (aux 3). Its other threads go on meanwhile and may
// send a close, or a new socket on the same number, to the old ring, which
// is read first: the listing's older lines must not reopen those sockets.
TEST(Analyzer, AResyncLineOlderThanACloseReopensNothing) {
  const uint64_t eof = kT0 + kSec;
  const uint64_t snap = eof + 20 * kMs;  // when the listing was read
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0);
  run.Accept(1, 6, 102, kT0);
  run.Accept(1, 8, 103, kT0);
  for (uint64_t c : {101, 102, 103}) run.Eof(1, c == 101 ? 5 : c == 102 ? 6 : 8, c, eof);
  // The old ring: after the listing was read, fd 5 closed and its number
  // went to a new socket; fd 8 closed.
  run.Close(1, 5, 101, snap + 10 * kMs);
  run.Accept(1, 5, 104, snap + 20 * kMs);
  run.Close(1, 8, 103, snap + 30 * kMs);
  // The new ring: the listing, then fd 6's close.
  run.Inherited(1, 5, 101, snap, 3);
  run.Inherited(1, 6, 102, snap, 3);
  run.Inherited(1, 8, 103, snap, 3);
  run.Close(1, 6, 102, snap + 40 * kMs);
  run.Eof(1, 5, 104, snap + kSec);
  run.Close(1, 5, 104, snap + kSec + 10 * kMs);
  run.End(snap + 10 * kSec);
  Report r = run.Build();
  EXPECT_THAT(r.findings, IsEmpty());
  EXPECT_EQ(r.sockets_tracked, 4);
}

TEST(Analyzer, OpenSocketKeysNameEachOpenTcpSocketOnce) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0);
  run.Address(1, 5, 101, 2);
  run.Dup(1, 9, 5, 101, kT0 + kMs);       // held twice: asked about once
  run.Accept(1, 6, 102, kT0);
  run.Address(1, 6, 102, 3);
  run.Close(1, 6, 102, kT0 + 2 * kMs);    // closed: not asked about
  run.Accept(1, 7, 103, kT0, wire::kFlagStream);  // a Unix socket
  run.Process(2, 200);
  run.Inherited(2, 5, 101, kT0 + 3 * kMs, 1);  // and its child's copy
  std::vector<SocketKey> keys;
  ASSERT_TRUE(run.analyzer().OpenSocketKeys(10, &keys));
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].cookie, 101u);
  EXPECT_EQ(keys[0].local_port, 8080);
  EXPECT_EQ(keys[0].peer_port, 40101);
  keys.clear();
  EXPECT_FALSE(run.analyzer().OpenSocketKeys(0, &keys));  // over the limit
  // A socket whose endpoints are not known yet: only a dump sees it.
  run.Accept(1, 8, 104, kT0 + 4 * kMs);
  keys.clear();
  EXPECT_FALSE(run.analyzer().OpenSocketKeys(10, &keys));
  run.Address(1, 8, 104, 4);
  keys.clear();
  ASSERT_TRUE(run.analyzer().OpenSocketKeys(10, &keys));
  EXPECT_EQ(keys.size(), 2u);
  // Once the process exits, nothing it held is open.
  run.Exit(1, kT0 + 5 * kMs);
  run.Exit(2, kT0 + 5 * kMs);
  keys.clear();
  ASSERT_TRUE(run.analyzer().OpenSocketKeys(10, &keys));
  EXPECT_TRUE(keys.empty());
}

// (g)
TEST(Analyzer, NonStreamSocketsNeverProduceFindings) {
  Feed run;
  run.Process(1, 100);
  ThreeEofs(run, kT0 + kSec, wire::kFlagInet);  // e.g. UDP
  run.End(kT0 + 100 * kSec);
  Report r = run.Build();
  EXPECT_THAT(r.findings, IsEmpty());
  EXPECT_EQ(r.sockets_tracked, 3);
}

// (h)
TEST(Analyzer, SummaryCountsAndDropWarning) {
  Feed run;
  run.Process(1, 100, "/srv/a", {"a", "-x"});
  run.Process(2, 200, "/srv/b", {"b"});
  run.Accept(1, 5, 101, kT0);
  run.Accept(2, 5, 201, kT0);
  run.Event(2, wire::EventType::kSocket, 6, 202, kT0, wire::kFlagInet, kAcceptRef);
  run.Close(2, 6, 202, kT0 + kMs);
  run.Exit(1, kT0 + 2 * kSec, 0, /*dropped=*/5, /*torn=*/2,
           /*dropped_blobs=*/100);
  run.Exit(2, kT0 + 3 * kSec, -1, /*dropped=*/1);
  run.End(kT0 + 4 * kSec);
  Report r = run.Build();
  EXPECT_EQ(r.processes, 2);
  EXPECT_EQ(r.sockets_tracked, 3);
  EXPECT_EQ(r.events, 4);
  EXPECT_EQ(r.events_dropped, 8);  // dropped + torn; lost stacks are not events
  EXPECT_DOUBLE_EQ(r.duration_s, 4.0);
  ASSERT_EQ(r.process_list.size(), 2u);
  EXPECT_EQ(r.process_list[0].pid, 100u);
  EXPECT_EQ(r.process_list[0].exe, "/srv/a");
  EXPECT_THAT(r.process_list[0].argv, ElementsAre("a", "-x"));
  EXPECT_EQ(r.process_list[0].exit_status, std::optional<int32_t>(0));
  EXPECT_EQ(r.process_list[1].pid, 200u);
  EXPECT_FALSE(r.process_list[1].exit_status.has_value());  // unknown
  EXPECT_THAT(r.warnings, testing::Contains(HasSubstr("8 events were dropped")));
}

TEST(Analyzer, NoDropWarningWithoutDrops) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0);
  run.Exit(1, kT0 + kSec, 0, 0, 0, /*dropped_blobs=*/3);
  run.End(kT0 + 2 * kSec);
  Report r = run.Build();
  EXPECT_EQ(r.events_dropped, 0);
  EXPECT_THAT(r.warnings, testing::Not(testing::Contains(HasSubstr("dropped"))));
}

// (i)
TEST(Analyzer, FdReuseWithoutCloseEndsTheOldSocketThere) {
  const uint64_t eof = kT0 + kSec;
  {
    Feed run;
    run.Process(1, 100);
    run.Accept(1, 5, 101, kT0);
    run.Eof(1, 5, 101, eof);
    run.Accept(1, 5, 102, eof + 3 * kSec);  // fd 5 is another socket now
    run.End(eof + 20 * kSec);
    Report r = run.Build();
    ASSERT_EQ(r.findings.size(), 1u);
    EXPECT_EQ(r.findings[0].count, 1);
    ASSERT_EQ(r.findings[0].examples.size(), 1u);
    const Example& ex = r.findings[0].examples[0];
    EXPECT_FALSE(ex.closed_after_ms.has_value());
    EXPECT_EQ(ex.eof_to_end_ms, std::optional<int64_t>(3000));  // not 20000
    EXPECT_EQ(r.sockets_tracked, 2);
  }
  {
    Feed run;
    run.Process(1, 100);
    run.Accept(1, 5, 101, kT0);
    run.Eof(1, 5, 101, eof);
    run.Accept(1, 5, 102, eof + 500 * kMs);
    run.End(eof + 20 * kSec);
    EXPECT_THAT(run.Build().findings, IsEmpty());
  }
}

TEST(Analyzer, RecordsOfUnknownStreamsAreIgnored) {
  Feed run;
  run.Process(1, 100);
  run.Accept(7, 5, 101, kT0);
  run.Eof(7, 5, 101, kT0 + kSec);
  run.Exit(7, kT0 + 2 * kSec, 0, 50);
  run.End(kT0 + 60 * kSec);
  Report r = run.Build();
  EXPECT_THAT(r.findings, IsEmpty());
  EXPECT_EQ(r.processes, 1);
  EXPECT_EQ(r.events_dropped, 0);
}

TEST(Analyzer, WithoutEndRecordTheLatestTimeIsTheEnd) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0);
  run.Eof(1, 5, 101, kT0 + kSec);
  run.Accept(1, 6, 102, kT0 + 4 * kSec);  // the latest event seen
  Report r = run.Build();
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].examples.at(0).eof_to_end_ms,
            std::optional<int64_t>(3000));
}

// Sockets are found by cookie whatever order the cookies come in: two
// processes' rings drained one after the other interleave them, and a socket
// from before the audit has a cookie far below the others.
TEST(Analyzer, CookiesOutOfOrderStillFindTheirSockets) {
  Feed run;
  run.Process(1, 100);
  run.Process(2, 200);
  constexpr int kPerStream = 100;
  for (uint32_t stream : {1u, 2u}) {
    for (int i = 0; i < kPerStream; ++i) {
      run.Accept(stream, 10 + i, 1000 + 2 * i + stream, kT0 + i * kMs);
    }
  }
  run.Accept(1, 500, 5, kT0);
  const uint64_t eof = kT0 + kSec;
  run.Eof(1, 500, 5, eof);
  for (uint32_t stream : {1u, 2u}) {
    for (int i = 0; i < kPerStream; ++i) {
      run.Eof(stream, 10 + i, 1000 + 2 * i + stream, eof);
      // Every tenth stays open: a leak.
      if (i % 10 != 0) {
        run.Close(stream, 10 + i, 1000 + 2 * i + stream, eof + 100 * kMs);
      }
    }
  }
  run.End(eof + 10 * kSec);
  Report r = run.Build();
  EXPECT_EQ(r.sockets_tracked, 2 * kPerStream + 1);
  EXPECT_EQ(r.events, 2 * (2 * kPerStream + 1) + 2 * (kPerStream - 10));
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].kind, "close_wait_leak");
  EXPECT_EQ(r.findings[0].count, 2 * 10 + 1);
}

// --- RenderJson --------------------------------------------------------------

// A strict JSON parser: enough to prove the output is valid and to read it.
struct Json {
  // Defined below the struct: clang with libstdc++ wants Json complete
  // before std::pair<std::string, Json> is instantiated.
  Json();
  enum Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = kNull;
  bool boolean = false;
  double number = 0;
  std::string string;  // \u00XX escapes decode to the single byte XX
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json& operator[](std::string_view key) const {
    static const Json missing;
    for (const auto& [k, v] : members) {
      if (k == key) return v;
    }
    ADD_FAILURE() << "no key " << key;
    return missing;
  }
  const Json& operator[](size_t i) const {
    static const Json missing;
    if (i < items.size()) return items[i];
    ADD_FAILURE() << "no item " << i;
    return missing;
  }
  bool Has(std::string_view key) const {
    for (const auto& m : members) {
      if (m.first == key) return true;
    }
    return false;
  }
};

Json::Json() = default;

class JsonParser {
 public:
  // `in` must outlive the parser.
  explicit JsonParser(std::string_view in) : in_(in) {}

  bool Parse(Json* out) {
    Ws();
    if (!Value(out, 0)) return false;
    Ws();
    return Fail(pos_ == in_.size(), "trailing data");
  }
  const std::string& error() const { return error_; }

 private:
  bool Fail(bool ok, const char* what) {
    if (!ok && error_.empty()) {
      error_ = std::string(what) + " at byte " + std::to_string(pos_);
    }
    return ok;
  }
  void Ws() {
    while (pos_ < in_.size() && (in_[pos_] == ' ' || in_[pos_] == '\n' ||
                                 in_[pos_] == '\r' || in_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool Eat(char c) {
    if (pos_ < in_.size() && in_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool Literal(std::string_view word) {
    if (in_.substr(pos_, word.size()) != word) return Fail(false, "bad literal");
    pos_ += word.size();
    return true;
  }
  bool Value(Json* out, int depth) {
    if (!Fail(depth < 64, "too deep") || !Fail(pos_ < in_.size(), "eof")) {
      return false;
    }
    char c = in_[pos_];
    if (c == '{') return Object(out, depth);
    if (c == '[') return Array(out, depth);
    if (c == '"') {
      out->type = Json::kString;
      return String(&out->string);
    }
    if (c == 't') {
      out->type = Json::kBool;
      out->boolean = true;
      return Literal("true");
    }
    if (c == 'f') {
      out->type = Json::kBool;
      return Literal("false");
    }
    if (c == 'n') {
      out->type = Json::kNull;
      return Literal("null");
    }
    return Number(out);
  }
  bool Digits() {
    size_t start = pos_;
    while (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') ++pos_;
    return Fail(pos_ > start, "digit expected");
  }
  bool Number(Json* out) {
    size_t start = pos_;
    Eat('-');
    if (!Fail(pos_ < in_.size(), "eof in number")) return false;
    if (in_[pos_] == '0') {
      ++pos_;
    } else if (!Digits()) {
      return false;
    }
    if (Eat('.') && !Digits()) return false;
    if (Eat('e') || Eat('E')) {
      if (!Eat('+')) Eat('-');
      if (!Digits()) return false;
    }
    out->type = Json::kNumber;
    out->number = std::stod(std::string(in_.substr(start, pos_ - start)));
    return true;
  }
  bool String(std::string* out) {
    if (!Fail(Eat('"'), "quote expected")) return false;
    for (;;) {
      if (!Fail(pos_ < in_.size(), "unterminated string")) return false;
      unsigned char c = static_cast<unsigned char>(in_[pos_++]);
      if (c == '"') return true;
      if (!Fail(c >= 0x20, "raw control character in string")) return false;
      if (!Fail(c < 0x80, "raw non-ASCII byte in string")) return false;
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (!Fail(pos_ < in_.size(), "eof in escape")) return false;
      char e = in_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          if (!Fail(pos_ + 4 <= in_.size(), "short \\u")) return false;
          unsigned v = 0;
          for (int i = 0; i < 4; ++i) {
            char h = in_[pos_++];
            v <<= 4;
            if (h >= '0' && h <= '9') v |= h - '0';
            else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
            else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
            else return Fail(false, "bad hex digit");
          }
          if (!Fail(v < 0x100, "code point beyond Latin-1")) return false;
          out->push_back(static_cast<char>(v));
          break;
        }
        default:
          return Fail(false, "bad escape");
      }
    }
  }
  bool Array(Json* out, int depth) {
    out->type = Json::kArray;
    ++pos_;
    Ws();
    if (Eat(']')) return true;
    for (;;) {
      Ws();
      out->items.emplace_back();
      if (!Value(&out->items.back(), depth + 1)) return false;
      Ws();
      if (Eat(']')) return true;
      if (!Fail(Eat(','), "',' or ']' expected")) return false;
    }
  }
  bool Object(Json* out, int depth) {
    out->type = Json::kObject;
    ++pos_;
    Ws();
    if (Eat('}')) return true;
    for (;;) {
      Ws();
      std::string key;
      if (!String(&key)) return false;
      if (!Fail(!out->Has(key), "duplicate key")) return false;
      Ws();
      if (!Fail(Eat(':'), "':' expected")) return false;
      Ws();
      out->members.emplace_back(std::move(key), Json{});
      if (!Value(&out->members.back().second, depth + 1)) return false;
      Ws();
      if (Eat('}')) return true;
      if (!Fail(Eat(','), "',' or '}' expected")) return false;
    }
  }

  std::string_view in_;
  size_t pos_ = 0;
  std::string error_;
};

TEST(JsonChecker, RejectsInvalidJson) {
  for (std::string_view bad :
       {"", "{", "{\"a\":1,}", "[1 2]", "\"a\nb\"", "\"\xff\"", "{\"a\" 1}",
        "01", "1.", "\"\\x\"", "[1],", "{\"a\":1,\"a\":2}", "nul"}) {
    Json j;
    EXPECT_FALSE(JsonParser(bad).Parse(&j)) << bad;
  }
  Json j;
  EXPECT_TRUE(JsonParser("{\"a\":[1,-2.5e3,true,null,\"\\u00ff\"]}").Parse(&j));
  EXPECT_EQ(j["a"][4].string, "\xff");
}

TEST(RenderJson, IsValidAndEscapesBytes) {
  const std::string exe = "/srv/we\"ird\\dir/ser\xffver";
  const std::vector<std::string> argv = {
      "server", "say \"hi\"", "line\nbreak", "\xff\xfe", std::string("\x01\x7f", 2),
      "tab\there", "back\\slash", "caf\xc3\xa9"};
  Feed run;
  run.Process(1, 100, exe, argv);
  ThreeEofs(run, kT0 + kSec);
  run.Exit(1, kT0 + 30 * kSec, 0, 1, 0);
  run.End(kT0 + 30 * kSec);
  Report report = run.Build();
  ASSERT_EQ(report.findings.size(), 1u);
  std::string json = RenderJson(report);

  for (unsigned char c : json) {
    ASSERT_LT(c, 0x80) << "non-ASCII byte in the JSON output";
  }
  EXPECT_THAT(json, HasSubstr("say \\\"hi\\\""));
  EXPECT_THAT(json, HasSubstr("line\\nbreak"));
  EXPECT_THAT(json, HasSubstr("\\u00ff\\u00fe"));

  Json root;
  JsonParser parser(json);
  ASSERT_TRUE(parser.Parse(&root)) << parser.error() << "\n" << json;
  ASSERT_EQ(root.type, Json::kObject);
  EXPECT_EQ(root["tool"].string, "closeaudit");
  EXPECT_EQ(root["format_version"].number, kReportFormatVersion);

  const Json& summary = root["summary"];
  EXPECT_EQ(summary["processes"].number, 1);
  EXPECT_EQ(summary["sockets_tracked"].number, 3);
  EXPECT_EQ(summary["events"].number, 6);
  EXPECT_EQ(summary["events_dropped"].number, 1);
  EXPECT_EQ(summary["findings"].number, 1);
  EXPECT_EQ(summary["grace_ms"].number, 1000);
  EXPECT_EQ(summary["duration_s"].number, 30);
  ASSERT_EQ(root["warnings"].type, Json::kArray);
  EXPECT_FALSE(root["warnings"].items.empty());

  const Json& proc = root["processes"][0];
  EXPECT_EQ(proc["pid"].number, 100);
  EXPECT_EQ(proc["exe"].string, exe);  // every byte survives the escaping
  ASSERT_EQ(proc["argv"].items.size(), argv.size());
  for (size_t i = 0; i < argv.size(); ++i) {
    EXPECT_EQ(proc["argv"][i].string, argv[i]) << i;
  }
  EXPECT_EQ(proc["exit_status"].number, 0);

  const Json& f = root["findings"][0];
  EXPECT_EQ(f["kind"].string, "close_wait_leak");
  EXPECT_EQ(f["severity"].string, "error");
  EXPECT_EQ(f["count"].number, 3);
  EXPECT_EQ(f["confirmed_by_kernel"].type, Json::kBool);
  ASSERT_EQ(f["stacks"].type, Json::kObject);
  const Json& eof = f["stacks"]["eof_seen"];
  ASSERT_EQ(eof.items.size(), kEofFrames.size());
  for (size_t i = 0; i < kEofFrames.size(); ++i) {
    EXPECT_EQ(std::stoull(eof[i]["address"].string, nullptr, 16), kEofFrames[i]);
    EXPECT_EQ(eof[i]["module"].string, kModulePath);
    EXPECT_EQ(eof[i]["inlined"].type, Json::kBool);
  }
  ASSERT_EQ(f["examples"].items.size(), 3u);
  const Json& ex = f["examples"][0];
  EXPECT_EQ(ex["fd"].number, 5);
  EXPECT_EQ(ex["closed_after_ms"].type, Json::kNull);
  EXPECT_EQ(ex["tcp_state"].string, "CLOSE_WAIT");
  EXPECT_EQ(ex["local"].type, Json::kNull);  // no address event
  EXPECT_EQ(ex["eof_to_end_ms"].type, Json::kNumber);
}

TEST(RenderJson, EmptyReportIsValid) {
  Report report;
  const std::string json = RenderJson(report);
  Json root;
  JsonParser parser(json);
  ASSERT_TRUE(parser.Parse(&root)) << parser.error();
  EXPECT_EQ(root["findings"].type, Json::kArray);
  EXPECT_TRUE(root["findings"].items.empty());
  EXPECT_TRUE(root["processes"].items.empty());
}

}  // namespace
}  // namespace closeaudit
