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

// Learns the address range of the shim itself (at load).
void InitStacks();

// Maps the stack and call-site tables: when the image starts, so that a
// process that never makes a socket pays no mmap for them. Safe to call
// again (a fork child's tables are its parent's copies).
void MapStackTables();

// Returns the blob offset of the current stack, or 0 if it could not be
// recorded (arena full, unwinding failed). `closing`: the cookie of the
// socket a close is closing, if this is a close's stack.
uint32_t CaptureStack(RingWriter& ring, uint64_t closing = 0);

// The stack of a shutdown() of the socket `cookie`, as CaptureStack gives
// it; or, when it is a runtime's own on its way to a close that follows in
// the same call (java::Walk's `closing`), 0 with *before_close set: that
// close's stack stands for both, and is walked once (the shutdown's Java
// frames are kept on this thread for it).
uint32_t CaptureShutdownStack(RingWriter& ring, uint64_t cookie,
                              bool* before_close);

// The blob offset of a stack of these frames (written once per process, as
// CaptureStack's are); 0 if the arena is full.
uint32_t StackBlobOf(RingWriter& ring, const uint64_t* frames, int count,
                     const wire::PyFrame* py, int py_count);

// Whether ip lies in the unwinder's own code (libunwind; glibc's unwinder
// under TSan). Only calls made from there are the unwinder's own: a signal
// handler that interrupts an unwind is still the program.
bool InUnwinder(const void* ip);

// Whether [p, p + size) lies on the calling thread's stack, between the
// caller's frame and the outermost frame a walk of this thread has seen: such
// memory is mapped, so the shim may read it. False when unsure.
bool OnThisThreadsStack(const void* p, size_t size);

// libunwind's address-validation pipe, without a pipe.
//
// When libunwind falls back from unwind tables to frame pointers it checks
// each address before reading it, by write(2)-ing one byte from it into a
// pipe it opens at initialisation: the kernel answers EFAULT for memory that
// is not readable. Those two fds would be the program's to see (in
// /proc/self/fd, in a close-all loop, at its RLIMIT_NOFILE). So the shim
// hands libunwind two numbers no fd can ever have (the kernel keeps every fd
// below INT_MAX - 63) and answers libunwind's calls on them itself: pipe2
// returns them, read says EAGAIN (the pipe is never full), close succeeds,
// and the write asks the kernel the same question through a system call
// that needs no fd (see UnwinderPipeWrite in stacks.cc).
inline constexpr int kUnwinderPipeRead = 0x7ffffffe;
inline constexpr int kUnwinderPipeWrite = 0x7fffffff;
inline bool IsUnwinderPipe(long fd) {
  return fd >= kUnwinderPipeRead && fd <= kUnwinderPipeWrite;
}
// What write(kUnwinderPipeWrite, addr, len) returns: len if the first bytes
// at addr are readable, else -1 with errno EFAULT. Never faults.
long UnwinderPipeWrite(const void* addr, size_t len);

// Forgets every known stack (the blobs they point at belong to a ring that is
// being replaced, as in a fork child). Allocation-free.
void ResetStacks();

// Around a fork (fork(), _Fork()): waits for other threads' walks in flight
// and holds new ones back, so that the child never inherits the loader's
// lock from a walk (stacks.cc, WalkGate); then lets them go, in the parent
// and in the child.
void PauseWalksForFork();
void ResumeWalksAfterFork(bool child);

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_STACKS_H_
