// The shared ring end to end: the shim's RingWriter as producer, the
// collector's RingReader as consumer, over a real sealed memfd.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "collector/ingest.h"
#include "common/ring.h"
#include "common/wire.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/ring_writer.h"

namespace closeaudit {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kStream = 7;

// A RingWriter with its mapping and memfd released at the end of the test
// (RingWriter itself never lets go: in the shim it lives as long as the
// process).
class Producer {
 public:
  Producer(uint32_t slots, uint32_t arena) {
    ok_ = writer_.Create(slots, arena);
  }
  ~Producer() {
    int fd = writer_.ReleaseFd();
    writer_.Abandon();
    if (fd >= 0) ::close(fd);
  }
  bool ok() const { return ok_; }
  shim::RingWriter& writer() { return writer_; }

  // A reader over the same memfd, as the collector gets it.
  std::unique_ptr<RingReader> Reader() {
    int fd = ::dup(writer_.fd());
    EXPECT_GE(fd, 0);
    absl::StatusOr<std::unique_ptr<RingReader>> r =
        RingReader::Map(fd, writer_.total_bytes());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(*r) : nullptr;
  }

  // The ring header, mapped separately, for poking at it like a broken
  // producer would.
  wire::RingHeader* Header() {
    if (!header_) {
      void* mem = mmap(nullptr, wire::kRingHeaderBytes, PROT_READ | PROT_WRITE,
                       MAP_SHARED, writer_.fd(), 0);
      EXPECT_NE(mem, MAP_FAILED);
      header_.reset(static_cast<wire::RingHeader*>(mem));
    }
    return header_.get();
  }

  // Writes a stack blob and returns its offset.
  uint32_t Stack(const std::vector<uint64_t>& frames) {
    void* mem = nullptr;
    uint32_t bytes = static_cast<uint32_t>(sizeof(wire::StackBlob) +
                                           frames.size() * sizeof(uint64_t));
    uint32_t off = writer_.AllocBlob(bytes, &mem);
    EXPECT_NE(off, 0u);
    if (off == 0) return 0;
    wire::StackBlob s{};
    s.header.kind = wire::BlobKind::kStack;
    s.header.bytes = bytes;
    s.frame_count = static_cast<uint32_t>(frames.size());
    std::memcpy(mem, &s, sizeof(s));
    std::memcpy(static_cast<char*>(mem) + sizeof(s), frames.data(),
                frames.size() * sizeof(uint64_t));
    return off;
  }

  // Reserves raw arena bytes for a hand-made (possibly malformed) blob.
  uint32_t Raw(uint32_t bytes, void** mem) {
    uint32_t off = writer_.AllocBlob(bytes, mem);
    EXPECT_NE(off, 0u);
    return off;
  }

 private:
  struct Unmap {
    void operator()(wire::RingHeader* h) const {
      munmap(h, wire::kRingHeaderBytes);
    }
  };
  shim::RingWriter writer_;
  bool ok_ = false;
  std::unique_ptr<wire::RingHeader, Unmap> header_;
};

wire::Event MakeEvent(wire::EventType type, int fd, uint64_t arg,
                      uint32_t blob = 0) {
  wire::Event e{};
  e.type = type;
  e.flags = wire::kFlagStream;
  e.fd = fd;
  e.tid = 1234;
  e.mono_ns = 1000 + arg;
  e.ident.cookie = 0xc00c1e + arg;
  e.ident.inode = 0x1000 + arg;
  e.blob = blob;
  e.arg = arg;
  return e;
}

std::vector<Record> DrainAll(RingReader& reader, bool producer_dead = false,
                             size_t max = SIZE_MAX, size_t* consumed = nullptr) {
  std::vector<Record> out;
  size_t n = reader.Drain(kStream, producer_dead, max,
                          [&](Record r) { out.push_back(std::move(r)); });
  if (consumed) *consumed = n;
  return out;
}

std::vector<EventRecord> Events(const std::vector<Record>& records) {
  std::vector<EventRecord> out;
  for (const Record& r : records) {
    if (const auto* e = std::get_if<EventRecord>(&r)) out.push_back(*e);
  }
  return out;
}

TEST(Ring, EventsComeOutInOrderWithSequenceNumbers) {
  Producer p(256, 4096);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);

  EXPECT_TRUE(DrainAll(*reader).empty());
  for (uint64_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kConnect,
                                          static_cast<int>(i), i)));
  }
  size_t consumed = 0;
  std::vector<Record> records = DrainAll(*reader, false, SIZE_MAX, &consumed);
  EXPECT_EQ(consumed, 100u);
  ASSERT_EQ(records.size(), 100u);
  for (uint64_t i = 0; i < 100; ++i) {
    const auto* e = std::get_if<EventRecord>(&records[i]);
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->stream, kStream);
    EXPECT_EQ(e->seq, i);
    wire::Event want = MakeEvent(wire::EventType::kConnect, static_cast<int>(i), i);
    EXPECT_EQ(std::memcmp(&e->event, &want, sizeof(want)), 0) << i;
  }
  EXPECT_TRUE(DrainAll(*reader).empty());
  EXPECT_EQ(reader->dropped_events(), 0u);
  EXPECT_EQ(reader->torn_events(), 0u);
}

TEST(Ring, DrainHonoursMax) {
  Producer p(64, 4096);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kConnect, 3, i)));
  }
  std::vector<EventRecord> first = Events(DrainAll(*reader, false, 4));
  ASSERT_EQ(first.size(), 4u);
  std::vector<EventRecord> rest = Events(DrainAll(*reader));
  ASSERT_EQ(rest.size(), 6u);
  EXPECT_EQ(rest.front().seq, 4u);
  EXPECT_EQ(rest.front().event.arg, 4u);
}

TEST(Ring, FullRingDropsAndCountsWithoutBlocking) {
  constexpr uint32_t kSlots = 64;
  Producer p(kSlots, 4096);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);

  for (uint64_t i = 0; i < kSlots; ++i) {
    ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kConnect, 3, i)));
  }
  // Nobody drains: every further push returns at once and is counted.
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(p.writer().Push(MakeEvent(wire::EventType::kConnect, 3, 999)));
  }
  EXPECT_EQ(reader->dropped_events(), 10u);

  std::vector<EventRecord> got = Events(DrainAll(*reader));
  ASSERT_EQ(got.size(), kSlots);
  for (uint64_t i = 0; i < kSlots; ++i) {
    EXPECT_EQ(got[i].seq, i);
    EXPECT_EQ(got[i].event.arg, i);  // the dropped ones never overwrote
  }
  // Room again; dropped events took no position.
  ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kConnect, 3, 1000)));
  got = Events(DrainAll(*reader));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].seq, kSlots);
  EXPECT_EQ(got[0].event.arg, 1000u);
  EXPECT_EQ(reader->dropped_events(), 10u);
}

TEST(Ring, WrapsAroundOverManyLaps) {
  constexpr uint32_t kSlots = 64;
  Producer p(kSlots, 4096);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);

  uint64_t next = 0;
  uint64_t expect = 0;
  // Batches that do not divide the ring size, so laps turn over mid-batch,
  // and full batches that fill it exactly.
  for (uint32_t batch : {kSlots, 50u, 37u, kSlots, 63u, 1u, kSlots, 64u, 40u,
                         kSlots, kSlots, 17u, kSlots, kSlots}) {
    for (uint32_t i = 0; i < batch; ++i, ++next) {
      ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kConnect, 3, next)))
          << "position " << next;
    }
    std::vector<EventRecord> got = Events(DrainAll(*reader));
    ASSERT_EQ(got.size(), batch);
    for (const EventRecord& e : got) {
      EXPECT_EQ(e.seq, expect);
      EXPECT_EQ(e.event.arg, expect);
      ++expect;
    }
  }
  EXPECT_GE(next, 10u * kSlots);
  EXPECT_EQ(reader->dropped_events(), 0u);
}

TEST(Ring, StackBlobPrecedesFirstEventThatUsesItAndIsSentOnce) {
  Producer p(64, 4096);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);

  uint32_t a = p.Stack({0x401000, 0x402000, 0x403000});
  uint32_t b = p.Stack({0x501000});
  ASSERT_NE(a, b);
  ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kEofSeen, 5, 1, a)));
  ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kClose, 5, 2, a)));
  ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kAccept, 6, 3, b)));
  ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kClose, 6, 4, a)));

  std::vector<Record> records = DrainAll(*reader);
  ASSERT_EQ(records.size(), 6u);
  const auto* sa = std::get_if<StackRecord>(&records[0]);
  ASSERT_NE(sa, nullptr);
  EXPECT_EQ(sa->stream, kStream);
  EXPECT_EQ(sa->ref, a);
  EXPECT_EQ(sa->frames, (std::vector<uint64_t>{0x401000, 0x402000, 0x403000}));
  ASSERT_TRUE(std::holds_alternative<EventRecord>(records[1]));
  EXPECT_EQ(std::get<EventRecord>(records[1]).event.arg, 1u);
  ASSERT_TRUE(std::holds_alternative<EventRecord>(records[2]));
  const auto* sb = std::get_if<StackRecord>(&records[3]);
  ASSERT_NE(sb, nullptr);
  EXPECT_EQ(sb->ref, b);
  EXPECT_EQ(sb->frames, std::vector<uint64_t>{0x501000});
  ASSERT_TRUE(std::holds_alternative<EventRecord>(records[4]));
  EXPECT_EQ(std::get<EventRecord>(records[4]).event.arg, 3u);
  ASSERT_TRUE(std::holds_alternative<EventRecord>(records[5]));

  // Still not repeated in a later drain.
  ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kClose, 7, 5, b)));
  records = DrainAll(*reader);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<EventRecord>(records[0]));
  EXPECT_EQ(reader->bad_blobs(), 0u);
}

TEST(Ring, ModuleBlobBecomesModuleRecord) {
  Producer p(64, 4096);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);
  const std::string path = "/usr/lib/libfoo.so";
  const std::string build_id = "\x01\x02\xfe\xff";
  void* mem = nullptr;
  uint32_t bytes =
      static_cast<uint32_t>(sizeof(wire::ModuleBlob) + path.size() + build_id.size());
  uint32_t off = p.Raw(bytes, &mem);
  ASSERT_NE(off, 0u);
  wire::ModuleBlob m{};
  m.header.kind = wire::BlobKind::kModule;
  m.header.bytes = bytes;
  m.load_bias = 0x7f0000000000;
  m.start = 0x7f0000001000;
  m.end = 0x7f0000009000;
  m.path_len = static_cast<uint16_t>(path.size());
  m.build_id_len = static_cast<uint16_t>(build_id.size());
  std::memcpy(mem, &m, sizeof(m));
  std::memcpy(static_cast<char*>(mem) + sizeof(m), path.data(), path.size());
  std::memcpy(static_cast<char*>(mem) + sizeof(m) + path.size(), build_id.data(),
              build_id.size());
  wire::Event e{};
  e.type = wire::EventType::kModule;
  e.blob = off;
  ASSERT_TRUE(p.writer().Push(e));

  std::vector<Record> records = DrainAll(*reader);
  ASSERT_EQ(records.size(), 1u);
  const auto* mod = std::get_if<ModuleRecord>(&records[0]);
  ASSERT_NE(mod, nullptr);
  EXPECT_EQ(mod->stream, kStream);
  EXPECT_EQ(mod->load_bias, m.load_bias);
  EXPECT_EQ(mod->start, m.start);
  EXPECT_EQ(mod->end, m.end);
  EXPECT_EQ(mod->path, path);
  EXPECT_EQ(mod->build_id, build_id);
  EXPECT_EQ(reader->bad_blobs(), 0u);
}

TEST(Ring, FullArenaDropsBlobsAndCountsThem) {
  constexpr uint32_t kArena = 1024;
  Producer p(64, kArena);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);
  void* mem = nullptr;
  // Offset 0 is reserved, so 8 bytes of the arena are never handed out.
  uint32_t first = p.writer().AllocBlob(512, &mem);
  EXPECT_EQ(first, 8u);
  uint32_t second = p.writer().AllocBlob(kArena - 8 - 512, &mem);
  EXPECT_EQ(second, 8u + 512u);
  EXPECT_EQ(reader->dropped_blobs(), 0u);
  mem = nullptr;
  EXPECT_EQ(p.writer().AllocBlob(8, &mem), 0u);
  EXPECT_EQ(mem, nullptr);
  EXPECT_EQ(p.writer().AllocBlob(1, &mem), 0u);
  EXPECT_EQ(reader->dropped_blobs(), 2u);
  // Sizes are rounded up so that every blob starts 8-byte aligned.
  Producer q(64, 4096);
  ASSERT_TRUE(q.ok());
  uint32_t a = q.writer().AllocBlob(13, &mem);
  uint32_t b = q.writer().AllocBlob(8, &mem);
  EXPECT_EQ(a % 8, 0u);
  EXPECT_EQ(b, a + 16);
}

TEST(Ring, TornSlotStallsUntilProducerIsDead) {
  Producer p(64, 4096);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);
  wire::RingHeader* h = p.Header();
  ASSERT_NE(h, nullptr);

  ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kConnect, 3, 0)));
  // A producer claims position 1 and dies before committing it.
  ring::Atomic(h->write_pos).fetch_add(1);
  ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kConnect, 3, 2)));

  std::vector<EventRecord> got = Events(DrainAll(*reader));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].seq, 0u);
  // While the producer may still be writing, the consumer waits.
  EXPECT_TRUE(DrainAll(*reader).empty());
  EXPECT_TRUE(DrainAll(*reader).empty());
  EXPECT_EQ(reader->torn_events(), 0u);

  got = Events(DrainAll(*reader, /*producer_dead=*/true));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].seq, 2u);
  EXPECT_EQ(got[0].event.arg, 2u);
  EXPECT_EQ(reader->torn_events(), 1u);

  // The skipped slot is usable again on the next lap.
  for (uint64_t i = 3; i < 3 + 64; ++i) {
    ASSERT_TRUE(p.writer().Push(MakeEvent(wire::EventType::kConnect, 3, i)));
  }
  got = Events(DrainAll(*reader));
  ASSERT_EQ(got.size(), 64u);
  EXPECT_EQ(got.front().seq, 3u);
  EXPECT_EQ(got.back().seq, 66u);
  EXPECT_EQ(reader->torn_events(), 1u);
}

TEST(Ring, EmptyRingWithDeadProducerCountsNothingTorn) {
  Producer p(64, 4096);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(DrainAll(*reader, true).empty());
  EXPECT_EQ(reader->torn_events(), 0u);
}

// One round of 4 producers against a concurrent consumer.
void ProducersAgainstConsumer() {
  constexpr int kProducers = 4;
  constexpr uint64_t kPerProducer = 50000;
  constexpr uint64_t kTotal = kProducers * kPerProducer;
  // Big enough that producers mostly race each other for positions rather
  // than wait for the consumer, small enough that they still fill it now and
  // then.
  Producer p(4096, 4096);
  ASSERT_TRUE(p.ok());
  auto reader = p.Reader();
  ASSERT_NE(reader, nullptr);

  std::atomic<bool> go{false};
  std::atomic<bool> give_up{false};
  std::vector<std::thread> producers;
  for (int t = 0; t < kProducers; ++t) {
    producers.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (uint64_t i = 0; i < kPerProducer; ++i) {
        wire::Event e = MakeEvent(wire::EventType::kConnect, t,
                                  (uint64_t(t) << 32) | i);
        // A full ring drops; this producer wants every event through.
        while (!p.writer().Push(e)) {
          if (give_up.load()) return;
          std::this_thread::yield();
        }
      }
    });
  }
  go.store(true);
  std::vector<uint64_t> next(kProducers, 0);
  std::set<uint64_t> seqs;
  uint64_t received = 0;
  bool in_order = true;
  bool bad_thread = false;
  auto last_progress = std::chrono::steady_clock::now();
  while (received < kTotal) {
    size_t n = reader->Drain(kStream, false, 1000, [&](Record r) {
      const auto* e = std::get_if<EventRecord>(&r);
      if (!e) return;
      uint64_t t = e->event.arg >> 32;
      uint64_t i = e->event.arg & 0xffffffffu;
      if (t >= static_cast<uint64_t>(kProducers)) {
        bad_thread = true;
        return;
      }
      // Each producer's events arrive in its own order, so "next expected
      // index" detects both losses and duplicates.
      if (i != next[t]) in_order = false;
      next[t] = i + 1;
      seqs.insert(e->seq);
      ++received;
    });
    if (n != 0) {
      last_progress = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_progress >
               std::chrono::seconds(10)) {
      ADD_FAILURE() << "no progress after " << received << " events";
      give_up.store(true);
      break;
    } else {
      std::this_thread::yield();
    }
  }
  for (auto& th : producers) th.join();
  EXPECT_FALSE(bad_thread);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(received, kTotal);
  for (int t = 0; t < kProducers; ++t) EXPECT_EQ(next[t], kPerProducer) << t;
  EXPECT_EQ(seqs.size(), kTotal);  // no seq twice
  if (!seqs.empty()) {
    EXPECT_EQ(*seqs.rbegin(), kTotal - 1);
  }
  EXPECT_TRUE(DrainAll(*reader).empty());
  EXPECT_EQ(reader->torn_events(), 0u);
}

TEST(Ring, ConcurrentProducersAndConsumerLoseAndDuplicateNothing) {
  for (int round = 0; round < 5 && !::testing::Test::HasFailure(); ++round) {
    SCOPED_TRACE(round);
    ProducersAgainstConsumer();
  }
}

// --- Map() against hand-made memfds ----------------------------------------

struct Layout {
  uint32_t magic = wire::kRingMagic;
  uint16_t version = wire::kWireVersion;
  uint32_t slot_count = 64;
  uint64_t arena_bytes = 4096;
  // Overrides of what the header claims (the file is sized from the fields
  // above).
  std::optional<uint64_t> claimed_arena_bytes;
  std::optional<uint64_t> claimed_arena_offset;
  bool seal = true;
};

// Builds a ring memfd by hand. Returns the fd (owned by the caller) and its
// size in *bytes.
int MakeRing(const Layout& l, uint64_t* bytes) {
  uint64_t arena_offset =
      wire::kRingHeaderBytes + uint64_t{l.slot_count} * sizeof(wire::Slot);
  uint64_t total = arena_offset + l.arena_bytes;
  int fd = static_cast<int>(
      syscall(SYS_memfd_create, "ring-test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  EXPECT_GE(fd, 0) << strerror(errno);
  if (fd < 0) return -1;
  EXPECT_EQ(ftruncate(fd, static_cast<off_t>(total)), 0);
  wire::RingHeader h{};
  h.magic = l.magic;
  h.version = l.version;
  h.slot_bytes = sizeof(wire::Slot);
  h.slot_count = l.slot_count;
  h.arena_offset = l.claimed_arena_offset.value_or(arena_offset);
  h.arena_bytes = l.claimed_arena_bytes.value_or(l.arena_bytes);
  h.arena_used = 8;
  EXPECT_EQ(pwrite(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
  if (l.seal) {
    EXPECT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  }
  *bytes = total;
  return fd;
}

absl::Status MapStatus(const Layout& l, int64_t claimed_delta = 0) {
  uint64_t bytes = 0;
  int fd = MakeRing(l, &bytes);
  if (fd < 0) return absl::InternalError("memfd_create");
  auto r = RingReader::Map(fd, bytes + claimed_delta);
  // Map owns the fd whatever happened.
  errno = 0;
  EXPECT_EQ(fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
  return r.status();
}

TEST(RingMap, AcceptsAHandMadeRing) {
  EXPECT_TRUE(MapStatus(Layout{}).ok());
}

TEST(RingMap, HandMadeRingIsUsable) {
  uint64_t bytes = 0;
  int fd = MakeRing(Layout{}, &bytes);
  ASSERT_GE(fd, 0);
  int mine = ::dup(fd);
  auto r = RingReader::Map(fd, bytes);
  ASSERT_TRUE(r.ok()) << r.status();
  // Commit one event by hand at position 0 (lap 0: committed mark 1).
  wire::Slot slot{};
  slot.seq = 1;
  slot.event = MakeEvent(wire::EventType::kConnect, 4, 9);
  ASSERT_EQ(pwrite(mine, &slot, sizeof(slot), wire::kRingHeaderBytes),
            static_cast<ssize_t>(sizeof(slot)));
  uint64_t write_pos = 1;
  ASSERT_EQ(pwrite(mine, &write_pos, sizeof(write_pos),
                   offsetof(wire::RingHeader, write_pos)),
            static_cast<ssize_t>(sizeof(write_pos)));
  std::vector<EventRecord> got = Events(DrainAll(**r));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].event.arg, 9u);
  ::close(mine);
}

TEST(RingMap, RejectsUnsealedMemfd) {
  Layout l;
  l.seal = false;
  absl::Status s = MapStatus(l);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("sealed"));
}

TEST(RingMap, RejectsSizeMismatch) {
  absl::Status bigger = MapStatus(Layout{}, 4096);
  EXPECT_FALSE(bigger.ok());
  EXPECT_THAT(bigger.message(), HasSubstr("hello says"));
  absl::Status smaller = MapStatus(Layout{}, -8);
  EXPECT_FALSE(smaller.ok());
}

TEST(RingMap, RejectsBadMagic) {
  Layout l;
  l.magic = 0x12345678;
  EXPECT_FALSE(MapStatus(l).ok());
}

TEST(RingMap, RejectsWrongVersion) {
  Layout l;
  l.version = wire::kWireVersion + 1;
  EXPECT_FALSE(MapStatus(l).ok());
}

TEST(RingMap, RejectsSlotCountNotAPowerOfTwo) {
  Layout l;
  l.slot_count = 48;  // the file and offsets are consistent with 48 slots
  EXPECT_FALSE(MapStatus(l).ok());
  l.slot_count = 0;
  EXPECT_FALSE(MapStatus(l).ok());
}

TEST(RingMap, RejectsArenaOverflowingTheFile) {
  Layout l;
  l.claimed_arena_bytes = l.arena_bytes + 4096;
  EXPECT_FALSE(MapStatus(l).ok());
  Layout huge;
  huge.claimed_arena_bytes = ~0ull - 4096;  // would wrap around if added
  EXPECT_FALSE(MapStatus(huge).ok());
  Layout shifted;
  shifted.claimed_arena_offset = wire::kRingHeaderBytes + 64 * 64 + 8;
  shifted.claimed_arena_bytes = 4096 - 8;
  EXPECT_FALSE(MapStatus(shifted).ok());
}

TEST(RingMap, RejectsSomethingThatIsNotAFile) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ::close(fds[1]);
  EXPECT_FALSE(RingReader::Map(fds[0], 4096 * 2).ok());
}

// --- Hostile blob references ------------------------------------------------

class RingBadBlob : public ::testing::Test {
 protected:
  static constexpr uint32_t kArena = 4096;
  void SetUp() override {
    producer_ = std::make_unique<Producer>(64, kArena);
    ASSERT_TRUE(producer_->ok());
    reader_ = producer_->Reader();
    ASSERT_NE(reader_, nullptr);
  }
  // Pushes an event and drains: the event must still come through, with no
  // stack record, and one bad blob counted.
  void ExpectBadStack(uint32_t blob) {
    uint64_t before = reader_->bad_blobs();
    ASSERT_TRUE(producer_->writer().Push(
        MakeEvent(wire::EventType::kClose, 5, 1, blob)));
    std::vector<Record> records = DrainAll(*reader_);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_TRUE(std::holds_alternative<EventRecord>(records[0]));
    EXPECT_EQ(reader_->bad_blobs(), before + 1);
  }
  wire::BlobHeader* RawBlob(uint32_t bytes, uint32_t* off) {
    void* mem = nullptr;
    *off = producer_->Raw(bytes, &mem);
    return static_cast<wire::BlobHeader*>(mem);
  }
  std::unique_ptr<Producer> producer_;
  std::unique_ptr<RingReader> reader_;
};

TEST_F(RingBadBlob, OffsetOutOfRange) {
  ExpectBadStack(kArena);
  ExpectBadStack(kArena - 4);  // header would straddle the end
  ExpectBadStack(0xfffffff8u);
}

TEST_F(RingBadBlob, MisalignedOffset) { ExpectBadStack(12); }

TEST_F(RingBadBlob, WrongKind) {
  uint32_t off = 0;
  wire::BlobHeader* h = RawBlob(64, &off);
  ASSERT_NE(h, nullptr);
  h->kind = wire::BlobKind::kModule;
  h->bytes = 64;
  ExpectBadStack(off);
}

TEST_F(RingBadBlob, BytesLargerThanArena) {
  uint32_t off = 0;
  wire::BlobHeader* h = RawBlob(64, &off);
  ASSERT_NE(h, nullptr);
  h->kind = wire::BlobKind::kStack;
  h->bytes = 2 * kArena;
  ExpectBadStack(off);
  h->bytes = 0xffffffffu;
  ExpectBadStack(off);
  h->bytes = 4;  // smaller than its own header
  ExpectBadStack(off);
}

TEST_F(RingBadBlob, StackBlobShorterThanItsHeader) {
  // A well-formed BlobHeader whose blob cannot hold a StackBlob header.
  uint32_t off = 0;
  wire::BlobHeader* h = RawBlob(sizeof(wire::StackBlob), &off);
  ASSERT_NE(h, nullptr);
  h->kind = wire::BlobKind::kStack;
  h->bytes = sizeof(wire::BlobHeader);
  ExpectBadStack(off);
}

TEST_F(RingBadBlob, ModuleBlobShorterThanItsHeader) {
  uint32_t off = 0;
  wire::BlobHeader* h = RawBlob(sizeof(wire::ModuleBlob), &off);
  ASSERT_NE(h, nullptr);
  h->kind = wire::BlobKind::kModule;
  h->bytes = sizeof(wire::BlobHeader) + 8;
  wire::Event e{};
  e.type = wire::EventType::kModule;
  e.blob = off;
  ASSERT_TRUE(producer_->writer().Push(e));
  EXPECT_TRUE(DrainAll(*reader_).empty());
  EXPECT_EQ(reader_->bad_blobs(), 1u);
}

TEST_F(RingBadBlob, TooManyFrames) {
  uint32_t off = 0;
  uint32_t bytes = sizeof(wire::StackBlob) + 8 * 8;
  auto* s = reinterpret_cast<wire::StackBlob*>(RawBlob(bytes, &off));
  ASSERT_NE(s, nullptr);
  s->header.kind = wire::BlobKind::kStack;
  s->header.bytes = bytes;
  s->frame_count = 9;  // one more than fits
  ExpectBadStack(off);
  s->frame_count = wire::kMaxFrames + 1;
  ExpectBadStack(off);
}

TEST_F(RingBadBlob, MalformedModuleIsDroppedAndCounted) {
  uint32_t off = 0;
  uint32_t bytes = sizeof(wire::ModuleBlob) + 8;
  auto* m = reinterpret_cast<wire::ModuleBlob*>(RawBlob(bytes, &off));
  ASSERT_NE(m, nullptr);
  m->header.kind = wire::BlobKind::kModule;
  m->header.bytes = bytes;
  m->path_len = 100;  // longer than the blob
  wire::Event e{};
  e.type = wire::EventType::kModule;
  e.blob = off;
  ASSERT_TRUE(producer_->writer().Push(e));
  e.blob = kArena * 4;  // out of range
  ASSERT_TRUE(producer_->writer().Push(e));
  ASSERT_TRUE(producer_->writer().Push(MakeEvent(wire::EventType::kConnect, 3, 1)));
  std::vector<Record> records = DrainAll(*reader_);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<EventRecord>(records[0]));
  EXPECT_EQ(reader_->bad_blobs(), 2u);
}

}  // namespace
}  // namespace closeaudit
