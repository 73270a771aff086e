#include "shim/fd_table.h"

#include <sys/mman.h>

namespace closeaudit::shim {

FdEntry* FdTable::Get(int fd) {
  if (fd < 0 || fd >= kMaxFd) return nullptr;
  std::atomic<FdEntry*>& slot = top_[fd >> kChunkBits];
  FdEntry* chunk = slot.load(std::memory_order_acquire);
  if (!chunk) {
    void* mem = mmap(nullptr, sizeof(FdEntry) * kChunkSize,
                     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    FdEntry* fresh = static_cast<FdEntry*>(mem);
    if (slot.compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel)) {
      chunk = fresh;
      int index = (fd >> kChunkBits) + 1;
      int used = top_used_.load(std::memory_order_relaxed);
      while (used < index &&
             !top_used_.compare_exchange_weak(used, index,
                                              std::memory_order_release)) {
      }
    } else {
      munmap(mem, sizeof(FdEntry) * kChunkSize);  // another thread won
    }
  }
  return &chunk[fd & (kChunkSize - 1)];
}

void FdTable::Set(int fd, uint64_t cookie, uint64_t inode, uint32_t state) {
  FdEntry* e = Get(fd);
  if (!e) return;
  e->generation.fetch_add(1, std::memory_order_relaxed);
  e->inode.store(inode, std::memory_order_relaxed);
  e->state.store(state, std::memory_order_relaxed);
  e->last_use_ip.store(0, std::memory_order_relaxed);
  // Publish last: a reader that sees the cookie sees the fields above.
  e->cookie.store(cookie == 0 ? ~0ull : cookie, std::memory_order_release);
}

uint64_t FdTable::Release(int fd, FdEntry* out_copy) {
  FdEntry* e = Find(fd);
  if (!e) return 0;
  if (out_copy) {
    out_copy->inode.store(e->inode.load(std::memory_order_relaxed));
    out_copy->state.store(e->state.load(std::memory_order_relaxed));
    out_copy->generation.store(e->generation.load(std::memory_order_relaxed));
    out_copy->last_use_ip.store(e->last_use_ip.load(std::memory_order_relaxed));
  }
  return e->cookie.exchange(0, std::memory_order_acq_rel);
}

void FdTable::Clear() {
  ForEach([](int, FdEntry& e) { e.cookie.store(0, std::memory_order_relaxed); });
}

}  // namespace closeaudit::shim
