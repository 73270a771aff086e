// How the thread that drains the rings shares the machine with the audited
// server. Left to the scheduler at the process's priority, it moved between
// cores and ran its turns (a millisecond or more at nginx's full rate) on
// whichever core the server or its load generator was about to want, which
// showed in the server's tail latency (docs/performance.md).
//
// So while it keeps up, the draining thread is eased: kept to one CPU, the
// one it runs on, and where the process may raise it back (CAP_SYS_NICE, or
// an RLIMIT_NICE that allows it), at nice `Options::nice`, so that it uses
// what the others leave. A watchdog thread of the process's priority, on any
// CPU, gives it back the process's priority and CPUs whenever a turn of the
// draining loop is late (the thread is runnable and not run), and eases it
// again once turns have been on time for a while; each time it falls behind
// soon after, that while doubles, so that a machine that stays busy keeps
// the collector at the process's priority. Where it can do neither (one
// CPU, no right to raise the nice value back), nothing changes.
#ifndef CLOSEAUDIT_COLLECTOR_DRAIN_PRIORITY_H_
#define CLOSEAUDIT_COLLECTOR_DRAIN_PRIORITY_H_

#include <sched.h>
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
    bool pin = true;  // keep to one CPU while it keeps up
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
  // Whether it runs eased now: lowered and kept to one CPU.
  bool lowered() const { return eased_.load(std::memory_order_relaxed); }
  // How often the watchdog has raised it back.
  uint64_t raises() const { return raises_.load(std::memory_order_relaxed); }

 private:
  void Watch();
  bool SetNice(int nice);
  // On the draining thread: its nice value and one CPU, the one it is on.
  void Ease();
  void PinHere();
  // From any thread: the process's nice value and CPUs.
  bool Unease();

  const Options options_;
  pid_t tid_ = 0;
  int base_ = 0;
  bool renice_ = false;  // whether it may lower the nice value
  bool pin_ = false;     // whether it keeps to one CPU
  cpu_set_t allowed_{};  // the CPUs the process may use
  std::atomic<uint64_t> last_turn_ns_{0};
  std::atomic<bool> eased_{false};
  std::atomic<bool> ease_wanted_{false};  // by the watchdog, of TurnDone()
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
