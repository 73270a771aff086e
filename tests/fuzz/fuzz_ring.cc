// Fuzzes the collector's end of the shared ring: RingReader::Map() on a
// sealed memfd whose contents come from the input, then Drain() as for a live
// producer and again as for a dead one (which skips torn positions).
//
// The memfd always has the size of a small valid ring (64 slots, a 4 KiB
// arena: 12 KiB). The input is laid over it in a compact form, so that short
// inputs reach the slots and the arena:
//   byte 0                   control bits (below)
//   the next 256 bytes       the RingHeader (layout, write_pos, read_pos,
//                            counters, arena_used) without the rest of its page
//   the next 4096 bytes      the 64 slots
//   the next 4096 bytes      the arena
// Missing bytes are zero. Unless control bit 0 is set, the layout fields
// (magic .. arena_bytes) are then restored to the valid ones, so the fuzzer
// spends its time on the slots and blobs rather than on Map()'s layout check.
// Control bit 1 maps a memfd without seals, bit 2 claims the wrong size: both
// must be refused.
//
// Invariants: never a crash or hang; Map() closes the memfd whatever
// happens; Drain() consumes at most `max` events and every record it emits is
// within the wire format's limits.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "collector/ingest.h"
#include "collector/records.h"
#include "common/wire.h"

namespace closeaudit {
namespace {

constexpr uint32_t kSlots = 64;
constexpr uint32_t kArena = 4096;
constexpr size_t kSlotsOffset = wire::kRingHeaderBytes;
constexpr size_t kArenaOffset = kSlotsOffset + kSlots * sizeof(wire::Slot);
constexpr size_t kFileBytes = kArenaOffset + kArena;
constexpr size_t kHeaderInput = sizeof(wire::RingHeader);
constexpr size_t kLayoutBytes = offsetof(wire::RingHeader, pad0);

constexpr uint8_t kRawLayout = 1u << 0;
constexpr uint8_t kUnsealed = 1u << 1;
constexpr uint8_t kWrongSize = 1u << 2;

void Fail(const char* what) {
  std::fprintf(stderr, "fuzz_ring: %s\n", what);
  std::abort();
}

// One memfd of kFileBytes, made once per process and rewritten for every
// input; Map() gets a dup of it (and must close that).
int MakeMemfd(bool sealed) {
  int fd = memfd_create("fuzz_ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) Fail("memfd_create failed");
  if (ftruncate(fd, kFileBytes) != 0) Fail("ftruncate failed");
  if (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    Fail("F_ADD_SEALS failed");
  }
  return fd;
}

std::vector<uint8_t> Image(const uint8_t* data, size_t size, uint8_t control) {
  std::vector<uint8_t> image(kFileBytes, 0);
  auto copy = [&](size_t from, size_t to, size_t n) {
    if (from >= size) return;
    std::memcpy(image.data() + to, data + from, std::min(n, size - from));
  };
  copy(1, 0, kHeaderInput);
  copy(1 + kHeaderInput, kSlotsOffset, kSlots * sizeof(wire::Slot));
  copy(1 + kHeaderInput + kSlots * sizeof(wire::Slot), kArenaOffset, kArena);
  if (!(control & kRawLayout)) {
    wire::RingHeader h{};
    h.magic = wire::kRingMagic;
    h.version = wire::kWireVersion;
    h.slot_bytes = sizeof(wire::Slot);
    h.slot_count = kSlots;
    h.arena_offset = kArenaOffset;
    h.arena_bytes = kArena;
    std::memcpy(image.data(), &h, kLayoutBytes);
  }
  return image;
}

void CheckRecord(const Record& record) {
  std::visit(
      [](const auto& r) {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, StackRecord>) {
          if (r.frames.size() > wire::kMaxFrames) Fail("stack too deep");
          if (r.py_frames.size() > wire::kMaxPyFrames) {
            Fail("Python stack too deep");
          }
          if (r.ref == 0 || r.ref >= kArena) {
            Fail("stack ref outside the arena");
          }
        } else if constexpr (std::is_same_v<T, PyCodeRecord>) {
          if (r.name.size() > wire::kMaxPyNameBytes ||
              r.file.size() > wire::kMaxPathBytes ||
              r.table.size() > wire::kMaxPyTableBytes) {
            Fail("code record too long");
          }
          if (r.ref == 0 || r.ref >= kArena) Fail("code ref outside the arena");
        } else if constexpr (std::is_same_v<T, ModuleRecord>) {
          if (r.path.size() > wire::kMaxPathBytes) Fail("module path too long");
          if (r.build_id.size() > wire::kMaxBuildIdBytes) {
            Fail("build-id too long");
          }
          if (r.end < r.start) Fail("module ends before it starts");
        } else if constexpr (!std::is_same_v<T, EventRecord>) {
          Fail("Drain emitted a record kind it never makes");
        }
      },
      record);
}

}  // namespace
}  // namespace closeaudit

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace closeaudit;
  static const int sealed_fd = MakeMemfd(true);
  static const int unsealed_fd = MakeMemfd(false);
  uint8_t control = size > 0 ? data[0] : 0;
  int base_fd = (control & kUnsealed) ? unsealed_fd : sealed_fd;
  std::vector<uint8_t> image = Image(data, size, control);
  if (pwrite(base_fd, image.data(), image.size(), 0) !=
      static_cast<ssize_t>(image.size())) {
    Fail("pwrite failed");
  }
  int fd = dup(base_fd);
  if (fd < 0) Fail("dup failed");
  uint64_t claimed = kFileBytes + ((control & kWrongSize) ? 64 : 0);
  absl::StatusOr<std::unique_ptr<RingReader>> reader =
      RingReader::Map(fd, claimed);
  if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) {
    Fail("Map() left the memfd open");
  }
  if (!reader.ok()) return 0;
  if (control & (kUnsealed | kWrongSize)) Fail("Map() accepted a bad memfd");

  std::vector<Record> records;
  RecordSink sink = [&](Record r) {
    CheckRecord(r);
    records.push_back(std::move(r));
  };
  constexpr size_t kMax = 1000;
  if ((*reader)->Drain(1, /*producer_dead=*/false, kMax, sink) > kMax) {
    Fail("Drain() consumed more than max");
  }
  (*reader)->Heartbeat(1);
  if ((*reader)->Drain(1, /*producer_dead=*/true, kMax, sink) > kMax) {
    Fail("Drain() consumed more than max");
  }
  (*reader)->dropped_events();
  (*reader)->dropped_blobs();
  return 0;
}
