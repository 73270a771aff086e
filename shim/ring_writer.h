// RingWriter: the producer end of this process's shared event ring.
//
// Create() makes a sealed memfd holding the ring (see common/wire.h) and maps
// it; the fd is then handed to the collector and closed, so the shim keeps no
// fd of its own that a program could close or dup2 over. Push() and
// AllocBlob() are lock-free, allocation-free and async-signal-safe; they drop
// (and count) rather than wait when the ring or arena is full.
#ifndef CLOSEAUDIT_SHIM_RING_WRITER_H_
#define CLOSEAUDIT_SHIM_RING_WRITER_H_

#include <cstdint>

#include "common/wire.h"

namespace closeaudit::shim {

class RingWriter {
 public:
  // Returns false (with errno set) if the memfd or the mapping fails.
  bool Create(uint32_t slot_count, uint32_t arena_bytes);

  // Unmaps the ring without touching its contents (after fork, the child lets
  // go of the parent's ring this way).
  void Abandon();
  // Lets go of the ring without unmapping it (a fork child that may exec at
  // once: the mapping goes with the exec, for free).
  void Forget();

  bool ok() const { return header_ != nullptr; }
  // Distinguishes the rings this process has had (they are never reused).
  uint32_t generation() const { return generation_; }
  // Events pushed so far, and events dropped so far.
  uint64_t written() const;
  uint64_t dropped() const;
  // Adds n to the ring's dropped-event count (events lost elsewhere).
  void CountDropped(uint64_t n);
  // The collector's last drain (CLOCK_MONOTONIC ns), 0 before the first.
  uint64_t consumer_heartbeat() const;

  bool Push(const wire::Event& event);

  // Reserves `bytes` (header included) in the arena and returns the blob's
  // offset, or 0 if the arena is full. *out points at the reserved memory.
  uint32_t AllocBlob(uint32_t bytes, void** out);

  // The memfd. -1 after ReleaseFd().
  int fd() const { return fd_; }
  // False if the program closed the memfd (or put another file on its
  // number) since Create().
  bool FdStillOurs() const;
  // Returns the memfd and forgets it; the caller closes it.
  int ReleaseFd();
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  wire::RingHeader* header_ = nullptr;
  wire::Slot* slots_ = nullptr;
  uint8_t* arena_ = nullptr;
  uint32_t slot_count_ = 0;
  uint32_t shift_ = 0;
  uint32_t arena_bytes_ = 0;
  uint64_t total_bytes_ = 0;
  int fd_ = -1;
  uint64_t fd_inode_ = 0;
  uint32_t generation_ = 0;
};

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_RING_WRITER_H_
