#include "collector/session.h"

#include "gtest/gtest.h"

namespace closeaudit {
namespace {

constexpr uint64_t kMs = 1'000'000;

TEST(KernelSampleInterval, CheapSweepsRunAtTheBaseRate) {
  EXPECT_EQ(KernelSampleIntervalNs(0), kKernelSampleMs * kMs);
  EXPECT_EQ(KernelSampleIntervalNs(kMs), kKernelSampleMs * kMs);
}

TEST(KernelSampleInterval, CostlySweepsTakeAtMostAQuarterOfAPercent) {
  // 40 ms: both families' dumps of a table of about 100,000 TIME_WAIT
  // minisockets, as measured under wrk with Connection: close.
  EXPECT_EQ(KernelSampleIntervalNs(40 * kMs), 16'000 * kMs);
}

TEST(KernelSampleInterval, NeverLongerThanTheCeiling) {
  EXPECT_EQ(KernelSampleIntervalNs(100 * kMs), kKernelSampleMaxMs * kMs);
  EXPECT_EQ(KernelSampleIntervalNs(5'000 * kMs), kKernelSampleMaxMs * kMs);
  EXPECT_EQ(KernelSampleIntervalNs(UINT64_MAX), kKernelSampleMaxMs * kMs);
}

}  // namespace
}  // namespace closeaudit
