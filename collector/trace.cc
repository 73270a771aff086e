#include "collector/trace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/strings/str_format.h"

namespace closeaudit {
namespace {

enum class Kind : uint8_t {
  kRun = 1,
  kProcess = 2,
  kModule = 3,
  kStack = 4,
  kEvent = 5,
  kExit = 6,
  kEnd = 7,
  kKernel = 8,
  kNote = 9,
  kPyCode = 10,
  kFold = 11,
};

// Appends a payload (its kind byte, then the fields) to *out.
class Writer {
 public:
  Writer(Kind kind, std::string* out) : out_(out) {
    out_->push_back(static_cast<char>(kind));
  }
  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_->append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void PutString(std::string_view s) {
    Put<uint32_t>(static_cast<uint32_t>(s.size()));
    out_->append(s);
  }

 private:
  std::string* out_;
};

// Bounds-checked reading of a payload: any read past the end sets ok_ false
// and yields zeros, so decoders check ok() once at the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
  T Get() {
    T v{};
    if (in_.size() < sizeof(T)) {
      ok_ = false;
      in_ = {};
      return v;
    }
    std::memcpy(&v, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return v;
  }
  std::string GetString(uint32_t max) {
    uint32_t n = Get<uint32_t>();
    if (n > max || n > in_.size()) {
      ok_ = false;
      in_ = {};
      return {};
    }
    std::string s(in_.substr(0, n));
    in_.remove_prefix(n);
    return s;
  }
  bool ok() const { return ok_; }
  bool done() const { return in_.empty(); }
  size_t left() const { return in_.size(); }
  void Fail() {
    ok_ = false;
    in_ = {};
  }

 private:
  std::string_view in_;
  bool ok_ = true;
};

constexpr uint32_t kMaxArgs = 4096;
constexpr uint32_t kMaxString = 64 * 1024;
constexpr uint32_t kMaxRules = 1024;  // --app-path and --not-app, each
// The kind byte of a frame that holds other frames, compressed.
constexpr uint8_t kBatchKind = 0x80;
// Below this, compressing a flush's frames is not worth a block.
constexpr size_t kMinBatchBytes = 4096;
constexpr uint32_t kMaxEndpoint = 64;
constexpr uint32_t kMaxOwners = 4096;

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82f63b78u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

}  // namespace

uint32_t Crc32c(std::string_view data);

namespace {

// A frame is written in place: BeginFrame() leaves room for its header, the
// payload is appended, and EndFrame() fills in the header.
size_t BeginFrame(std::string* out) {
  size_t head = out->size();
  out->append(8, '\0');
  return head;
}

void EndFrame(size_t head, std::string* out) {
  std::string_view payload(out->data() + head + 8, out->size() - head - 8);
  uint32_t len = static_cast<uint32_t>(payload.size());
  uint32_t crc = Crc32c(payload);
  std::memcpy(out->data() + head, &len, 4);
  std::memcpy(out->data() + head + 4, &crc, 4);
}

void AppendFrame(std::string_view payload, std::string* out) {
  size_t head = BeginFrame(out);
  out->append(payload);
  EndFrame(head, out);
}

// A batch frame's payload: kBatchKind, the frames' size (u32), then the
// frames compressed with zstd, written to *scratch (grown as needed; kept
// between calls, and never zeroed, since a fresh buffer a flush cost page
// faults and a memset the size of the batch). Returns the payload's size, or
// 0 if compressing does not pay.
size_t Compress(std::string_view frames, std::unique_ptr<char[]>* scratch,
                size_t* scratch_size) {
  if (frames.size() > kMaxTraceFrame) return 0;
  // One context for the life of the process: making one per call cost more
  // than the compression itself.
  static ZSTD_CCtx* const context = ZSTD_createCCtx();
  if (context == nullptr) return 0;
  constexpr size_t kHead = 5;
  size_t need = kHead + ZSTD_compressBound(frames.size());
  if (*scratch_size < need) {
    scratch->reset(new char[need]);
    *scratch_size = need;
  }
  char* out = scratch->get();
  out[0] = static_cast<char>(kBatchKind);
  uint32_t raw = static_cast<uint32_t>(frames.size());
  std::memcpy(out + 1, &raw, 4);
  // Level -1 (zstd's first "fast" level): on a Node.js server's trace, in
  // batches of 256 KiB, it compressed as well as level 1 (5.6x) and 15-20%
  // faster; the next faster level lost a sixth of the ratio.
  size_t n = ZSTD_compressCCtx(context, out + kHead, need - kHead,
                               frames.data(), frames.size(), /*level=*/-1);
  if (ZSTD_isError(n) || kHead + n >= frames.size() ||
      kHead + n > kMaxTraceFrame) {
    return 0;
  }
  return kHead + n;
}

bool Decompress(std::string_view body, std::string* out, std::string* error) {
  uint32_t raw;
  if (body.size() < 4) {
    *error = "its header is cut short";
    return false;
  }
  std::memcpy(&raw, body.data(), 4);
  if (raw > kMaxTraceFrame) {
    *error = absl::StrFormat("it claims %d bytes", raw);
    return false;
  }
  out->resize(raw);
  size_t n = ZSTD_decompress(out->data(), raw, body.data() + 4, body.size() - 4);
  if (ZSTD_isError(n) || n != raw) {
    *error = ZSTD_isError(n) ? ZSTD_getErrorName(n) : "its size is wrong";
    return false;
  }
  return true;
}

}  // namespace

namespace {

uint32_t Crc32cTable(std::string_view data) {
  static const std::array<uint32_t, 256> table = MakeCrcTable();
  uint32_t c = ~0u;
  for (unsigned char b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return ~c;
}

// The same polynomial in hardware (SSE 4.2), eight bytes at a time: the
// checksum was the largest single cost of writing the trace.
__attribute__((target("sse4.2"))) uint32_t Crc32cHardware(std::string_view data) {
  uint64_t c = ~0u;
  size_t i = 0;
  for (; i + 8 <= data.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, data.data() + i, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; i < data.size(); ++i) {
    c32 = __builtin_ia32_crc32qi(c32, static_cast<unsigned char>(data[i]));
  }
  return ~c32;
}

}  // namespace

uint32_t Crc32c(std::string_view data) {
  static const bool hardware = __builtin_cpu_supports("sse4.2");
  return hardware ? Crc32cHardware(data) : Crc32cTable(data);
}

namespace {

// Appends the payload of a record to *out.
struct Encoder {
  std::string* out;

  void operator()(const RunRecord& r) const {
    Writer w(Kind::kRun, out);
    w.Put(r.grace_ns);
    w.Put(r.start_mono_ns);
    w.Put(r.start_real_ns);
    w.PutString(r.host);
    for (const std::vector<std::string>* list : {&r.app_paths, &r.not_app}) {
      w.Put<uint32_t>(static_cast<uint32_t>(list->size()));
      for (const std::string& s : *list) w.PutString(s);
    }
  }
  void operator()(const ProcessRecord& r) const {
    Writer w(Kind::kProcess, out);
    w.Put(r.stream);
    w.Put(r.pid);
    w.Put(r.ppid);
    w.Put(r.flags);
    w.Put(r.start_mono_ns);
    w.Put(r.start_real_ns);
    w.PutString(r.exe);
    w.Put<uint32_t>(static_cast<uint32_t>(r.argv.size()));
    for (const std::string& a : r.argv) w.PutString(a);
    w.Put(r.lib_version);
  }
  void operator()(const ModuleRecord& r) const {
    Writer w(Kind::kModule, out);
    w.Put(r.stream);
    w.Put(r.load_bias);
    w.Put(r.start);
    w.Put(r.end);
    w.PutString(r.path);
    w.PutString(r.build_id);
  }
  void operator()(const StackRecord& r) const {
    Writer w(Kind::kStack, out);
    w.Put(r.stream);
    w.Put(r.ref);
    w.Put<uint32_t>(static_cast<uint32_t>(r.frames.size()));
    for (uint64_t f : r.frames) w.Put(f);
    // Absent (not 0) when there are none: traces before 0.3.0 end here.
    if (!r.py_frames.empty()) {
      w.Put<uint32_t>(static_cast<uint32_t>(r.py_frames.size()));
      for (const wire::PyFrame& f : r.py_frames) w.Put(f);
    }
  }
  void operator()(const PyCodeRecord& r) const {
    Writer w(Kind::kPyCode, out);
    w.Put(r.stream);
    w.Put(r.ref);
    w.Put(r.minor);
    w.Put(r.firstlineno);
    w.PutString(r.name);
    w.PutString(r.file);
    w.PutString(r.table);
    // Older readers stop before it: a definition's language, when not Python.
    if (r.language != 0) w.Put(r.language);
  }
  void operator()(const EventRecord& r) const {
    Writer w(Kind::kEvent, out);
    w.Put(r.stream);
    w.Put(r.seq);
    w.Put(r.event);
  }
  void operator()(const ExitRecord& r) const {
    Writer w(Kind::kExit, out);
    w.Put(r.stream);
    w.Put(r.mono_ns);
    w.Put(r.exit_status);
    w.Put(r.dropped_events);
    w.Put(r.dropped_blobs);
    w.Put(r.torn_events);
  }
  void operator()(const KernelRecord& r) const {
    Writer w(Kind::kKernel, out);
    w.Put(r.mono_ns);
    w.Put(r.cookie);
    w.Put(r.inode);
    w.Put(r.state);
    w.Put(r.send_queue);
    w.PutString(r.local);
    w.PutString(r.peer);
    w.Put<uint32_t>(static_cast<uint32_t>(r.owners.size()));
    for (const auto& [pid, fd] : r.owners) {
      w.Put(pid);
      w.Put(fd);
    }
    w.Put(r.recv_queue);
  }
  void operator()(const NoteRecord& r) const {
    Writer w(Kind::kNote, out);
    w.PutString(r.text);
    w.Put<uint8_t>(r.unaudited ? 1 : 0);
  }
  void operator()(const EndRecord& r) const {
    Writer w(Kind::kEnd, out);
    w.Put(r.mono_ns);
  }
  void operator()(const FoldRecord& r) const {
    Writer w(Kind::kFold, out);
    w.Put(r.grace_ns);
    w.Put(r.latest_ns);
    w.Put(r.sockets);
    w.Put(r.events);
    w.Put<uint32_t>(static_cast<uint32_t>(r.streams.size()));
    for (uint32_t s : r.streams) w.Put(s);
    w.Put<uint32_t>(static_cast<uint32_t>(r.time_wait.size()));
    for (const FoldRecord::TimeWait& tw : r.time_wait) {
      w.Put(tw.stream);
      w.Put(tw.ref);
      w.Put(tw.count);
      w.Put(tw.first_ns);
      w.Put(tw.first_stream);
      w.Put<uint32_t>(static_cast<uint32_t>(tw.peers.size()));
      for (const auto& [host, n] : tw.peers) {
        w.PutString(host);
        w.Put(n);
      }
    }
    w.Put<uint32_t>(static_cast<uint32_t>(r.loads.size()));
    for (const FoldRecord::Load& l : r.loads) {
      w.Put(l.stream);
      w.Put(l.origin);
      w.Put(l.width);
      w.Put<uint32_t>(static_cast<uint32_t>(l.open.size()));
      for (size_t i = 0; i < l.open.size(); ++i) {
        w.Put(l.open[i]);
        w.Put(i < l.close_wait.size() ? l.close_wait[i] : 0);
      }
    }
    w.Put<uint32_t>(static_cast<uint32_t>(r.last_closes.size()));
    for (const FoldRecord::LastClose& c : r.last_closes) {
      w.Put(c.stream);
      w.Put(c.fd);
      w.Put(c.cookie);
      w.Put(c.ns);
      w.Put(c.ref);
      w.Put(c.tid);
      w.Put<uint8_t>(c.reopened ? 1 : 0);
    }
  }
};

}  // namespace

std::string EncodeRecord(const Record& record) {
  std::string out;
  std::visit(Encoder{&out}, record);
  return out;
}

absl::StatusOr<Record> DecodeRecord(std::string_view payload) {
  if (payload.empty()) return absl::DataLossError("empty record");
  Kind kind = static_cast<Kind>(payload[0]);
  Reader r(payload.substr(1));
  Record out;
  switch (kind) {
    case Kind::kRun: {
      RunRecord v;
      v.grace_ns = r.Get<uint64_t>();
      v.start_mono_ns = r.Get<uint64_t>();
      v.start_real_ns = r.Get<uint64_t>();
      if (!r.done()) v.host = r.GetString(kMaxString);  // older traces end here
      // And here, before the app rules.
      for (std::vector<std::string>* list : {&v.app_paths, &v.not_app}) {
        if (r.done() && list == &v.app_paths) break;
        uint32_t n = r.Get<uint32_t>();
        if (n > kMaxRules) return absl::DataLossError("too many app rules");
        for (uint32_t i = 0; i < n && r.ok(); ++i) {
          list->push_back(r.GetString(wire::kMaxPathBytes));
        }
      }
      out = v;
      break;
    }
    case Kind::kProcess: {
      ProcessRecord v;
      v.stream = r.Get<uint32_t>();
      v.pid = r.Get<uint32_t>();
      v.ppid = r.Get<uint32_t>();
      v.flags = r.Get<uint32_t>();
      v.start_mono_ns = r.Get<uint64_t>();
      v.start_real_ns = r.Get<uint64_t>();
      v.exe = r.GetString(wire::kMaxPathBytes);
      uint32_t n = r.Get<uint32_t>();
      if (n > kMaxArgs) return absl::DataLossError("too many arguments");
      for (uint32_t i = 0; i < n && r.ok(); ++i) {
        v.argv.push_back(r.GetString(kMaxString));
      }
      // Older traces end here.
      if (r.ok() && !r.done()) v.lib_version = r.Get<uint32_t>();
      out = std::move(v);
      break;
    }
    case Kind::kModule: {
      ModuleRecord v;
      v.stream = r.Get<uint32_t>();
      v.load_bias = r.Get<uint64_t>();
      v.start = r.Get<uint64_t>();
      v.end = r.Get<uint64_t>();
      v.path = r.GetString(wire::kMaxPathBytes);
      v.build_id = r.GetString(wire::kMaxBuildIdBytes);
      out = std::move(v);
      break;
    }
    case Kind::kStack: {
      StackRecord v;
      v.stream = r.Get<uint32_t>();
      v.ref = r.Get<uint32_t>();
      uint32_t n = r.Get<uint32_t>();
      if (n > wire::kMaxFrames) return absl::DataLossError("stack too deep");
      for (uint32_t i = 0; i < n; ++i) v.frames.push_back(r.Get<uint64_t>());
      if (r.ok() && !r.done()) {
        uint32_t py = r.Get<uint32_t>();
        if (py > wire::kMaxPyFrames) {
          return absl::DataLossError("Python stack too deep");
        }
        // A stack without Python frames ends before the count.
        if (r.ok() && py == 0) {
          return absl::DataLossError("a Python frame count of 0");
        }
        for (uint32_t i = 0; i < py && r.ok(); ++i) {
          v.py_frames.push_back(r.Get<wire::PyFrame>());
        }
      }
      out = std::move(v);
      break;
    }
    case Kind::kPyCode: {
      PyCodeRecord v;
      v.stream = r.Get<uint32_t>();
      v.ref = r.Get<uint32_t>();
      v.minor = r.Get<uint16_t>();
      v.firstlineno = r.Get<int32_t>();
      v.name = r.GetString(wire::kMaxPyNameBytes);
      v.file = r.GetString(wire::kMaxPathBytes);
      v.table = r.GetString(wire::kMaxPyTableBytes);
      if (r.ok() && !r.done()) {
        v.language = r.Get<uint16_t>();
        // Python's 0 is never written: a record has one encoding.
        if (r.ok() && v.language == 0) {
          return absl::DataLossError("a code language of 0");
        }
      }
      out = std::move(v);
      break;
    }
    case Kind::kEvent: {
      EventRecord v;
      v.stream = r.Get<uint32_t>();
      v.seq = r.Get<uint64_t>();
      v.event = r.Get<wire::Event>();
      out = v;
      break;
    }
    case Kind::kExit: {
      ExitRecord v;
      v.stream = r.Get<uint32_t>();
      v.mono_ns = r.Get<uint64_t>();
      v.exit_status = r.Get<int32_t>();
      v.dropped_events = r.Get<uint64_t>();
      v.dropped_blobs = r.Get<uint64_t>();
      v.torn_events = r.Get<uint64_t>();
      out = v;
      break;
    }
    case Kind::kKernel: {
      KernelRecord v;
      v.mono_ns = r.Get<uint64_t>();
      v.cookie = r.Get<uint64_t>();
      v.inode = r.Get<uint64_t>();
      v.state = r.Get<int32_t>();
      v.send_queue = r.Get<uint32_t>();
      v.local = r.GetString(kMaxEndpoint);
      v.peer = r.GetString(kMaxEndpoint);
      uint32_t n = r.Get<uint32_t>();
      if (n > kMaxOwners) return absl::DataLossError("too many socket owners");
      for (uint32_t i = 0; i < n && r.ok(); ++i) {
        uint32_t pid = r.Get<uint32_t>();
        int32_t fd = r.Get<int32_t>();
        v.owners.emplace_back(pid, fd);
      }
      // Older records end before the receive queue.
      if (r.ok() && !r.done()) v.recv_queue = r.Get<uint32_t>();
      out = std::move(v);
      break;
    }
    case Kind::kNote: {
      NoteRecord v;
      v.text = r.GetString(kMaxString);
      uint8_t unaudited = r.Get<uint8_t>();
      if (unaudited > 1) return absl::DataLossError("a flag is neither 0 nor 1");
      v.unaudited = unaudited == 1;
      out = std::move(v);
      break;
    }
    case Kind::kEnd: {
      EndRecord v;
      v.mono_ns = r.Get<uint64_t>();
      out = v;
      break;
    }
    case Kind::kFold: {
      FoldRecord v;
      v.grace_ns = r.Get<uint64_t>();
      v.latest_ns = r.Get<uint64_t>();
      v.sockets = r.Get<int64_t>();
      v.events = r.Get<int64_t>();
      // A list's length never claims more than the bytes left could hold.
      auto count = [&r](size_t each) {
        uint32_t n = r.Get<uint32_t>();
        if (static_cast<uint64_t>(n) * each > r.left()) r.Fail();
        return r.ok() ? n : 0;
      };
      for (uint32_t i = 0, n = count(4); i < n; ++i) {
        v.streams.push_back(r.Get<uint32_t>());
      }
      for (uint32_t i = 0, n = count(32); i < n && r.ok(); ++i) {
        FoldRecord::TimeWait& tw = v.time_wait.emplace_back();
        tw.stream = r.Get<uint32_t>();
        tw.ref = r.Get<uint32_t>();
        tw.count = r.Get<int64_t>();
        tw.first_ns = r.Get<uint64_t>();
        tw.first_stream = r.Get<uint32_t>();
        for (uint32_t j = 0, m = count(12); j < m && r.ok(); ++j) {
          std::string host = r.GetString(kMaxEndpoint);
          tw.peers.emplace_back(std::move(host), r.Get<int64_t>());
        }
      }
      for (uint32_t i = 0, n = count(24); i < n && r.ok(); ++i) {
        FoldRecord::Load& l = v.loads.emplace_back();
        l.stream = r.Get<uint32_t>();
        l.origin = r.Get<uint64_t>();
        l.width = r.Get<uint64_t>();
        for (uint32_t j = 0, m = count(16); j < m && r.ok(); ++j) {
          l.open.push_back(r.Get<uint64_t>());
          l.close_wait.push_back(r.Get<uint64_t>());
        }
        if (r.ok() && l.width == 0 && !l.open.empty()) {
          return absl::DataLossError("a timeline's spans of no width");
        }
      }
      for (uint32_t i = 0, n = count(33); i < n && r.ok(); ++i) {
        FoldRecord::LastClose& c = v.last_closes.emplace_back();
        c.stream = r.Get<uint32_t>();
        c.fd = r.Get<int32_t>();
        c.cookie = r.Get<uint64_t>();
        c.ns = r.Get<uint64_t>();
        c.ref = r.Get<uint32_t>();
        c.tid = r.Get<uint32_t>();
        uint8_t reopened = r.Get<uint8_t>();
        if (reopened > 1) return absl::DataLossError("a flag is neither 0 nor 1");
        c.reopened = reopened == 1;
      }
      out = std::move(v);
      break;
    }
    default:
      return absl::DataLossError(
          absl::StrFormat("unknown record kind %d", static_cast<int>(kind)));
  }
  if (!r.ok()) return absl::DataLossError("record is truncated");
  if (!r.done()) return absl::DataLossError("record has trailing bytes");
  return out;
}

TraceWriter::~TraceWriter() {
  if (fd_ >= 0) {
    Flush().IgnoreError();
    ::close(fd_);
  }
}

absl::Status TraceWriter::Open(const std::string& path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd_ < 0) return absl::ErrnoToStatus(errno, "create trace " + path);
  path_ = path;
  size_ = 0;
  buffer_.assign(kTraceMagic, sizeof(kTraceMagic));
  return Flush();
}

absl::Status TraceWriter::Reopen(const std::string& path) {
  if (absl::Status s = Flush(); !s.ok()) return s;
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "open trace " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = absl::ErrnoToStatus(errno, "stat trace " + path);
    ::close(fd);
    return s;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  path_ = path;
  size_ = static_cast<uint64_t>(st.st_size);
  return absl::OkStatus();
}

void TraceWriter::Append(const Record& record) {
  if (fd_ < 0) return;
  size_t head = BeginFrame(&pending_);
  std::visit(Encoder{&pending_}, record);
  FinishAppend(head);
}

void TraceWriter::Append(const EventRecord& record) {
  if (fd_ < 0) return;
  size_t head = BeginFrame(&pending_);
  Encoder{&pending_}(record);
  FinishAppend(head);
}

void TraceWriter::FinishAppend(size_t frame_head) {
  EndFrame(frame_head, &pending_);
  // A batch larger than a block can no longer be compressed (see Flush()):
  // hand it to the kernel now rather than let it grow. A failed write keeps
  // its bytes in buffer_; the next Flush() retries them and reports it.
  if (pending_.size() > kMaxTraceFrame) Flush().IgnoreError();
}

absl::Status TraceWriter::Flush() {
  if (!pending_.empty()) {
    // Frames are repetitive (the same stacks, fds and addresses): a batch
    // worth compressing usually shrinks several times for little CPU.
    size_t n = pending_.size() >= kMinBatchBytes
                   ? Compress(pending_, &scratch_, &scratch_size_)
                   : 0;
    if (n != 0) {
      AppendFrame(std::string_view(scratch_.get(), n), &buffer_);
    } else if (buffer_.empty()) {
      buffer_.swap(pending_);  // no copy
    } else {
      buffer_.append(pending_);
    }
    pending_.clear();
  }
  size_t done = 0;
  while (done < buffer_.size()) {
    ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      buffer_.erase(0, done);
      return absl::ErrnoToStatus(errno, "write trace " + path_);
    }
    done += static_cast<size_t>(n);
    size_ += static_cast<uint64_t>(n);
  }
  buffer_.clear();
  return absl::OkStatus();
}

namespace {

// How a run of frames ended: all read, the bytes ran out in the middle of
// a frame and more may come (the file is read a piece at a time), or
// damage (described in the warning).
enum class FramesEnd { kDone, kMore, kDamaged };

// Reads frames from bytes[*off...], moving *off past each one read; `base`
// is where bytes start in the file, for the warnings, and `where` names the
// container. Batches (see TraceWriter::Flush) are opened once, never nested.
FramesEnd ReadFrames(std::string_view bytes, size_t base, size_t* off,
                     const std::string& where, bool allow_batch, bool more,
                     size_t* count, const std::function<void(const Record&)>& fn,
                     std::string* warning) {
  while (*off < bytes.size()) {
    const size_t at = base + *off;
    if (bytes.size() - *off < 8) {
      if (more) return FramesEnd::kMore;
      *warning = absl::StrFormat(
          "trace is truncated after %d records (a partial frame header at "
          "byte %d%s); the report covers what came before",
          *count, at, where);
      return FramesEnd::kDamaged;
    }
    uint32_t len, crc;
    std::memcpy(&len, bytes.data() + *off, 4);
    std::memcpy(&crc, bytes.data() + *off + 4, 4);
    if (len <= kMaxTraceFrame && bytes.size() - *off - 8 < len && more) {
      return FramesEnd::kMore;
    }
    if (len > kMaxTraceFrame || bytes.size() - *off - 8 < len) {
      *warning = absl::StrFormat(
          "trace is truncated or damaged after %d records (frame at byte %d%s "
          "claims %d bytes); the report covers what came before",
          *count, at, where, len);
      return FramesEnd::kDamaged;
    }
    std::string_view payload = bytes.substr(*off + 8, len);
    if (Crc32c(payload) != crc) {
      *warning = absl::StrFormat(
          "trace is corrupt after %d records (checksum mismatch at byte %d%s); "
          "the report covers what came before",
          *count, at, where);
      return FramesEnd::kDamaged;
    }
    if (!payload.empty() && static_cast<uint8_t>(payload[0]) == kBatchKind) {
      std::string inner;
      std::string error;
      size_t inner_off = 0;
      if (!allow_batch) {
        error = "a compressed block inside another";
      } else if (!Decompress(payload.substr(1), &inner, &error)) {
        // error says why
      } else if (ReadFrames(inner, 0, &inner_off,
                            absl::StrFormat(" of the compressed block at %d", at),
                            false, false, count, fn,
                            warning) != FramesEnd::kDone) {
        return FramesEnd::kDamaged;
      }
      if (!error.empty()) {
        *warning = absl::StrFormat(
            "trace block at byte %d%s cannot be read (%s); the report covers "
            "what came before",
            at, where, error);
        return FramesEnd::kDamaged;
      }
      *off += 8 + len;
      continue;
    }
    absl::StatusOr<Record> record = DecodeRecord(payload);
    if (!record.ok()) {
      *warning = absl::StrFormat(
          "trace record %d at byte %d%s cannot be decoded (%s); the report "
          "covers what came before",
          *count, at, where, record.status().message());
      return FramesEnd::kDamaged;
    }
    fn(*record);
    *off += 8 + len;
    ++*count;
  }
  return FramesEnd::kDone;
}

constexpr char kBadMagic[] =
    "not a closeaudit trace (bad magic); nothing was read";

}  // namespace

void ReadTraceBytes(std::string_view bytes,
                    const std::function<void(const Record&)>& fn,
                    std::string* warning) {
  if (bytes.size() < sizeof(kTraceMagic) ||
      std::memcmp(bytes.data(), kTraceMagic, sizeof(kTraceMagic)) != 0) {
    *warning = kBadMagic;
    return;
  }
  size_t count = 0;
  size_t off = sizeof(kTraceMagic);
  ReadFrames(bytes, 0, &off, "", true, false, &count, fn, warning);
}

absl::Status ReadTrace(const std::string& path,
                       const std::function<void(const Record&)>& fn,
                       std::string* warning, uint64_t limit) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "open trace " + path);
  // A piece at a time: what is held is at most one frame and one piece,
  // whatever the trace's size.
  constexpr size_t kPiece = 1 << 20;
  std::string bytes;  // the file from `base` on, as far as read
  size_t base = 0;
  size_t off = 0;  // in bytes: the next frame
  size_t count = 0;
  bool eof = false;
  bool magic = false;
  for (;;) {
    if (!eof) {
      size_t had = bytes.size();
      size_t want = static_cast<size_t>(
          std::min<uint64_t>(kPiece, limit - std::min<uint64_t>(limit, base + had)));
      bytes.resize(had + want);
      ssize_t n = 0;
      while (want > 0 && (n = ::read(fd, bytes.data() + had, want)) < 0 &&
             errno == EINTR) {
      }
      if (n < 0) {
        int saved = errno;
        ::close(fd);
        return absl::ErrnoToStatus(saved, "read trace " + path);
      }
      bytes.resize(had + static_cast<size_t>(n));
      eof = n == 0;
    }
    if (!magic) {
      if (bytes.size() < sizeof(kTraceMagic) && !eof) continue;
      if (bytes.size() < sizeof(kTraceMagic) ||
          std::memcmp(bytes.data(), kTraceMagic, sizeof(kTraceMagic)) != 0) {
        *warning = kBadMagic;
        break;
      }
      magic = true;
      off = sizeof(kTraceMagic);
    }
    // Without `more`, the end of the bytes is the end of the trace.
    if (ReadFrames(bytes, base, &off, "", true, !eof, &count, fn, warning) ==
            FramesEnd::kDamaged ||
        eof) {
      break;
    }
    bytes.erase(0, off);
    base += off;
    off = 0;
  }
  ::close(fd);
  return absl::OkStatus();
}

}  // namespace closeaudit
