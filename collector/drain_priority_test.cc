#include "collector/drain_priority.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>
#include <functional>
#include <thread>
#include <utility>

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

int CpusAllowed(pid_t tid = 0) {
  cpu_set_t set;
  return sched_getaffinity(tid, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : -1;
}

TEST(DrainPriority, EasedWhileOnTimeStrictWhileLate) {
  int base = ThreadNice();
  int cpus = CpusAllowed();
  bool renice = base < 19 && CanRaiseNiceBack(base, 19);
  if (!renice && cpus < 2) {
    GTEST_SKIP() << "one CPU, and this process may not raise a thread's "
                    "priority back (no CAP_SYS_NICE, RLIMIT_NICE too low)";
  }
  int low = renice ? 19 : base;
  int eased_cpus = cpus > 1 ? 1 : cpus;
  DrainPriority drain(Quick());
  ASSERT_TRUE(drain.Start());
  EXPECT_FALSE(drain.Start());  // once only
  EXPECT_EQ(drain.base_nice(), base);
  EXPECT_EQ(ThreadNice(), low);
  EXPECT_EQ(CpusAllowed(), eased_cpus);
  EXPECT_TRUE(drain.lowered());
  // Turns on time: it stays eased.
  for (int i = 0; i < 50; ++i) {
    drain.TurnDone();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_TRUE(drain.lowered());
  EXPECT_EQ(drain.raises(), 0u);
  // No turn: the watchdog gives it back the process's priority and CPUs.
  ASSERT_TRUE(Within([&] { return !drain.lowered(); }));
  EXPECT_EQ(ThreadNice(), base);
  EXPECT_EQ(CpusAllowed(), cpus);
  EXPECT_EQ(drain.raises(), 1u);
  // On time again for a while: eased again, on the CPU it runs on.
  ASSERT_TRUE(Within([&] { return drain.lowered(); }, [&] { drain.TurnDone(); }));
  EXPECT_EQ(ThreadNice(), low);
  EXPECT_EQ(CpusAllowed(), eased_cpus);
  drain.Stop();
  EXPECT_EQ(ThreadNice(), base);
  EXPECT_EQ(CpusAllowed(), cpus);
  EXPECT_FALSE(drain.lowered());
  drain.Stop();  // again: nothing
  EXPECT_EQ(ThreadNice(), base);
}

TEST(DrainPriority, TheWatchdogRunsAtTheProcesssPriorityOnAnyCpu) {
  int base = ThreadNice();
  int cpus = CpusAllowed();
  DrainPriority drain(Quick());
  if (!drain.Start()) GTEST_SKIP() << "nothing to ease here";
  // The threads of this process other than this one: the watchdog.
  std::vector<std::pair<int, int>> others;  // (nice, CPUs)
  ASSERT_TRUE(Within(
      [&] {
        others.clear();
        for (const auto& task :
             std::filesystem::directory_iterator("/proc/self/task")) {
          int tid = std::stoi(task.path().filename().string());
          if (tid == gettid()) continue;
          others.emplace_back(getpriority(PRIO_PROCESS, static_cast<id_t>(tid)),
                              CpusAllowed(tid));
        }
        // A sanitizer may have a thread of its own, which is not eased
        // either.
        return !others.empty() &&
               std::all_of(others.begin(), others.end(),
                           [&](auto& t) { return t == std::pair(base, cpus); });
      },
      [&] { drain.TurnDone(); }))
      << "threads besides this one: " << others.size();
  drain.Stop();
}

TEST(DrainPriority, NeverLowersWhatItCouldNotRaiseBack) {
  // A child that gives up root (and with it CAP_SYS_NICE) and may not
  // lower its nice value (RLIMIT_NICE 0): Start() must leave its nice
  // value alone, and still keep it to one CPU where there are more.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit none{0, 0};
    setrlimit(RLIMIT_NICE, &none);
    if (getuid() == 0 && setresuid(65534, 65534, 65534) != 0) _exit(3);
    int base = ThreadNice();
    if (base >= 19) _exit(4);
    int cpus = CpusAllowed();
    DrainPriority::Options o = Quick();
    o.pin = false;
    {
      DrainPriority drain(o);
      if (drain.Start()) _exit(1);
      if (ThreadNice() != base) _exit(2);
    }
    DrainPriority drain(Quick());
    if (drain.Start() != (cpus > 1)) _exit(5);
    if (ThreadNice() != base) _exit(2);
    if (CpusAllowed() != (cpus > 1 ? 1 : cpus)) _exit(6);
    drain.Stop();
    _exit(CpusAllowed() == cpus ? 0 : 7);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "1: started without pinning; 2: the nice value changed; "
         "3: setresuid failed; 5, 6: not kept to one CPU; 7: not given back";
}

}  // namespace
}  // namespace closeaudit
