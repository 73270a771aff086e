// The priority of the thread that drains the rings. At the process's
// priority, the collector's share of a core (about an eighth at nginx's
// full rate, docs/performance.md) is taken from the audited server whenever
// the two meet on one core, and shows in the server's tail latency. At the
// lowest priority the collector uses only what the server leaves, which is
// enough while the machine has room; when it has none, the draining thread
// falls behind and the rings fill.
//
// So the draining thread runs at nice `Options::nice` while it keeps up,
// and a watchdog thread of the process's priority raises it back whenever a
// turn of the draining loop is late (the thread is runnable and not run).
// It lowers it again once turns have been on time for a while; each raise
// doubles that while, so that a machine that stays busy keeps the collector
// at the process's priority.
//
// Only where the process may raise the priority back (CAP_SYS_NICE, or an
// RLIMIT_NICE that allows it) is it ever lowered: elsewhere the draining
// thread keeps the process's priority, as without this class.
#ifndef CLOSEAUDIT_COLLECTOR_DRAIN_PRIORITY_H_
#define CLOSEAUDIT_COLLECTOR_DRAIN_PRIORITY_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace closeaudit {

class DrainPriority {
 public:
  struct Options {
    int nice = 19;
    uint64_t late_ns = 50'000'000;    // a turn this late raises the priority
    uint64_t calm_ns = 1'000'000'000;  // on time this long lowers it again
    uint64_t max_calm_ns = 32'000'000'000;
    uint64_t check_ns = 20'000'000;    // how often the watchdog looks
  };

  DrainPriority() : DrainPriority(Options()) {}
  explicit DrainPriority(Options options) : options_(options) {}
  DrainPriority(const DrainPriority&) = delete;
  DrainPriority& operator=(const DrainPriority&) = delete;
  ~DrainPriority() { Stop(); }

  // On the draining thread: lowers its priority, if it can be raised again,
  // and starts the watchdog. Returns whether it did. Once only.
  bool Start();
  // On the draining thread, at the end of every turn.
  void TurnDone();
  // Restores the thread's priority and ends the watchdog. Idempotent.
  void Stop();

  // The nice value of the calling thread when Start() ran (the process's).
  int base_nice() const { return base_; }
  bool lowered() const { return lowered_.load(std::memory_order_relaxed); }
  // How often the watchdog has raised it back.
  uint64_t raises() const { return raises_.load(std::memory_order_relaxed); }

 private:
  void Watch();
  bool SetNice(int nice);

  const Options options_;
  pid_t tid_ = 0;
  int base_ = 0;
  std::atomic<uint64_t> last_turn_ns_{0};
  std::atomic<bool> lowered_{false};
  std::atomic<uint64_t> raises_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // under mu_
  std::thread watchdog_;
};

// The calling thread's nice value.
int ThreadNice();

// Whether this process may lower a thread's priority to `low` and then
// raise it back to `base`: tried on a short-lived thread of its own.
bool CanRaiseNiceBack(int base, int low);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_DRAIN_PRIORITY_H_
