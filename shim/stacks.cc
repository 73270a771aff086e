#include "shim/stacks.h"

#include <dlfcn.h>
#include <link.h>
#include <sys/mman.h>

#define UNW_LOCAL_ONLY
#include <execinfo.h>
#include <libunwind.h>

#include <atomic>
#include <cstring>

#include "common/wire.h"
#include "shim/recorder.h"

namespace closeaudit::shim {
namespace {

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

StackSlot* g_table = nullptr;
uintptr_t g_self_start = 0;
uintptr_t g_self_end = 0;
// The module that holds the unwinder, all of its segments.
uintptr_t g_unwinder_start = 0;
uintptr_t g_unwinder_end = 0;

StackSlot* MapTable() {
  void* mem = mmap(nullptr, sizeof(StackSlot) * kTableSize,
                   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return mem == MAP_FAILED ? nullptr : static_cast<StackSlot*>(mem);
}

int FindSelf(dl_phdr_info* info, size_t, void* data) {
  uintptr_t probe = reinterpret_cast<uintptr_t>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    uintptr_t end = start + ph.p_memsz;
    if (probe >= start && probe < end) {
      g_self_start = start;
      g_self_end = end;
      return 1;
    }
  }
  return 0;
}

// Under ThreadSanitizer, libunwind's per-thread trace cache is freed by a
// pthread key destructor that takes a mutex after TSan has torn down the
// exiting thread's state, which crashes TSan itself. TSan builds therefore
// walk the stack with glibc's backtrace(); every other build uses libunwind.
int Backtrace(void** frames, int max) {
  ++t_unwinding;
#if defined(__SANITIZE_THREAD__)
  int n = backtrace(frames, max);
#else
  int n = unw_backtrace(frames, max);
#endif
  --t_unwinding;
  return n;
}

int FindUnwinder(dl_phdr_info* info, size_t, void* data) {
  uintptr_t probe = reinterpret_cast<uintptr_t>(data);
  uintptr_t lo = ~uintptr_t{0}, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (start < lo) lo = start;
    if (start + ph.p_memsz > hi) hi = start + ph.p_memsz;
  }
  if (probe < lo || probe >= hi) return 0;
  g_unwinder_start = lo;
  g_unwinder_end = hi;
  return 1;
}

uint64_t HashFrames(const uint64_t* frames, int n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(n);
  for (int i = 0; i < n; ++i) {
    h ^= frames[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return h | 1;  // never 0, which marks an empty slot
}

}  // namespace

void InitStacks() {
  dl_iterate_phdr(FindSelf, reinterpret_cast<void*>(&InitStacks));
#if defined(__SANITIZE_THREAD__)
  void* unwinder = reinterpret_cast<void*>(&backtrace);
#else
  void* unwinder = reinterpret_cast<void*>(&unw_backtrace);
#endif
  dl_iterate_phdr(FindUnwinder, unwinder);
  // libunwind sets itself up on first use (opening a pipe, see pipe2 in
  // preload.cc): that is unwinding too.
#if !defined(__SANITIZE_THREAD__)  // TSan builds do not use libunwind
  ++t_unwinding;
  unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
  unw_set_cache_size(unw_local_addr_space, 1024, 0);
  --t_unwinding;
#endif
  g_table = MapTable();
  // Let libunwind finish its own set-up now, inside the shim (see pipe2 in
  // preload.cc), rather than at the program's first socket call.
  void* warm[4];
  Backtrace(warm, 4);
}

bool InUnwinder(const void* ip) {
  uintptr_t p = reinterpret_cast<uintptr_t>(ip);
  return p >= g_unwinder_start && p < g_unwinder_end;
}

void ResetStacks() {
  StackSlot* old = g_table;
  g_table = MapTable();
  if (old) munmap(old, sizeof(StackSlot) * kTableSize);
}

uint32_t CaptureStack(RingWriter& ring) {
  void* raw[kCaptureFrames];
  int n = Backtrace(raw, kCaptureFrames);
  uint64_t frames[wire::kMaxFrames];
  int count = 0;
  bool in_shim = true;
  for (int i = 0; i < n && count < static_cast<int>(wire::kMaxFrames); ++i) {
    uintptr_t ip = reinterpret_cast<uintptr_t>(raw[i]);
    if (in_shim && ip >= g_self_start && ip < g_self_end) continue;
    in_shim = false;
    // A return address points after the call; one less points into it, so
    // that line tables name the line of the call.
    frames[count++] = ip - 1;
  }
  if (count == 0) return 0;

  uint64_t hash = HashFrames(frames, count);
  StackSlot* table = g_table;
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

  uint32_t bytes = sizeof(wire::StackBlob) + sizeof(uint64_t) * count;
  void* mem = nullptr;
  uint32_t offset = ring.AllocBlob(bytes, &mem);
  if (offset == 0) return 0;
  auto* blob = static_cast<wire::StackBlob*>(mem);
  blob->header.kind = wire::BlobKind::kStack;
  blob->header.reserved = 0;
  blob->header.bytes = bytes;
  blob->frame_count = static_cast<uint32_t>(count);
  blob->reserved = 0;
  std::memcpy(blob->frames, frames, sizeof(uint64_t) * count);
  if (claimed) {
    claimed->blob.store((uint64_t{ring.generation()} << 32) | offset,
                        std::memory_order_release);
  }
  return offset;
}

}  // namespace closeaudit::shim
