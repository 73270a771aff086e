// The slot protocol of the shared event ring, used by both the shim
// (producers) and the collector (consumer). See common/wire.h for the layout
// and docs/wire-format.md for the prose.
//
// A slot's sequence word encodes the lap of the position it serves:
//   2 * lap      the slot is free for position lap * slot_count + index
//   2 * lap + 1  it holds the committed event of that position
// so a freshly created (all-zero) memfd is a valid empty ring and its pages are
// touched only as events arrive. Every operation here is lock-free and
// async-signal-safe: a signal handler that emits in the middle of another
// emit simply takes the next position.
#ifndef CLOSEAUDIT_COMMON_RING_H_
#define CLOSEAUDIT_COMMON_RING_H_

#include <atomic>
#include <cstdint>
#include <cstring>

#include "common/wire.h"

namespace closeaudit::ring {

template <typename T>
inline std::atomic_ref<T> Atomic(T& v) {
  return std::atomic_ref<T>(v);
}

inline uint64_t FreeMark(uint64_t pos, uint32_t shift) {
  return (pos >> shift) << 1;
}
inline uint64_t CommittedMark(uint64_t pos, uint32_t shift) {
  return FreeMark(pos, shift) | 1;
}

// The producer's side. Returns false, and counts a drop, when the ring is
// full: the caller never waits for the consumer.
inline bool Push(wire::RingHeader* header, wire::Slot* slots,
                 uint32_t slot_count, uint32_t shift, const void* event) {
  auto write_pos = Atomic(header->write_pos);
  uint64_t pos = write_pos.load(std::memory_order_relaxed);
  wire::Slot* slot;
  for (;;) {
    slot = &slots[pos & (slot_count - 1)];
    uint64_t seq = Atomic(slot->seq).load(std::memory_order_acquire);
    uint64_t want = FreeMark(pos, shift);
    if (seq == want) {
      if (write_pos.compare_exchange_weak(pos, pos + 1,
                                          std::memory_order_relaxed)) {
        break;
      }
    } else if (static_cast<int64_t>(seq - want) < 0) {
      Atomic(header->dropped_events).fetch_add(1, std::memory_order_relaxed);
      return false;
    } else {
      pos = write_pos.load(std::memory_order_relaxed);
    }
  }
  std::memcpy(&slot->event, event, sizeof(wire::Event));
  Atomic(slot->seq).store(CommittedMark(pos, shift), std::memory_order_release);
  // The next slot was last written by the consumer, a lap ago, and its line
  // is in no cache of ours: fetching it at the next call's first load was
  // nine tenths of Push's time in a server. Ask for it now instead.
  __builtin_prefetch(&slots[(pos + 1) & (slot_count - 1)], 1);
  return true;
}

enum class PopResult { kEvent, kEmpty, kTorn };

// The consumer's side (one consumer per ring). Copies the event at read_pos
// out of shared memory. kEmpty: nothing committed there yet. kTorn: the
// position was claimed but is not committed; only when the producer is known
// to be dead may the caller Skip() it.
inline PopResult Pop(wire::RingHeader* header, wire::Slot* slots,
                     uint32_t slot_count, uint32_t shift, wire::Event* out) {
  uint64_t pos = Atomic(header->read_pos).load(std::memory_order_relaxed);
  wire::Slot* slot = &slots[pos & (slot_count - 1)];
  uint64_t seq = Atomic(slot->seq).load(std::memory_order_acquire);
  if (seq != CommittedMark(pos, shift)) {
    uint64_t claimed = Atomic(header->write_pos).load(std::memory_order_acquire);
    return claimed > pos ? PopResult::kTorn : PopResult::kEmpty;
  }
  std::memcpy(out, &slot->event, sizeof(wire::Event));
  Atomic(slot->seq).store(FreeMark(pos + slot_count, shift),
                          std::memory_order_release);
  Atomic(header->read_pos).store(pos + 1, std::memory_order_release);
  return PopResult::kEvent;
}

// Gives up on a torn position (its producer died mid-write).
inline void Skip(wire::RingHeader* header, wire::Slot* slots,
                 uint32_t slot_count, uint32_t shift) {
  uint64_t pos = Atomic(header->read_pos).load(std::memory_order_relaxed);
  Atomic(slots[pos & (slot_count - 1)].seq)
      .store(FreeMark(pos + slot_count, shift), std::memory_order_release);
  Atomic(header->read_pos).store(pos + 1, std::memory_order_release);
}

// Moves the consumer to `pos` without reading what lies before it (the
// positions of a dead producer that cannot hold events).
inline void SkipTo(wire::RingHeader* header, uint64_t pos) {
  Atomic(header->read_pos).store(pos, std::memory_order_release);
}

inline uint32_t Log2(uint32_t power_of_two) {
  return static_cast<uint32_t>(__builtin_ctz(power_of_two));
}

}  // namespace closeaudit::ring

#endif  // CLOSEAUDIT_COMMON_RING_H_
