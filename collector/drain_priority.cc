#include "collector/drain_priority.h"

#include <errno.h>
#include <sched.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "collector/background_job.h"

namespace closeaudit {
namespace {

uint64_t Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 +
         static_cast<uint64_t>(ts.tv_nsec);
}

// Linux keeps a nice value per thread, and PRIO_PROCESS with a thread id
// sets that thread's alone.
bool SetThreadNice(pid_t tid, int nice) {
  return setpriority(PRIO_PROCESS, static_cast<id_t>(tid), nice) == 0;
}

}  // namespace

int ThreadNice() {
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  return nice == -1 && errno != 0 ? 0 : nice;
}

bool CanRaiseNiceBack(int base, int low) {
  bool ok = false;
  // A thread of its own inherits the caller's nice value; whatever it sets
  // ends with it.
  std::thread probe([&] {
    pid_t tid = gettid();
    ok = SetThreadNice(tid, low) && SetThreadNice(tid, base);
  });
  probe.join();
  return ok;
}

bool DrainPriority::SetNice(int nice) { return SetThreadNice(tid_, nice); }

bool DrainPriority::Start() {
  if (watchdog_.joinable()) return false;
  tid_ = gettid();
  base_ = ThreadNice();
  renice_ = options_.nice > base_ && CanRaiseNiceBack(base_, options_.nice);
  pin_ = options_.pin && sched_getaffinity(0, sizeof(allowed_), &allowed_) == 0 &&
         CPU_COUNT(&allowed_) > 1;
  if (!renice_ && !pin_) return false;
  last_turn_ns_.store(Now(), std::memory_order_relaxed);
  Ease();
  // The watchdog is created at the process's priority and may run on any
  // CPU: a thread inherits its creator's, which are the eased ones now.
  watchdog_ = ThreadWithoutSignals([this] {
    (void)SetThreadNice(gettid(), base_);
    (void)sched_setaffinity(0, sizeof(allowed_), &allowed_);
    Watch();
  });
  return true;
}

void DrainPriority::Ease() {
  if (renice_) (void)SetNice(options_.nice);
  if (pin_) PinHere();
  eased_.store(true, std::memory_order_relaxed);
}

void DrainPriority::PinHere() {
  int cpu = sched_getcpu();
  if (cpu < 0 || !CPU_ISSET(cpu, &allowed_)) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  (void)sched_setaffinity(0, sizeof(one), &one);
}

bool DrainPriority::Unease() {
  bool ok = true;
  if (renice_) ok = SetNice(base_);
  if (pin_) ok = sched_setaffinity(tid_, sizeof(allowed_), &allowed_) == 0 && ok;
  eased_.store(false, std::memory_order_relaxed);
  return ok;
}

void DrainPriority::TurnDone() {
  last_turn_ns_.store(Now(), std::memory_order_relaxed);
  // Asked by the watchdog: only this thread knows where it runs now.
  if (ease_wanted_.load(std::memory_order_relaxed)) {
    ease_wanted_.store(false, std::memory_order_relaxed);
    Ease();
  }
}

void DrainPriority::Stop() {
  if (!watchdog_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  watchdog_.join();
  ease_wanted_.store(false, std::memory_order_relaxed);
  if (eased_.load(std::memory_order_relaxed)) (void)Unease();
}

void DrainPriority::Watch() {
  uint64_t calm_ns = options_.calm_ns;
  uint64_t late_at = 0;     // while not eased: when a turn was last late
  uint64_t eased_at = Now();
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::nanoseconds(options_.check_ns),
                       [this] { return stop_; })) {
    uint64_t now = Now();
    uint64_t last = last_turn_ns_.load(std::memory_order_relaxed);
    bool late = now > last && now - last > options_.late_ns;
    if (eased_.load(std::memory_order_relaxed)) {
      if (!late) continue;
      (void)Unease();
      raises_.fetch_add(1, std::memory_order_relaxed);
      // Late again within the last while: the machine stays busy. Eased
      // for a long time: it was a burst.
      uint64_t kept = now - eased_at;
      calm_ns = kept < calm_ns ? std::min(2 * calm_ns, options_.max_calm_ns)
                : kept >= options_.max_calm_ns ? options_.calm_ns
                                               : calm_ns;
      late_at = now;
    } else if (late) {
      late_at = now;
    } else if (now - late_at >= calm_ns &&
               !ease_wanted_.load(std::memory_order_relaxed)) {
      ease_wanted_.store(true, std::memory_order_relaxed);
      eased_at = now;
    }
  }
}

}  // namespace closeaudit
