#include "collector/ingest.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "common/ring.h"

namespace closeaudit {
namespace {

bool HasStack(wire::EventType type) {
  switch (type) {
    case wire::EventType::kSocket:
    case wire::EventType::kAccept:
    case wire::EventType::kEofSeen:
    case wire::EventType::kShutdown:
    case wire::EventType::kClose:
    case wire::EventType::kCloseUntracked:
    case wire::EventType::kLinger:
    case wire::EventType::kFork:
    case wire::EventType::kExec:
    case wire::EventType::kHandler:
      return true;
    default:
      return false;
  }
}

}  // namespace

absl::StatusOr<size_t> HelloSize(std::string_view prefix) {
  if (prefix.size() < sizeof(wire::HelloMsg)) {
    return absl::InvalidArgumentError("hello is shorter than its header");
  }
  wire::HelloMsg msg;
  std::memcpy(&msg, prefix.data(), sizeof(msg));
  if (msg.magic != wire::kHelloMagic) {
    return absl::InvalidArgumentError(
        absl::StrFormat("not a closeaudit hello (magic 0x%08x)", msg.magic));
  }
  if (msg.version != wire::kWireVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "wire version %d, this collector speaks %d: use the collector and "
        "library of the same build",
        msg.version, wire::kWireVersion));
  }
  if (msg.hello_size != sizeof(wire::HelloMsg)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("hello header of %d bytes, expected %d",
                        msg.hello_size, sizeof(wire::HelloMsg)));
  }
  uint64_t total = uint64_t{sizeof(msg)} + msg.exe_len + msg.argv_len;
  if (msg.exe_len > wire::kMaxPathBytes || total > wire::kMaxHelloBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "hello claims %d bytes of path and %d of argv: too large",
        msg.exe_len, msg.argv_len));
  }
  return static_cast<size_t>(total);
}

absl::StatusOr<Hello> DecodeHello(std::string_view bytes) {
  absl::StatusOr<size_t> size = HelloSize(bytes);
  if (!size.ok()) return size.status();
  if (bytes.size() != *size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "hello is %d bytes, its header says %d", bytes.size(), *size));
  }
  Hello hello;
  std::memcpy(&hello.msg, bytes.data(), sizeof(hello.msg));
  bytes.remove_prefix(sizeof(hello.msg));
  hello.exe.assign(bytes.substr(0, hello.msg.exe_len));
  std::string_view args = bytes.substr(hello.msg.exe_len);
  while (!args.empty()) {
    size_t nul = args.find('\0');
    hello.argv.emplace_back(args.substr(0, nul));
    if (nul == std::string_view::npos) break;
    args.remove_prefix(nul + 1);
  }
  return hello;
}

absl::StatusOr<std::unique_ptr<RingReader>> RingReader::Map(
    int memfd, uint64_t claimed_bytes) {
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{memfd};
  struct stat st;
  if (fstat(memfd, &st) != 0) return absl::ErrnoToStatus(errno, "fstat ring");
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError("the ring is not a memory file");
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size != claimed_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ring is %d bytes but the hello says %d", size, claimed_bytes));
  }
  int seals = fcntl(memfd, F_GET_SEALS);
  // Without F_SEAL_SHRINK the producer could truncate the file under us and
  // turn our next read into SIGBUS.
  if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
    return absl::InvalidArgumentError("ring is not sealed against shrinking");
  }
  uint64_t max_bytes = wire::kRingHeaderBytes +
                       uint64_t{wire::kMaxRingSlots} * sizeof(wire::Slot) +
                       wire::kMaxArenaBytes;
  if (size < wire::kRingHeaderBytes || size > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ring size %d is out of range", size));
  }
  void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (mem == MAP_FAILED) return absl::ErrnoToStatus(errno, "mmap ring");
  std::unique_ptr<RingReader> reader(new RingReader());
  reader->base_ = static_cast<uint8_t*>(mem);
  reader->bytes_ = size;
  wire::RingHeader h;
  std::memcpy(&h, mem, sizeof(h));
  uint64_t slots_end =
      wire::kRingHeaderBytes + uint64_t{h.slot_count} * sizeof(wire::Slot);
  if (h.magic != wire::kRingMagic || h.version != wire::kWireVersion ||
      h.slot_bytes != sizeof(wire::Slot) || h.slot_count == 0 ||
      h.slot_count > wire::kMaxRingSlots ||
      (h.slot_count & (h.slot_count - 1)) != 0 || h.arena_offset != slots_end ||
      h.arena_bytes > wire::kMaxArenaBytes ||
      h.arena_offset + h.arena_bytes != size) {
    return absl::InvalidArgumentError("ring header describes a bad layout");
  }
  reader->header_ = static_cast<wire::RingHeader*>(mem);
  reader->slots_ = reinterpret_cast<wire::Slot*>(reader->base_ +
                                                 wire::kRingHeaderBytes);
  reader->arena_ = reader->base_ + h.arena_offset;
  reader->slot_count_ = h.slot_count;
  reader->shift_ = ring::Log2(h.slot_count);
  reader->arena_bytes_ = h.arena_bytes;
  return reader;
}

RingReader::~RingReader() {
  if (base_) munmap(base_, bytes_);
}

uint64_t RingReader::dropped_events() const {
  return ring::Atomic(header_->dropped_events).load(std::memory_order_relaxed);
}

uint64_t RingReader::dropped_blobs() const {
  return ring::Atomic(header_->dropped_blobs).load(std::memory_order_relaxed);
}

void RingReader::Heartbeat(uint64_t mono_ns) {
  ring::Atomic(header_->consumer_heartbeat_ns)
      .store(mono_ns, std::memory_order_relaxed);
}

bool RingReader::ReadBlob(uint32_t offset, wire::BlobKind kind,
                          std::string* out) {
  wire::BlobHeader h;
  if (offset < 8 || offset % 8 != 0 || offset + sizeof(h) > arena_bytes_) {
    ++bad_blobs_;
    return false;
  }
  std::memcpy(&h, arena_ + offset, sizeof(h));
  if (h.kind != kind || h.bytes < sizeof(h) ||
      uint64_t{offset} + h.bytes > arena_bytes_ || h.bytes > 64 * 1024) {
    ++bad_blobs_;
    return false;
  }
  out->assign(reinterpret_cast<const char*>(arena_ + offset), h.bytes);
  return true;
}

bool RingReader::SendPyCode(uint32_t stream, uint32_t ref, IngestSink& sink) {
  auto known = sent_codes_.find(ref);
  if (known != sent_codes_.end()) return known->second;
  std::string blob;
  bool ok = false;
  wire::PyCodeBlob c{};
  if (ReadBlob(ref, wire::BlobKind::kPyCode, &blob)) {
    if (blob.size() >= sizeof(c)) std::memcpy(&c, blob.data(), sizeof(c));
    ok = blob.size() >= sizeof(c) && c.name_len <= wire::kMaxPyNameBytes &&
         c.file_len <= wire::kMaxPathBytes &&
         c.table_len <= wire::kMaxPyTableBytes &&
         uint64_t{sizeof(c)} + c.name_len + c.file_len + c.table_len <=
             blob.size();
    if (!ok) ++bad_blobs_;
  }
  sent_codes_.emplace(ref, ok);
  if (!ok) return false;
  PyCodeRecord rec;
  rec.stream = stream;
  rec.ref = ref;
  rec.minor = c.minor;
  rec.language = c.minor == 0 ? c.language : 0;
  rec.firstlineno = c.firstlineno;
  rec.name = blob.substr(sizeof(c), c.name_len);
  rec.file = blob.substr(sizeof(c) + c.name_len, c.file_len);
  rec.table = blob.substr(sizeof(c) + c.name_len + c.file_len, c.table_len);
  sink.OnRecord(std::move(rec));
  return true;
}

size_t RingReader::Drain(uint32_t stream, bool producer_dead, size_t max,
                         const RecordSink& sink) {
  // Hands the events to the function as Records too.
  class Adapter final : public IngestSink {
   public:
    explicit Adapter(const RecordSink& fn) : fn_(fn) {}
    void OnEvent(const EventRecord& record) override { fn_(record); }
    void OnRecord(Record record) override { fn_(std::move(record)); }

   private:
    const RecordSink& fn_;
  } adapter(sink);
  return Drain(stream, producer_dead, max, adapter);
}

size_t RingReader::Drain(uint32_t stream, bool producer_dead, size_t max,
                         IngestSink& sink) {
  size_t consumed = 0;
  std::string blob;
  if (producer_dead) {
    // A dead producer claimed at most slot_count positions past read_pos that
    // could still hold events; a write_pos further ahead is garbage (or a
    // hostile value), and walking it one skip at a time could take forever.
    uint64_t read = ring::Atomic(header_->read_pos).load(std::memory_order_relaxed);
    uint64_t write = ring::Atomic(header_->write_pos).load(std::memory_order_relaxed);
    if (write > read && write - read > slot_count_) {
      torn_ += write - read - slot_count_;
      ring::SkipTo(header_, write - slot_count_);
    }
  }
  while (consumed < max) {
    wire::Event event;
    ring::PopResult r =
        ring::Pop(header_, slots_, slot_count_, shift_, &event);
    if (r == ring::PopResult::kEmpty) break;
    if (r == ring::PopResult::kTorn) {
      if (!producer_dead) break;
      ring::Skip(header_, slots_, slot_count_, shift_);
      ++torn_;
      ++consumed;  // skips spend the budget too
      continue;
    }
    uint64_t seq = ring::Atomic(header_->read_pos).load(std::memory_order_relaxed) - 1;
    ++consumed;
    if (event.type == wire::EventType::kModule) {
      if (!ReadBlob(event.blob, wire::BlobKind::kModule, &blob)) continue;
      wire::ModuleBlob m;
      if (blob.size() < sizeof(m)) {
        ++bad_blobs_;
        continue;
      }
      std::memcpy(&m, blob.data(), sizeof(m));
      if (uint64_t{sizeof(m)} + m.path_len + m.build_id_len > blob.size() ||
          m.path_len > wire::kMaxPathBytes ||
          m.build_id_len > wire::kMaxBuildIdBytes || m.end < m.start) {
        ++bad_blobs_;
        continue;
      }
      ModuleRecord rec;
      rec.stream = stream;
      rec.load_bias = m.load_bias;
      rec.start = m.start;
      rec.end = m.end;
      rec.path = blob.substr(sizeof(m), m.path_len);
      rec.build_id = blob.substr(sizeof(m) + m.path_len, m.build_id_len);
      sink.OnRecord(std::move(rec));
      continue;
    }
    if (HasStack(event.type) && event.blob != 0 &&
        !sent_stacks_.contains(event.blob)) {
      wire::StackBlob s{};
      if (ReadBlob(event.blob, wire::BlobKind::kStack, &blob)) {
        if (blob.size() >= sizeof(s)) std::memcpy(&s, blob.data(), sizeof(s));
        if (blob.size() >= sizeof(s) && s.frame_count <= wire::kMaxFrames &&
            s.py_frame_count <= wire::kMaxPyFrames &&
            sizeof(s) + uint64_t{s.frame_count} * 8 +
                    uint64_t{s.py_frame_count} * sizeof(wire::PyFrame) <=
                blob.size()) {
          StackRecord rec;
          rec.stream = stream;
          rec.ref = event.blob;
          rec.frames.resize(s.frame_count);
          if (s.frame_count > 0) {
            std::memcpy(rec.frames.data(), blob.data() + sizeof(s),
                        s.frame_count * 8);
          }
          const char* py = blob.data() + sizeof(s) + s.frame_count * 8;
          for (uint32_t i = 0; i < s.py_frame_count; ++i) {
            wire::PyFrame f;
            std::memcpy(&f, py + i * sizeof(f), sizeof(f));
            // A frame whose code object cannot be read is left out.
            if (SendPyCode(stream, f.code, sink)) rec.py_frames.push_back(f);
          }
          sent_stacks_.insert(event.blob);
          sink.OnRecord(std::move(rec));
        } else {
          ++bad_blobs_;
        }
      }
    }
    EventRecord rec;
    rec.stream = stream;
    rec.seq = seq;
    rec.event = event;
    sink.OnEvent(rec);
  }
  return consumed;
}

}  // namespace closeaudit
