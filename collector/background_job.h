// One job at a time on a thread of its own: the collector's kernel sweeps,
// which on a machine with a large socket table take long enough to hold up
// draining if they ran on the draining thread, and its snapshots.
//
// The thread starts with the first job and blocks every signal, so that the
// process's handlers run on the thread that waits in poll(). By default it
// runs at the lowest priority (nice kJobNice): a sweep is tens of ms of CPU
// on a busy machine, and at the process's priority it took that from the
// audited server on the same core, which showed in the server's p99 latency
// (docs/performance.md). Nothing is lost by running a sweep late. What a
// job writes is the caller's to read once Idle() says it is done.
#ifndef CLOSEAUDIT_COLLECTOR_BACKGROUND_JOB_H_
#define CLOSEAUDIT_COLLECTOR_BACKGROUND_JOB_H_

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace closeaudit {

inline constexpr int kJobNice = 19;

// A thread that blocks every signal, so that the process's handlers run on
// the threads that wait for them.
std::thread ThreadWithoutSignals(std::function<void()> body);

class BackgroundJob {
 public:
  // `nice`: the thread's nice value; nullopt keeps the process's (a job
  // someone waits for: a snapshot).
  // Its CPUs are those the constructing thread may use now, whatever that
  // thread is kept to when the job's thread starts (DrainPriority).
  explicit BackgroundJob(std::optional<int> nice = kJobNice);
  BackgroundJob(const BackgroundJob&) = delete;
  BackgroundJob& operator=(const BackgroundJob&) = delete;
  // Waits for the job in flight, then ends the thread.
  ~BackgroundJob();

  // Runs `job` on the thread. Only while Idle().
  void Start(std::function<void()> job);
  // Whether no job is in flight; once true, the last job's writes are
  // visible to the caller.
  bool Idle() const { return !busy_.load(std::memory_order_acquire); }
  // Waits until Idle().
  void Wait();

 private:
  void Run();

  const std::optional<int> nice_;
  cpu_set_t cpus_{};
  bool have_cpus_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;  // the next job, under mu_
  bool stop_ = false;          // under mu_
  std::atomic<bool> busy_{false};
  std::thread thread_;
};

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_BACKGROUND_JOB_H_
