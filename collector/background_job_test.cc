#include "collector/background_job.h"

#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>
#include <thread>

#include "gtest/gtest.h"

namespace closeaudit {
namespace {

TEST(BackgroundJob, RunsEachJobAndSaysWhenItIsDone) {
  BackgroundJob job;
  EXPECT_TRUE(job.Idle());
  int value = 0;  // written by the job, read after Wait()
  for (int i = 1; i <= 3; ++i) {
    job.Start([&value, i] { value += i; });
    job.Wait();
    EXPECT_TRUE(job.Idle());
  }
  EXPECT_EQ(value, 6);
}

TEST(BackgroundJob, IsBusyWhileItsJobRuns) {
  BackgroundJob job;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  job.Start([released] { released.wait(); });
  EXPECT_FALSE(job.Idle());
  release.set_value();
  job.Wait();
  EXPECT_TRUE(job.Idle());
}

// The job in flight finishes before the thread ends.
TEST(BackgroundJob, EndingWaitsForTheJobInFlight) {
  std::atomic<bool> done{false};
  {
    BackgroundJob job;
    job.Start([&done] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      done = true;
    });
  }
  EXPECT_TRUE(done.load());
}

// Its thread takes no signal: they go to the threads that handle them.
TEST(BackgroundJob, ItsThreadBlocksSignals) {
  BackgroundJob job;
  sigset_t mask;
  sigemptyset(&mask);
  job.Start([&mask] { pthread_sigmask(SIG_SETMASK, nullptr, &mask); });
  job.Wait();
  EXPECT_EQ(sigismember(&mask, SIGTERM), 1);
  EXPECT_EQ(sigismember(&mask, SIGINT), 1);
  EXPECT_EQ(sigismember(&mask, SIGUSR1), 1);
  sigset_t mine;
  pthread_sigmask(SIG_SETMASK, nullptr, &mine);
  EXPECT_EQ(sigismember(&mine, SIGTERM), 0);  // the caller's is as it was
}

// Its thread yields the CPU to everything else; the caller's priority stays.
TEST(BackgroundJob, ItsThreadRunsAtTheLowestPriority) {
  errno = 0;
  int mine = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  ASSERT_EQ(errno, 0);
  BackgroundJob job;
  int theirs = 0;
  job.Start([&theirs] {
    theirs = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  });
  job.Wait();
  EXPECT_EQ(theirs, kJobNice);
  EXPECT_EQ(getpriority(PRIO_PROCESS, static_cast<id_t>(gettid())), mine);
}

// A job someone waits for may keep the process's priority.
TEST(BackgroundJob, WithoutANiceValueItsThreadKeepsTheCallersPriority) {
  errno = 0;
  int mine = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  ASSERT_EQ(errno, 0);
  BackgroundJob job(std::nullopt);
  int theirs = 100;
  job.Start([&theirs] {
    theirs = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  });
  job.Wait();
  EXPECT_EQ(theirs, mine);
}

TEST(BackgroundJob, ItsThreadMayUseTheCpusItsOwnerMayUseWhenMade) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  if (CPU_COUNT(&all) < 2) GTEST_SKIP() << "one CPU: nothing to tell apart";
  BackgroundJob job;
  // The owner is kept to one CPU afterwards, as the draining thread is.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  int theirs = 0;
  job.Start([&theirs] {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) theirs = CPU_COUNT(&set);
  });
  job.Wait();
  ASSERT_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
  EXPECT_EQ(theirs, CPU_COUNT(&all));
}

}  // namespace
}  // namespace closeaudit
