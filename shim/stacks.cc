#include "shim/stacks.h"

#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <execinfo.h>

#include <atomic>
#include <cstring>

#include "common/wire.h"
#include "shim/hooks.h"
#include "shim/java_frames.h"
#include "shim/modules.h"
#include "shim/python_frames.h"
#include "shim/recorder.h"
#include "shim/unwinder.h"

// Bounds of the vfork trampoline (vfork_x86_64.S).
extern "C" const char closeaudit_vfork_begin[];
extern "C" const char closeaudit_vfork_end[];

// The linker's name for the ELF header of the object being linked.
extern "C" const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));

namespace closeaudit::shim {
namespace {

struct SiteEntry;

// A call-site entry a capture found or filled, and its seq then.
struct SiteRef {
  SiteEntry* entry = nullptr;
  uint32_t seq = 0;
  uint64_t blob = 0;  // the entry's blob at the lookup, if of this epoch
};

// Bumped by ResetStacks(): blobs noted before belong to a ring that is gone.
std::atomic<uint32_t> g_site_epoch{1};

// Frames the shim itself contributes are dropped; a little headroom keeps the
// program's frames within kMaxFrames after that.
constexpr int kCaptureFrames = wire::kMaxFrames + 8;
constexpr uint32_t kTableSize = 1u << 14;  // 16K distinct stacks per process
constexpr int kMaxProbes = 32;

struct StackSlot {
  std::atomic<uint64_t> hash;  // 0: empty
  // The ring's generation << 32 | the blob's offset in that ring's arena; 0
  // while being written. A blob of an earlier ring (before a reconnect) is
  // written again into the current one.
  std::atomic<uint64_t> blob;
};

// Mapped when the image starts (MapStackTables); until then a capture (from
// a thread that found the image starting) dedups nothing and caches nothing.
std::atomic<StackSlot*> g_table{nullptr};
std::atomic<bool> g_table_used{false};  // a stack went into g_table
uintptr_t g_self_start = 0;
uintptr_t g_self_end = 0;
#if defined(__SANITIZE_THREAD__)
// The module that holds glibc's unwinder, all of its segments.
uintptr_t g_unwinder_start = 0;
uintptr_t g_unwinder_end = 0;
#endif

StackSlot* MapTable() {
  void* mem = mmap(nullptr, sizeof(StackSlot) * kTableSize,
                   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return mem == MAP_FAILED ? nullptr : static_cast<StackSlot*>(mem);
}

// Finds the executable segment of the object this code is linked into from
// its own program headers, without a walk over the loader's list: the
// linker names the object's ELF header __ehdr_start, and its first segment
// (file offset 0) maps it.
void FindSelf() {
  const auto& header = __ehdr_start;
  auto base = reinterpret_cast<uintptr_t>(&header);
  const auto* phdrs =
      reinterpret_cast<const ElfW(Phdr)*>(base + header.e_phoff);
  uintptr_t bias = 0;
  for (int i = 0; i < header.e_phnum; ++i) {
    if (phdrs[i].p_type == PT_LOAD && phdrs[i].p_offset == 0) {
      bias = base - phdrs[i].p_vaddr;
      break;
    }
  }
  auto probe = reinterpret_cast<uintptr_t>(&FindSelf);
  for (int i = 0; i < header.e_phnum; ++i) {
    const ElfW(Phdr)& ph = phdrs[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    uintptr_t start = bias + ph.p_vaddr;
    if (probe >= start && probe < start + ph.p_memsz) {
      g_self_start = start;
      g_self_end = start + ph.p_memsz;
      return;
    }
  }
}

#if defined(__SANITIZE_THREAD__)
// Under ThreadSanitizer, libunwind's per-thread trace cache is freed by a
// pthread key destructor that takes a mutex after TSan has torn down the
// exiting thread's state, which crashes TSan itself. TSan builds therefore
// walk the stack with glibc's backtrace(); every other build uses libunwind.
int Backtrace(void** frames, int max) {
  ++t_unwinding;
  int n = backtrace(frames, max);
  --t_unwinding;
  return n;
}
#endif

#if defined(__SANITIZE_THREAD__)
int FindUnwinder(dl_phdr_info* info, size_t, void* data) {
  uintptr_t probe = reinterpret_cast<uintptr_t>(data);
  uintptr_t lo, hi;
  ModuleRange(info, &lo, &hi);
  if (probe < lo || probe >= hi) return 0;
  g_unwinder_start = lo;
  g_unwinder_end = hi;
  return 1;
}
#endif

#if !defined(__SANITIZE_THREAD__)
// --- The call-site cache -----------------------------------------------------
//
// A server's lifecycle events come from a handful of call sites, and walking
// the stack with libunwind costs about as much as the rest of the event. So a
// walk is remembered as the return addresses it found and where on the stack
// it found each one, as offsets from the first (the wrapper's own return
// address, found by following the shim's frame pointers). A later capture
// whose first return address is the same reads those slots again; if every
// one still holds the same address, the walk would find the same frames.
//
// Why that holds: a frame's canonical frame address (CFA) is a function of its
// pc and of its callee's CFA (the DWARF rule is "rsp + k", or "rbp + k" with
// rbp at a fixed place in the frame). So from the same first slot, the same
// return address in each slot, checked innermost first, puts the next slot in
// the same place. Frames whose size changes from call to call (alloca) could
// in principle line up with a stale copy of a return address left on the
// stack; the walk that fills an entry checks that every slot holds its
// address, and walks that cross a signal frame are not cached at all.
//
// Reads stay inside the part of this thread's stack that an earlier walk of
// this thread saw ([t_stack_lo, t_stack_hi]): a stack's pages stay mapped
// while its thread lives, so the check never faults, even on an entry torn
// by a concurrent writer (each entry is a seqlock; a torn read is retried as
// a miss).

constexpr uint32_t kSiteWays = 4;
constexpr uint32_t kSiteBuckets = 256;

struct SiteEntry {
  std::atomic<uint32_t> seq;    // odd while being written
  std::atomic<uint32_t> count;  // return addresses held; 0: empty
  // The stack's blob, as in StackSlot::blob (0: not yet known), so that a
  // hit needs no hashing either; valid only in the epoch it was noted in.
  std::atomic<uint64_t> blob;
  std::atomic<uint32_t> blob_epoch;
  std::atomic<uint32_t> offset[wire::kMaxFrames];  // from the first slot
  std::atomic<uint64_t> ret[wire::kMaxFrames];
};

std::atomic<SiteEntry*> g_sites{nullptr};
std::atomic<uint32_t> g_site_victim{0};

thread_local uintptr_t t_stack_lo __attribute__((tls_model("initial-exec"))) = 0;
thread_local uintptr_t t_stack_hi __attribute__((tls_model("initial-exec"))) = 0;

// The stack slot that holds the return address into the program: the first
// one, going out from here along the shim's own frame pointers (the shim is
// built with them), whose address lies outside the shim. The vfork
// trampoline (assembly) keeps no frame pointer: the saved one above it is
// the program's rbp, perhaps not a pointer at all, so the walk stops there,
// as it does at anything that does not look like the next frame up.
bool FindCallSite(uintptr_t* slot) {
  constexpr uintptr_t kMaxShimFrame = 64 << 10;
  auto vfork_begin = reinterpret_cast<uintptr_t>(closeaudit_vfork_begin);
  auto vfork_end = reinterpret_cast<uintptr_t>(closeaudit_vfork_end);
  auto* fp = static_cast<uintptr_t*>(__builtin_frame_address(0));
  for (int depth = 0; depth < 16; ++depth) {
    uintptr_t ret = fp[1];
    if (ret < g_self_start || ret >= g_self_end) {
      *slot = reinterpret_cast<uintptr_t>(&fp[1]);
      return true;
    }
    if (ret >= vfork_begin && ret <= vfork_end) return false;
    auto* next = reinterpret_cast<uintptr_t*>(fp[0]);
    uintptr_t at = reinterpret_cast<uintptr_t>(next);
    uintptr_t here = reinterpret_cast<uintptr_t>(fp);
    if (at <= here || at - here > kMaxShimFrame || (at & 7) != 0 ||
        (t_stack_hi != 0 && at + 2 * sizeof(uintptr_t) > t_stack_hi)) {
      return false;
    }
    fp = next;
  }
  return false;
}

SiteEntry* Bucket(SiteEntry* sites, uintptr_t ret) {
  uint64_t h = ret * 0x9e3779b97f4a7c15ull;
  return sites + (h >> 56) % kSiteBuckets * kSiteWays;
}

// Widens this thread's known stack range by a walk's range, or starts again
// from it when the two do not touch (another stack: a coroutine's, say).
void NoteStackRange(uintptr_t lo, uintptr_t hi) {
  if (t_stack_hi == 0 || hi < t_stack_lo || lo > t_stack_hi) {
    t_stack_lo = lo;
    t_stack_hi = hi;
    return;
  }
  if (lo < t_stack_lo) t_stack_lo = lo;
  if (hi > t_stack_hi) t_stack_hi = hi;
}

// Whether every page of [lo, hi) can be read, lo's being the caller's own
// stack: asked of the kernel (UnwinderPipeWrite), never by reading.
bool StackReadable(uintptr_t lo, uintptr_t hi) {
  constexpr uintptr_t kPage = 4096;
  constexpr uintptr_t kMaxStackRead = 1 << 20;
  if (hi < lo || hi - lo > kMaxStackRead) return false;
  for (uintptr_t page = (lo & ~(kPage - 1)) + kPage; page < hi; page += kPage) {
    if (UnwinderPipeWrite(reinterpret_cast<const void*>(page), 8) != 8) {
      return false;
    }
  }
  return true;
}

// Fills frames (adjusted to point into the call) from the cache if an entry
// for this call site matches the stack; returns their count, or 0.
__attribute__((no_sanitize("address"))) int LookUpSite(uintptr_t slot,
                                                       uint64_t* frames,
                                                       SiteRef* ref) {
  SiteEntry* sites = g_sites.load(std::memory_order_acquire);
  if (sites == nullptr) return 0;
  // A thread no walk has seen yet (a thread per connection, say) proves
  // the stack an entry would read readable instead, page by page: a few
  // system calls that cannot fault, against a walk of the whole stack.
  bool known = slot >= t_stack_lo && slot < t_stack_hi;
  uintptr_t limit = t_stack_hi;
  uintptr_t ret0 = *reinterpret_cast<const uintptr_t*>(slot);
  SiteEntry* bucket = Bucket(sites, ret0);
  for (uint32_t way = 0; way < kSiteWays; ++way) {
    SiteEntry& e = bucket[way];
    uint32_t seq = e.seq.load(std::memory_order_acquire);
    if ((seq & 1) != 0) continue;
    uint32_t count = e.count.load(std::memory_order_relaxed);
    if (count == 0 || count > wire::kMaxFrames ||
        e.ret[0].load(std::memory_order_relaxed) != ret0) {
      continue;
    }
    if (!known) {
      uintptr_t far = slot + e.offset[count - 1].load(std::memory_order_relaxed);
      if (far < slot || !StackReadable(slot, far + sizeof(uintptr_t))) continue;
      limit = far + sizeof(uintptr_t);
    }
    uint32_t i = 1;
    for (; i < count; ++i) {
      uintptr_t at = slot + e.offset[i].load(std::memory_order_relaxed);
      if (at < slot || at > limit - sizeof(uintptr_t) || (at & 7) != 0) {
        break;
      }
      uint64_t ret = e.ret[i].load(std::memory_order_relaxed);
      if (*reinterpret_cast<const uintptr_t*>(at) != ret) break;
      frames[i] = ret - 1;
    }
    uint64_t blob = e.blob_epoch.load(std::memory_order_relaxed) ==
                            g_site_epoch.load(std::memory_order_relaxed)
                        ? e.blob.load(std::memory_order_relaxed)
                        : 0;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (i != count || e.seq.load(std::memory_order_relaxed) != seq) continue;
    frames[0] = ret0 - 1;
    *ref = {&e, seq, blob};
    if (!known) {
      NoteStackRange(reinterpret_cast<uintptr_t>(__builtin_frame_address(0)),
                     limit);
    }
    return static_cast<int>(count);
  }
  return 0;
}

SiteRef RememberSite(const uintptr_t* rets, const uintptr_t* slots,
                     int count) {
  SiteEntry* sites = g_sites.load(std::memory_order_acquire);
  if (sites == nullptr || count <= 0) return {};
  SiteEntry* bucket = Bucket(sites, rets[0]);
  SiteEntry* e = nullptr;
  for (uint32_t way = 0; way < kSiteWays && e == nullptr; ++way) {
    if (bucket[way].count.load(std::memory_order_relaxed) == 0) e = &bucket[way];
  }
  if (e == nullptr) {
    e = &bucket[g_site_victim.fetch_add(1, std::memory_order_relaxed) %
                kSiteWays];
  }
  uint32_t seq = e->seq.load(std::memory_order_relaxed);
  if ((seq & 1) != 0 ||
      !e->seq.compare_exchange_strong(seq, seq + 1,
                                      std::memory_order_acquire)) {
    return {};  // another thread (or an interrupted one) is writing it
  }
  std::atomic_thread_fence(std::memory_order_release);
  e->count.store(static_cast<uint32_t>(count), std::memory_order_relaxed);
  e->blob.store(0, std::memory_order_relaxed);
  for (int i = 0; i < count; ++i) {
    e->offset[i].store(static_cast<uint32_t>(slots[i] - slots[0]),
                       std::memory_order_relaxed);
    e->ret[i].store(rets[i], std::memory_order_relaxed);
  }
  e->seq.store(seq + 2, std::memory_order_release);
  return {e, seq + 2, 0};
}

// Records the blob of the entry's stack, unless the entry changed since.
void NoteSiteBlob(const SiteRef& ref, uint64_t blob) {
  if (ref.entry == nullptr || ref.blob == blob) return;
  uint32_t seq = ref.seq;
  if (!ref.entry->seq.compare_exchange_strong(seq, seq + 1,
                                              std::memory_order_acquire)) {
    return;
  }
  std::atomic_thread_fence(std::memory_order_release);
  ref.entry->blob.store(blob, std::memory_order_relaxed);
  ref.entry->blob_epoch.store(g_site_epoch.load(std::memory_order_relaxed),
                              std::memory_order_relaxed);
  ref.entry->seq.store(seq + 2, std::memory_order_release);
}


// Walks the stack with libunwind's cursor API, which, unlike unw_backtrace,
// reports where each frame's return address was found. Returns the number of
// program frames (the shim's own are dropped) written to frames, and caches
// the walk if `slot` (the first program frame's slot) is where it found it.
// JIT-compiled code (V8's, in anonymous memory) has no unwind info, and
// neither have V8's builtins in the node binary. For each such frame
// libunwind searches every loaded object (dl_iterate_phdr between two
// sigprocmask calls) before it falls back to the frame pointer, whose
// memory it then validates (mincore), and it remembers nothing of the
// miss: a Node.js connection's stacks cross some forty such frames, about a
// hundred system calls. The walk steps over them itself instead, by the
// frame pointer V8 keeps, and restarts libunwind at the caller. Which
// return addresses have no unwind info is learned once per address, from
// libunwind's own lookup (which, like its step, takes the loader's lock:
// see WalkGate).
constexpr uint32_t kNoInfoSlots = 8192;
std::atomic<uint64_t> g_no_info[kNoInfoSlots];  // ip << 1 | no info

bool WithoutUnwindInfo(const Unwinder* unw, unw_cursor_t* cursor, uintptr_t ip) {
  std::atomic<uint64_t>& slot =
      g_no_info[(ip * 0x9e3779b97f4a7c15ull) >> 51];
  uint64_t seen = slot.load(std::memory_order_relaxed);
  if (seen != 0 && (seen >> 1) == ip) return (seen & 1) != 0;
  // libunwind's own lookup, the one its step would make. Without unwind
  // info, its x86-64 get_proc_info succeeds with a made-up procedure of one
  // byte at the address.
  unw_proc_info_t proc;
  bool none = unw->get_proc_info(cursor, &proc) != 0 ||
              (proc.start_ip == ip && proc.end_ip == ip + 1);
  slot.store(uint64_t{ip} << 1 | (none ? 1 : 0), std::memory_order_relaxed);
  return none;
}

// The caller of the JIT frame whose frame pointer is fp (sp: the frame's
// stack pointer): its return address and stack and frame pointers, in a
// copy of `context` that libunwind can start from. False if fp does not
// look like a frame of this stack.
__attribute__((no_sanitize("address"))) bool StepJitFrame(
    const unw_context_t& context, unw_word_t sp, unw_word_t fp,
    unw_context_t* caller) {
  constexpr unw_word_t kMaxJitFrame = 1 << 20;
  if (fp < sp || fp - sp > kMaxJitFrame || (fp & 7) != 0) return false;
  bool known = fp >= t_stack_lo && fp + 16 <= t_stack_hi;
  if (!known && (UnwinderPipeWrite(reinterpret_cast<const void*>(fp), 8) != 8 ||
                 UnwinderPipeWrite(reinterpret_cast<const void*>(fp + 8), 8) != 8)) {
    return false;
  }
  const auto* link = reinterpret_cast<const uintptr_t*>(fp);
  uintptr_t ret = link[1];
  if (ret < 4096) return false;
  *caller = context;
  caller->uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(ret);
  caller->uc_mcontext.gregs[REG_RSP] = static_cast<greg_t>(fp + 16);
  caller->uc_mcontext.gregs[REG_RBP] = static_cast<greg_t>(link[0]);
  return true;
}

// A walk looks up unwind info through the loader (dl_iterate_phdr, under
// its lock). A fork child inherits that lock held if another thread of its
// parent was inside one then, and its next dlopen(), or walk, waits
// forever. So a fork waits for the walks in flight to finish and holds new
// ones back until it returned (PauseWalksForFork); the forking thread's own
// walks (its atfork handlers' calls, a signal handler's) go on.
std::atomic<int> g_walks_in_flight{0};
std::atomic<int> g_forks_waiting{0};
thread_local bool t_forking = false;

class WalkGate {
 public:
  WalkGate() {
    if (t_forking) return;
    for (;;) {
      while (g_forks_waiting.load(std::memory_order_acquire) != 0) sched_yield();
      g_walks_in_flight.fetch_add(1, std::memory_order_acq_rel);
      if (g_forks_waiting.load(std::memory_order_acquire) == 0) break;
      g_walks_in_flight.fetch_sub(1, std::memory_order_acq_rel);
    }
    counted_ = true;
  }
  ~WalkGate() {
    if (counted_) g_walks_in_flight.fetch_sub(1, std::memory_order_release);
  }
  WalkGate(const WalkGate&) = delete;
  WalkGate& operator=(const WalkGate&) = delete;

 private:
  bool counted_ = false;
};

__attribute__((no_sanitize("address"))) int WalkAndRemember(uintptr_t slot,
                                                            uint64_t* frames,
                                                            SiteRef* ref) {
  uintptr_t rets[wire::kMaxFrames];
  uintptr_t slots[wire::kMaxFrames];
  int count = 0;
  bool cacheable = slot != 0;
  uintptr_t lowest = 0, highest = 0;
  const Unwinder* unw = LoadUnwinder();
  if (unw == nullptr) return 0;
  WalkGate gate;
  ++t_unwinding;
  unw_context_t context;
  unw_context_t restart;  // a JIT frame's caller, to start libunwind from
  unw_cursor_t cursor;
  if (unw->getcontext(&context) == 0 &&
      unw->init_local(&cursor, &context) == 0) {
    bool in_shim = true;
    for (int steps = 0; steps < kCaptureFrames; ++steps) {
      unw_word_t ip = 0, sp = 0;
      unw->get_reg(&cursor, UNW_REG_IP, &ip);
      unw->get_reg(&cursor, UNW_REG_SP, &sp);
      if (steps == 0) lowest = sp;
      // Not one stack, going out: a frame below the last, or far above it
      // (a coroutine's stack linked to the thread's by unwind info).
      constexpr unw_word_t kMaxFrameGap = 1 << 20;
      if (sp < highest || (steps > 0 && sp - highest > kMaxFrameGap)) {
        cacheable = false;
      }
      highest = sp;
      if (unw->is_signal_frame(&cursor) > 0) cacheable = false;
      if (!(in_shim && ip >= g_self_start && ip < g_self_end)) {
        in_shim = false;
        if (count == static_cast<int>(wire::kMaxFrames)) break;
        // The return address was pushed just below the caller's stack
        // pointer, unless this frame was entered by a signal.
        rets[count] = ip;
        slots[count] = sp - sizeof(uintptr_t);
        frames[count++] = ip - 1;
        if (steps > 0 && WithoutUnwindInfo(unw, &cursor, ip)) {
          unw_word_t fp = 0;
          unw->get_reg(&cursor, UNW_X86_64_RBP, &fp);
          if (!StepJitFrame(context, sp, fp, &restart) ||
              unw->init_local(&cursor, &restart) != 0) {
            break;
          }
          continue;
        }
      }
      if (unw->step(&cursor) <= 0) break;
    }
  }
  --t_unwinding;
  if (count == 0 || !cacheable || slots[0] != slot) return count;
  for (int i = 0; i < count; ++i) {
    if (*reinterpret_cast<const uintptr_t*>(slots[i]) != rets[i]) return count;
  }
  NoteStackRange(lowest, highest);
  *ref = RememberSite(rets, slots, count);
  return count;
}
#endif  // !__SANITIZE_THREAD__

uint64_t HashFrames(const uint64_t* frames, int n, const wire::PyFrame* py,
                    int py_count) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(n) ^
               (static_cast<uint64_t>(py_count) << 32);
  auto mix = [&h](uint64_t v) {
    h ^= v;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  };
  for (int i = 0; i < n; ++i) mix(frames[i]);
  for (int i = 0; i < py_count; ++i) {
    mix(uint64_t{py[i].code} << 32 | py[i].where);
  }
  return h | 1;  // never 0, which marks an empty slot
}

}  // namespace

void PauseWalksForFork() {
#if !defined(__SANITIZE_THREAD__)
  t_forking = true;
  g_forks_waiting.fetch_add(1, std::memory_order_acq_rel);
  while (g_walks_in_flight.load(std::memory_order_acquire) != 0) sched_yield();
#endif
}

void ResumeWalksAfterFork(bool child) {
#if defined(__SANITIZE_THREAD__)
  (void)child;
#else
  t_forking = false;
  if (child) {
    // The only thread: nothing is in flight, and no other fork waits.
    g_walks_in_flight.store(0, std::memory_order_relaxed);
    g_forks_waiting.store(0, std::memory_order_release);
    return;
  }
  g_forks_waiting.fetch_sub(1, std::memory_order_acq_rel);
#endif
}

void InitStacks() {
  FindSelf();
#if defined(__SANITIZE_THREAD__)
  dl_iterate_phdr(FindUnwinder, reinterpret_cast<void*>(&backtrace));
#endif
}

void MapStackTables() {
  // Both tables are touched page by page as stacks arrive. libunwind is
  // loaded by the first walk (unwinder.h).
  if (g_table.load(std::memory_order_relaxed) == nullptr) {
    g_table.store(MapTable(), std::memory_order_release);
  }
#if !defined(__SANITIZE_THREAD__)
  if (g_sites.load(std::memory_order_relaxed) == nullptr) {
    void* sites =
        mmap(nullptr, sizeof(SiteEntry) * kSiteBuckets * kSiteWays,
             PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sites != MAP_FAILED) {
      g_sites.store(static_cast<SiteEntry*>(sites), std::memory_order_release);
    }
  }
#endif
}

long UnwinderPipeWrite(const void* addr, size_t len) {
  if (len == 0) return 0;
  // rt_sigprocmask copies the new mask in from user memory before it looks at
  // `how`: with an invalid `how` it fails with EFAULT when that memory cannot
  // be read, and otherwise with EINVAL, changing nothing. The 8 aligned bytes
  // that hold addr never straddle a page.
  auto at = reinterpret_cast<uintptr_t>(addr) & ~uintptr_t{7};
  long r = Real().syscall(SYS_rt_sigprocmask, -1L, at, 0L, 8L, 0L, 0L);
  if (r == -1 && errno == EFAULT) return -1;
  return static_cast<long>(len);
}

bool OnThisThreadsStack(const void* p, size_t size) {
#if defined(__SANITIZE_THREAD__)
  (void)p;
  (void)size;
  return false;  // no walks, no known bounds
#else
  uintptr_t here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  uintptr_t at = reinterpret_cast<uintptr_t>(p);
  return t_stack_hi != 0 && here >= t_stack_lo && at >= here &&
         at + size >= at && at + size <= t_stack_hi;
#endif
}

bool InUnwinder(const void* ip) {
  uintptr_t p = reinterpret_cast<uintptr_t>(ip);
#if defined(__SANITIZE_THREAD__)
  return p >= g_unwinder_start && p < g_unwinder_end;
#else
  return InLoadedUnwinder(p);
#endif
}

void ResetStacks() {
  g_site_epoch.fetch_add(1, std::memory_order_relaxed);
  python::ResetCodes();
  java::ResetFrames();
  // A table no stack went into needs no replacing (and a fork child that
  // execs at once pays nothing for it).
  if (!g_table_used.load(std::memory_order_relaxed)) return;
  g_table_used.store(false, std::memory_order_relaxed);
  StackSlot* old = g_table.load(std::memory_order_relaxed);
  g_table.store(MapTable(), std::memory_order_release);
  if (old) munmap(old, sizeof(StackSlot) * kTableSize);
}

namespace {

// The program's frames, innermost first, each a return address less one: one
// less points into the call, so that line tables name the line of the call.
// `ref` is the call-site entry the frames came from or went to, if any.
int ProgramFrames(uint64_t* frames, SiteRef* ref) {
#if defined(__SANITIZE_THREAD__)
  (void)ref;  // no call-site cache without libunwind
  void* raw[kCaptureFrames];
  int n = Backtrace(raw, kCaptureFrames);
  int count = 0;
  bool in_shim = true;
  for (int i = 0; i < n && count < static_cast<int>(wire::kMaxFrames); ++i) {
    uintptr_t ip = reinterpret_cast<uintptr_t>(raw[i]);
    if (in_shim && ip >= g_self_start && ip < g_self_end) continue;
    in_shim = false;
    frames[count++] = ip - 1;
  }
  return count;
#else
  uintptr_t slot = 0;
  if (!FindCallSite(&slot)) slot = 0;
  if (slot != 0) {
    int count = LookUpSite(slot, frames, ref);
    if (count > 0) return count;
  }
  return WalkAndRemember(slot, frames, ref);
#endif
}

}  // namespace

namespace {

// The arena offset of a blob holding these frames: the one written before,
// or a new one.
uint32_t DedupStack(RingWriter& ring, const uint64_t* frames, int count,
                    const wire::PyFrame* py, int py_count) {
  uint64_t hash = HashFrames(frames, count, py, py_count);
  if (!g_table_used.load(std::memory_order_relaxed)) {
    g_table_used.store(true, std::memory_order_relaxed);
  }
  StackSlot* table = g_table.load(std::memory_order_acquire);
  StackSlot* claimed = nullptr;
  if (table) {
    for (int probe = 0; probe < kMaxProbes; ++probe) {
      StackSlot& slot = table[(hash + probe) & (kTableSize - 1)];
      uint64_t seen = slot.hash.load(std::memory_order_acquire);
      if (seen == hash) {
        uint64_t blob = slot.blob.load(std::memory_order_acquire);
        if (blob != 0 && (blob >> 32) == ring.generation()) {
          return static_cast<uint32_t>(blob);
        }
        if (blob != 0) claimed = &slot;  // from an older ring: refresh it
        break;  // or another thread is writing it: write our own copy
      }
      if (seen == 0) {
        uint64_t expected = 0;
        if (slot.hash.compare_exchange_strong(expected, hash,
                                              std::memory_order_acq_rel)) {
          claimed = &slot;
          break;
        }
        if (expected == hash) break;
      }
    }
  }

  uint32_t bytes = sizeof(wire::StackBlob) + sizeof(uint64_t) * count +
                   sizeof(wire::PyFrame) * py_count;
  bytes = wire::AlignBlob(bytes);
  void* mem = nullptr;
  uint32_t offset = ring.AllocBlob(bytes, &mem);
  if (offset == 0) return 0;
  auto* blob = static_cast<wire::StackBlob*>(mem);
  blob->header.kind = wire::BlobKind::kStack;
  blob->header.reserved = 0;
  blob->header.bytes = bytes;
  blob->frame_count = static_cast<uint32_t>(count);
  blob->py_frame_count = static_cast<uint32_t>(py_count);
  std::memcpy(blob->frames, frames, sizeof(uint64_t) * count);
  if (py_count > 0) {
    std::memcpy(blob->frames + count, py, sizeof(wire::PyFrame) * py_count);
  }
  if (claimed) {
    claimed->blob.store((uint64_t{ring.generation()} << 32) | offset,
                        std::memory_order_release);
  }
  return offset;
}

}  // namespace

uint32_t StackBlobOf(RingWriter& ring, const uint64_t* frames, int count,
                     const wire::PyFrame* py, int py_count) {
  return DedupStack(ring, frames, count, py, py_count);
}

namespace {

// The Java frames of a Socket.close() in progress on this thread, taken at
// its shutdown, for its close: the same Java frames (see
// java::Walk's `closing`), so walked once. `cookie` 0: none. The frames
// name definitions in the arena of the ring of that `generation` (a fork
// child's, or a reconnected process's, is another).
struct ClosingFrames {
  uint64_t cookie;
  uint32_t generation;
  int count;
  wire::PyFrame frames[java::kMaxJavaFrames];
};
thread_local ClosingFrames t_closing __attribute__((tls_model("initial-exec")));

// CaptureStack's work, with the Java frames `java_count` > 0 gives instead
// of a walk; with `closing`, as java::Walk says it.
uint32_t Capture(RingWriter& ring, const wire::PyFrame* java_frames,
                 int java_count, bool* closing) {
  uint64_t frames[wire::kMaxFrames];
  SiteRef site;
  int count = ProgramFrames(frames, &site);
  if (count == 0) return 0;
  // In a Python process the same native frames run many Python stacks: the
  // call site's blob stands for its native frames only.
  wire::PyFrame py[wire::kMaxPyFrames];
  int py_count = python::Active()
                     ? python::Walk(ring, py, static_cast<int>(wire::kMaxPyFrames))
                     : 0;
  // In a JVM, a call the JDK's native code made for a Java method.
  if (py_count == 0 && java_count > 0) {
    std::memcpy(py, java_frames, sizeof(wire::PyFrame) * java_count);
    py_count = java_count;
  } else if (py_count == 0 && java::Active()) {
    py_count = java::Walk(ring, frames, count, py,
                          static_cast<int>(wire::kMaxPyFrames), closing);
    if (closing != nullptr && *closing) {
      // Its stack is the close's, which follows: see CaptureShutdownStack.
      t_closing.count = py_count;
      std::memcpy(t_closing.frames, py, sizeof(wire::PyFrame) * py_count);
      return 0;
    }
  }
  if (py_count == 0 && site.blob != 0 &&
      (site.blob >> 32) == ring.generation()) {
    return static_cast<uint32_t>(site.blob);
  }
  uint32_t offset = DedupStack(ring, frames, count, py, py_count);
#if !defined(__SANITIZE_THREAD__)
  if (offset != 0 && py_count == 0) {
    NoteSiteBlob(site, (uint64_t{ring.generation()} << 32) | offset);
  }
#endif
  return offset;
}

}  // namespace

uint32_t CaptureStack(RingWriter& ring, uint64_t closing) {
  if (closing != 0 && t_closing.cookie != 0) {
    bool same = t_closing.cookie == closing &&
                t_closing.generation == ring.generation();
    t_closing.cookie = 0;
    if (same && t_closing.count > 0) {
      return Capture(ring, t_closing.frames, t_closing.count, nullptr);
    }
  }
  return Capture(ring, nullptr, 0, nullptr);
}

uint32_t CaptureShutdownStack(RingWriter& ring, uint64_t cookie,
                              bool* before_close) {
  *before_close = false;
  uint32_t offset = Capture(ring, nullptr, 0, before_close);
  if (*before_close) {
    t_closing.cookie = cookie;
    t_closing.generation = ring.generation();
  }
  return offset;
}

}  // namespace closeaudit::shim
