#include "shim/unwinder.h"

#include "shim/layout.h"
#include "shim/modules.h"
#include "shim/recorder.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

namespace closeaudit::shim {
namespace {

// The libunwind the shim was built against: its ABI is the soname's.
constexpr char kLibrary[] = "libunwind.so.8";

#define CA_NAME2(x) #x
#define CA_NAME(x) CA_NAME2(x)  // the symbol a libunwind.h macro stands for

enum State : int { kNotLoaded, kLoading, kLoaded, kFailed };
std::atomic<int> g_state{kNotLoaded};
constinit Unwinder g_unwinder{};  // no initializer to run (and no page to write) at load
// The loaded object's range, known before the load is finished.
std::atomic<uintptr_t> g_start{0};
std::atomic<uintptr_t> g_end{0};

int FindModule(dl_phdr_info* info, size_t, void* data) {
  auto* u = static_cast<Unwinder*>(data);
  uintptr_t probe = reinterpret_cast<uintptr_t>(u->getcontext);
  uintptr_t lo, hi;
  ModuleRange(info, &lo, &hi);
  if (probe < lo || probe >= hi) return 0;
  u->start = lo;
  u->end = hi;
  return 1;
}

template <typename T>
bool Resolve(void* handle, const char* name, T* out) {
  *out = reinterpret_cast<T>(dlsym(handle, name));
  return *out != nullptr;
}

bool Load(Unwinder* u) {
  void* handle = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return false;
  decltype(&unw_set_caching_policy) set_caching_policy;
  decltype(&unw_set_cache_size) set_cache_size;
  unw_addr_space_t* local = nullptr;
  if (!Resolve(handle, CA_NAME(unw_tdep_getcontext), &u->getcontext) ||
      !Resolve(handle, CA_NAME(unw_init_local), &u->init_local) ||
      !Resolve(handle, CA_NAME(unw_get_reg), &u->get_reg) ||
      !Resolve(handle, CA_NAME(unw_is_signal_frame), &u->is_signal_frame) ||
      !Resolve(handle, CA_NAME(unw_step), &u->step) ||
      !Resolve(handle, CA_NAME(unw_get_proc_info), &u->get_proc_info) ||
      !Resolve(handle, CA_NAME(unw_set_caching_policy), &set_caching_policy) ||
      !Resolve(handle, CA_NAME(unw_set_cache_size), &set_cache_size) ||
      !Resolve(handle, CA_NAME(unw_local_addr_space), &local)) {
    return false;
  }
  dl_iterate_phdr(FindModule, u);
  // Setting the policy initialises libunwind, which opens its validation
  // pipe: from here on its calls must be known as its own (InUnwinder).
  g_start.store(u->start, std::memory_order_relaxed);
  g_end.store(u->end, std::memory_order_release);
  // Per-thread caches: walks never take a lock libunwind shares between
  // threads, so a signal handler may walk too.
  ++t_unwinding;
  set_caching_policy(*local, UNW_CACHE_PER_THREAD);
  set_cache_size(*local, 1024, 0);
  --t_unwinding;
  return true;
}

}  // namespace

bool InLoadedUnwinder(uintptr_t ip) {
  uintptr_t end = g_end.load(std::memory_order_acquire);
  return ip < end && ip >= g_start.load(std::memory_order_relaxed);
}

const Unwinder* LoadedUnwinder() {
  return g_state.load(std::memory_order_acquire) == kLoaded ? &g_unwinder
                                                            : nullptr;
}

const Unwinder* LoadUnwinder() {
  int state = g_state.load(std::memory_order_acquire);
  if (state == kLoaded) return &g_unwinder;
  if (state == kFailed) return nullptr;
  int expected = kNotLoaded;
  if (g_state.compare_exchange_strong(expected, kLoading,
                                      std::memory_order_acq_rel)) {
    // No handler of the program's may run on this thread while the loader
    // holds its locks; the loading thread is then never the one waiting below.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    Unwinder u{};
    bool ok = Load(&u);
    if (ok) g_unwinder = u;
    g_state.store(ok ? kLoaded : kFailed, std::memory_order_release);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (!ok) {
      static const char kSay[] =
          "closeaudit: cannot load libunwind.so.8: events carry no stacks\n";
      (void)!write(2, kSay, sizeof(kSay) - 1);
    }
    return ok ? &g_unwinder : nullptr;
  }
  // Another thread is loading it: it cannot be interrupted, so it finishes.
  while ((state = g_state.load(std::memory_order_acquire)) == kLoading) {
    sched_yield();
  }
  return state == kLoaded ? &g_unwinder : nullptr;
}

CA_CHILD_PATH void UnwinderForkChild() {
  // The thread that was loading it is not in this process: nobody will
  // finish, and the loader's state is unknown. No stacks, rather than a hang.
  // (Read first: a failed compare-exchange still writes, and a page
  // written in a fork child is a page copied.)
  if (g_state.load(std::memory_order_relaxed) == kLoading) {
    g_state.store(kFailed, std::memory_order_relaxed);
  }
}

}  // namespace closeaudit::shim
