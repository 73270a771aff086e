#include "collector/session.h"

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

}  // namespace
}  // namespace closeaudit
