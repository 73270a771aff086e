#include "collector/background_job.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <utility>

namespace closeaudit {

std::thread ThreadWithoutSignals(std::function<void()> body) {
  // Signals stay with the threads that were there before this one.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  std::thread thread(std::move(body));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return thread;
}

BackgroundJob::BackgroundJob(std::optional<int> nice) : nice_(nice) {
  have_cpus_ = sched_getaffinity(0, sizeof(cpus_), &cpus_) == 0;
}

BackgroundJob::~BackgroundJob() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BackgroundJob::Start(std::function<void()> job) {
  busy_.store(true, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(job);
  }
  cv_.notify_all();
  if (!thread_.joinable()) thread_ = ThreadWithoutSignals([this] { Run(); });
}

void BackgroundJob::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !busy_.load(std::memory_order_acquire); });
}

void BackgroundJob::Run() {
  // Linux keeps a nice value per thread. If it cannot be set, the job
  // still runs, at the process's priority.
  if (nice_) (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), *nice_);
  if (have_cpus_) (void)sched_setaffinity(0, sizeof(cpus_), &cpus_);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || job_ != nullptr; });
    // A job in flight is finished before the thread ends.
    if (job_ == nullptr) return;
    std::function<void()> job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    job();
    lock.lock();
    busy_.store(false, std::memory_order_release);
    cv_.notify_all();
  }
}

}  // namespace closeaudit
