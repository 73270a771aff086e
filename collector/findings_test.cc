// The finding rules that keep well-behaved programs free of findings, on
// hand-built records: which closes are bad_close, which inherited sockets
// are exec_inherited.
#include <cstdint>
#include <string>
#include <vector>

#include "collector/analyzer_feed.h"
#include "collector/report.h"
#include "common/wire.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

using namespace testing_feed;  // NOLINT: the fixtures of analyzer_feed.h

std::vector<const Finding*> OfKind(const Report& r, const std::string& kind) {
  std::vector<const Finding*> out;
  for (const Finding& f : r.findings) {
    if (f.kind == kind) out.push_back(&f);
  }
  return out;
}

// --- bad_close ---------------------------------------------------------------

TEST(BadClose, CloseOfANumberNeverOpenIsNoFinding) {
  Feed run;
  run.Process(1, 100);
  // What bash does in every pipeline: it closes pipe ends that may be
  // closed already. The audit never saw a socket on those numbers.
  for (int i = 0; i < 3; ++i) {
    run.CloseUntracked(1, 3 + i % 2, kT0 + (i + 1) * kMs);
  }
  run.End(kT0 + kSec);
  EXPECT_THAT(run.Build().findings, IsEmpty());
}

TEST(BadClose, SecondCloseOfASocketIsADoubleClose) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0 + kMs);
  run.Close(1, 5, 101, kT0 + 2 * kMs);
  run.CloseUntracked(1, 5, kT0 + 3 * kMs, kEofRef);
  // A never-opened number beside it changes nothing.
  run.CloseUntracked(1, 9, kT0 + 4 * kMs, kEofRef2);
  run.End(kT0 + kSec);
  Report r = run.Build();
  ASSERT_EQ(r.findings.size(), 1u);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.kind, "bad_close");
  EXPECT_EQ(f.severity, "error");
  EXPECT_EQ(f.reason, "double_close");
  EXPECT_EQ(f.count, 1);
  ASSERT_NE(Stack(f, "close"), nullptr);
  EXPECT_THAT(Addresses(*Stack(f, "close")), ElementsAreArray(kEofFrames));
  ASSERT_NE(Stack(f, "previous_close"), nullptr);
  EXPECT_THAT(Addresses(*Stack(f, "previous_close")),
              ElementsAreArray(kCloseFrames));
  ASSERT_EQ(f.examples.size(), 1u);
  EXPECT_EQ(f.examples[0].pid, 100u);
  EXPECT_EQ(f.examples[0].fd, 5);
}

TEST(BadClose, EbadfInAnotherProcessIsNoDoubleClose) {
  Feed run;
  run.Process(1, 100);
  run.Process(2, 200);
  run.Accept(1, 5, 101, kT0 + kMs);
  run.Close(1, 5, 101, kT0 + 2 * kMs);
  run.CloseUntracked(2, 5, kT0 + 3 * kMs);
  run.End(kT0 + kSec);
  EXPECT_THAT(run.Build().findings, IsEmpty());
}

TEST(BadClose, ANewSocketOnTheNumberEndsTheDoubleCloseWindow) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0 + kMs);
  run.Close(1, 5, 101, kT0 + 2 * kMs);
  run.Accept(1, 5, 102, kT0 + 3 * kMs);
  run.Close(1, 5, 102, kT0 + 4 * kMs);
  run.End(kT0 + kSec);
  EXPECT_THAT(OfKind(run.Build(), "bad_close"), IsEmpty());
}

TEST(BadClose, SweepAfterClosingASocketIsNoDoubleClose) {
  Feed run;
  run.Process(1, 100);
  run.Accept(1, 5, 101, kT0 + kMs);
  run.Close(1, 5, 101, kT0 + 2 * kMs);
  // close(3) ... close(20) from one loop: fd 5 among them.
  for (int fd = 3; fd <= 20; ++fd) {
    run.CloseUntracked(1, fd, kT0 + (10 + fd) * kMs, kEofRef2);
  }
  run.End(kT0 + kSec);
  EXPECT_THAT(OfKind(run.Build(), "bad_close"), IsEmpty());
}

}  // namespace
}  // namespace closeaudit
