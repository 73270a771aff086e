// Stack capture for lifecycle events, deduplicated per process.
//
// CaptureStack() finds the caller's frames (the shim's own are dropped) into a
// fixed array (no heap) and returns the arena offset of a StackBlob holding
// them. A call site seen before is recognised by re-reading the return
// addresses its last walk found, where it found them (see stacks.cc); others
// are walked with libunwind. Identical stacks are written to the arena once: a
// lock-free open-addressing table maps a 64-bit hash of the frames to the
// blob. Async-signal-safe as long as libunwind's per-thread cache is (it is
// set to UNW_CACHE_PER_THREAD at Init()).
#ifndef CLOSEAUDIT_SHIM_STACKS_H_
#define CLOSEAUDIT_SHIM_STACKS_H_

#include <cstddef>
#include <cstdint>

#include "shim/ring_writer.h"

namespace closeaudit::shim {

// Sets up libunwind and learns the address range of the shim itself.
void InitStacks();

// Returns the blob offset of the current stack, or 0 if it could not be
// recorded (arena full, unwinding failed).
uint32_t CaptureStack(RingWriter& ring);

// Whether ip lies in the unwinder's own code (libunwind; glibc's unwinder
// under TSan). Only calls made from there are the unwinder's own: a signal
// handler that interrupts an unwind is still the program.
bool InUnwinder(const void* ip);

// Whether [p, p + size) lies on the calling thread's stack, between the
// caller's frame and the outermost frame a walk of this thread has seen: such
// memory is mapped, so the shim may read it. False when unsure.
bool OnThisThreadsStack(const void* p, size_t size);

// Forgets every known stack (the blobs they point at belong to a ring that is
// being replaced, as in a fork child). Allocation-free.
void ResetStacks();

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_STACKS_H_
