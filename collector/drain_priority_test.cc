#include "collector/drain_priority.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>
#include <functional>
#include <thread>

#include "gtest/gtest.h"

namespace closeaudit {
namespace {

DrainPriority::Options Quick() {
  DrainPriority::Options o;
  o.late_ns = 40'000'000;
  o.calm_ns = 200'000'000;
  o.check_ns = 5'000'000;
  return o;
}

// Waits (at most 10 s: a loaded machine is slow) until `done`, calling
// `turn` every 2 ms meanwhile.
bool Within(const std::function<bool()>& done,
            const std::function<void()>& turn = [] {}) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    turn();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

TEST(DrainPriority, LowestWhileOnTimeRaisedBackWhileLate) {
  int base = ThreadNice();
  if (base >= 19 || !CanRaiseNiceBack(base, 19)) {
    GTEST_SKIP() << "this process may not raise a thread's priority back "
                    "(no CAP_SYS_NICE, RLIMIT_NICE too low)";
  }
  DrainPriority drain(Quick());
  ASSERT_TRUE(drain.Start());
  EXPECT_FALSE(drain.Start());  // once only
  EXPECT_EQ(drain.base_nice(), base);
  EXPECT_EQ(ThreadNice(), 19);
  EXPECT_TRUE(drain.lowered());
  // Turns on time: it stays low.
  for (int i = 0; i < 50; ++i) {
    drain.TurnDone();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_TRUE(drain.lowered());
  EXPECT_EQ(drain.raises(), 0u);
  // No turn: the watchdog raises it back.
  ASSERT_TRUE(Within([&] { return !drain.lowered(); }));
  EXPECT_EQ(ThreadNice(), base);
  EXPECT_EQ(drain.raises(), 1u);
  // On time again for a while: lowered again.
  ASSERT_TRUE(Within([&] { return drain.lowered(); }, [&] { drain.TurnDone(); }));
  EXPECT_EQ(ThreadNice(), 19);
  drain.Stop();
  EXPECT_EQ(ThreadNice(), base);
  EXPECT_FALSE(drain.lowered());
  drain.Stop();  // again: nothing
  EXPECT_EQ(ThreadNice(), base);
}

TEST(DrainPriority, TheWatchdogRunsAtTheProcesssPriority) {
  int base = ThreadNice();
  if (base >= 19 || !CanRaiseNiceBack(base, 19)) {
    GTEST_SKIP() << "this process may not raise a thread's priority back";
  }
  DrainPriority drain(Quick());
  ASSERT_TRUE(drain.Start());
  // The threads of this process other than this one: the watchdog alone.
  std::vector<int> others;
  ASSERT_TRUE(Within(
      [&] {
        others.clear();
        for (const auto& task :
             std::filesystem::directory_iterator("/proc/self/task")) {
          int tid = std::stoi(task.path().filename().string());
          if (tid == gettid()) continue;
          others.push_back(getpriority(PRIO_PROCESS, static_cast<id_t>(tid)));
        }
        return others.size() == 1 && others[0] == base;
      },
      [&] { drain.TurnDone(); }))
      << "threads besides this one: " << others.size();
  drain.Stop();
}

TEST(DrainPriority, NeverLowersWhatItCouldNotRaiseBack) {
  // A child that gives up root (and with it CAP_SYS_NICE) and may not
  // lower its nice value (RLIMIT_NICE 0): Start() must leave it alone.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit none{0, 0};
    setrlimit(RLIMIT_NICE, &none);
    if (getuid() == 0 && setresuid(65534, 65534, 65534) != 0) _exit(3);
    int base = ThreadNice();
    if (base >= 19) _exit(4);
    DrainPriority drain(Quick());
    bool started = drain.Start();
    _exit(started ? 1 : ThreadNice() != base ? 2 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "1: lowered anyway; 2: the nice value changed; 3: setresuid failed";
}

}  // namespace
}  // namespace closeaudit
