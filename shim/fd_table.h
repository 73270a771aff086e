// FdTable: what the shim knows about each fd number of this process.
//
// Lock-free and async-signal-safe: every field of an entry is an atomic that
// a wrapper reads or writes on its own, so close() from a signal handler that
// interrupted an update of the same entry cannot deadlock. Storage grows
// lazily in 1024-entry chunks obtained with mmap (never malloc), under a
// fixed top-level array; nothing is sized from RLIMIT_NOFILE.
//
// An entry describes a socket only while its cookie is non-zero. Races between
// threads operating on the same fd number are the program's own races; the
// table only promises not to crash and to hand each open socket to exactly one
// closer (Release() is an exchange).
#ifndef CLOSEAUDIT_SHIM_FD_TABLE_H_
#define CLOSEAUDIT_SHIM_FD_TABLE_H_

#include <atomic>
#include <cstdint>

#include "common/wire.h"

namespace closeaudit::shim {

// The fd's state bits are the ones events carry (wire::EventState).
using FdState = uint32_t;
using wire::kStateAddressSent;
using wire::kStateConnected;
using wire::kStateCloexec;
using wire::kStateEofSeen;
using wire::kStateInet;
using wire::kStateLinger0;
using wire::kStateListening;
using wire::kStateShutWr;
using wire::kStateStream;
using wire::kStateUsed;

struct FdEntry {
  std::atomic<uint64_t> cookie;  // 0: not a tracked socket
  std::atomic<uint64_t> inode;
  std::atomic<uint32_t> state;   // FdState bits
  std::atomic<uint32_t> generation;  // bumped each time the number is reused
  std::atomic<uint64_t> last_use_ip;  // caller of the last read with data
};
static_assert(sizeof(FdEntry) == 32);

class FdTable {
 public:
  static constexpr int kChunkBits = 10;
  static constexpr int kChunkSize = 1 << kChunkBits;
  static constexpr int kTopSize = 1 << 15;  // 32M fds
  static constexpr long kMaxFd = static_cast<long>(kTopSize) * kChunkSize;

  // The entry for fd if its chunk exists, else nullptr. Wait-free.
  FdEntry* Find(int fd) const {
    if (fd < 0 || fd >= kMaxFd) return nullptr;
    FdEntry* chunk = top_[fd >> kChunkBits].load(std::memory_order_acquire);
    return chunk ? &chunk[fd & (kChunkSize - 1)] : nullptr;
  }

  // The entry for fd, creating its chunk if needed. nullptr if fd is out of
  // range or mmap failed.
  FdEntry* Get(int fd);

  // Records a socket at fd (overwriting whatever was there).
  void Set(int fd, uint64_t cookie, uint64_t inode, uint32_t state);

  // Forgets fd and returns the cookie it held (0 if none). Exactly one of
  // several concurrent callers gets the cookie.
  uint64_t Release(int fd, FdEntry* out_copy = nullptr);

  // Calls fn(fd, entry) for every tracked socket. Not atomic as a whole.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    FindFirst([&fn](int fd, FdEntry& e) {
      fn(fd, e);
      return false;
    });
  }

  // Whether any socket is tracked (stops at the first). Not atomic as a
  // whole: for a question a fork asks, such as whether its child can hold
  // anything of the shim's.
  bool Any() const {
    return FindFirst([](int, FdEntry&) { return true; });
  }

  // Forgets everything (used by tests); chunks stay mapped.
  void Clear();

 private:
  // Visits the tracked sockets until stop(fd, entry) says so; whether it
  // did. Only as far as chunks were made: the untouched rest of the top
  // level is pages nobody ever faulted in, and a fork child walks this.
  template <typename Stop>
  bool FindFirst(Stop&& stop) const {
    int used = top_used_.load(std::memory_order_acquire);
    for (int c = 0; c < used; ++c) {
      FdEntry* chunk = top_[c].load(std::memory_order_acquire);
      if (!chunk) continue;
      for (int i = 0; i < kChunkSize; ++i) {
        if (chunk[i].cookie.load(std::memory_order_relaxed) != 0 &&
            stop((c << kChunkBits) | i, chunk[i])) {
          return true;
        }
      }
    }
    return false;
  }

  // First, so that it shares a page with the chunks of the low fds.
  std::atomic<int> top_used_{0};  // 1 + the highest chunk index made
  std::atomic<FdEntry*> top_[kTopSize] = {};
};

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_FD_TABLE_H_
