// Merging the reports of several hosts.
#include "collector/merge.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// A leak whose eof_seen stack is read_eof <- `caller`, as seen on a host
// whose binary lives under `root` and is loaded at `base`.
Finding Leak(int64_t count, const std::string& caller, const std::string& root,
             uint64_t base, int examples) {
  Finding f;
  f.kind = "close_wait_leak";
  f.severity = "error";
  f.count = count;
  f.message = absl::StrCat(count, " connections left in CLOSE_WAIT");
  f.advice = "close it";
  f.began_ms = 100;
  f.began_pid = 7;
  Frame inner{"read_eof", root + "/src/server.c", 10, root + "/bin/server",
              base + 0x10, false};
  Frame outer{caller, root + "/src/server.c", 20, root + "/bin/server",
              base + 0x20, false};
  f.stacks.emplace_back("eof_seen", std::vector<Frame>{inner, outer});
  for (int i = 0; i < examples; ++i) {
    Example e;
    e.pid = 100 + i;
    e.fd = 4 + i;
    f.examples.push_back(e);
  }
  return f;
}

HostReport Host(std::string host, std::vector<Finding> findings) {
  HostReport h;
  h.host = std::move(host);
  h.report.processes = 1;
  h.report.sockets_tracked = 10;
  h.report.events = 100;
  h.report.events_dropped = 1;
  h.report.duration_s = 2;
  h.report.grace_ms = 1000;
  h.report.findings = std::move(findings);
  h.report.warnings.push_back("something about the data");
  ProcessSummary p;
  p.pid = 7;
  p.exe = "/srv/bin/server";
  h.report.process_list.push_back(p);
  TimelinePoint point;
  h.report.timelines.push_back({7, "/srv/bin/server", 0, 2000, {point}});
  return h;
}

TEST(Merge, SameStacksOnTwoHostsAreOneCulprit) {
  std::vector<HostReport> in;
  // Different install paths and load addresses: still the same code.
  in.push_back(Host("web-1", {Leak(3, "handle_a", "/opt/a", 0x1000, 3)}));
  in.push_back(Host("web-2", {Leak(5, "handle_a", "/srv/b", 0x9000, 5)}));
  Report r = MergeReports(std::move(in));
  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.count, 8);
  EXPECT_THAT(f.message, HasSubstr("web-1: 3 connections"));
  EXPECT_THAT(f.message, HasSubstr("[all hosts: web-1 3, web-2 5]"));
  EXPECT_FALSE(f.began_ms.has_value());
  // At most five examples, and both hosts among them.
  ASSERT_EQ(f.examples.size(), 5u);
  int on_1 = 0, on_2 = 0;
  for (const Example& e : f.examples) {
    on_1 += e.host == "web-1";
    on_2 += e.host == "web-2";
  }
  EXPECT_EQ(on_1 + on_2, 5);
  EXPECT_GE(on_1, 2);
  EXPECT_GE(on_2, 2);
}

TEST(Merge, DifferentStacksStayApartAndSortWorstFirst) {
  Finding info;
  info.kind = "time_wait";
  info.severity = "info";
  info.count = 50;
  std::vector<HostReport> in;
  in.push_back(Host("a", {Leak(3, "handle_a", "/x", 0, 1), info}));
  in.push_back(Host("b", {Leak(5, "handle_b", "/x", 0, 1)}));
  Report r = MergeReports(std::move(in));
  ASSERT_EQ(r.findings.size(), 3u);
  EXPECT_EQ(r.findings[0].count, 5);  // errors first, larger first
  EXPECT_EQ(r.findings[1].count, 3);
  EXPECT_EQ(r.findings[2].kind, "time_wait");
}

// A leak whose only frame has no symbol: module `module`, `offset` into it,
// loaded at `base`.
Finding Unsymbolized(int64_t count, const std::string& module,
                     uint64_t offset, uint64_t base) {
  Finding f = Leak(count, "unused", "/x", 0, 1);
  Frame frame;
  frame.module = module;
  frame.offset = offset;
  frame.address = base + offset;
  f.stacks = {{"eof_seen", {frame}}};
  return f;
}

TEST(Merge, FramesWithoutSymbolsAreTheSameByModuleAndOffset) {
  std::vector<HostReport> in;
  in.push_back(Host("a", {Unsymbolized(3, "/usr/bin/server", 0x1234, 0x5000),
                          Unsymbolized(1, "/usr/bin/server", 0x5678, 0x5000)}));
  in.push_back(Host("b", {Unsymbolized(5, "/opt/bin/server", 0x1234, 0x9000)}));
  Report r = MergeReports(std::move(in));
  ASSERT_EQ(r.findings.size(), 2u);
  EXPECT_EQ(r.findings[0].count, 8);  // the same offset on both hosts
  EXPECT_EQ(r.findings[1].count, 1);  // another place in the same binary
}

TEST(Merge, KernelObservationsKeepTheirHostAndOneAuditedRunIsEnough) {
  std::vector<HostReport> in;
  in.push_back(Host("audited", {Leak(3, "handle_a", "/x", 0, 1)}));
  HostReport blind = Host("static", {});
  blind.report.audited = false;
  KernelObservation o;
  o.pid = 9;
  o.tcp_state = "CLOSE_WAIT";
  o.count = 4;
  blind.report.kernel_observations.push_back(o);
  in.push_back(std::move(blind));
  Report r = MergeReports(std::move(in));
  EXPECT_TRUE(r.audited);
  ASSERT_EQ(r.kernel_observations.size(), 1u);
  EXPECT_EQ(r.kernel_observations[0].host, "static");
  EXPECT_EQ(r.kernel_observations[0].count, 4);
  EXPECT_EQ(r.findings.size(), 1u);

  std::vector<HostReport> none;
  none.push_back(Host("a", {}));
  none.back().report.audited = false;
  EXPECT_FALSE(MergeReports(std::move(none)).audited);
}

TEST(Merge, SummariesAddUpAndHostsAreNamed) {
  std::vector<HostReport> in;
  in.push_back(Host("a", {}));
  in.push_back(Host("b", {}));
  in[1].report.grace_ms = 5000;
  in[1].report.audited = false;
  Report r = MergeReports(std::move(in));
  EXPECT_EQ(r.processes, 2);
  EXPECT_EQ(r.sockets_tracked, 20);
  EXPECT_EQ(r.events, 200);
  EXPECT_EQ(r.events_dropped, 2);
  EXPECT_TRUE(r.audited);  // "a" was
  EXPECT_EQ(r.host, "a, b");
  EXPECT_TRUE(r.timelines.empty());
  ASSERT_EQ(r.process_list.size(), 2u);
  EXPECT_EQ(r.process_list[1].host, "b");
  EXPECT_THAT(r.warnings,
              UnorderedElementsAre("a: something about the data",
                                   "b: something about the data",
                                   HasSubstr("grace period of 5000 ms")));
}

}  // namespace
}  // namespace closeaudit
