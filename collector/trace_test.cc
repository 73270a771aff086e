// Record encoding and the trace file, in the spirit of leveldb's log_test:
// every kind round-trips, and every way a file can be cut short or damaged
// yields the intact prefix plus a warning, never a crash.
#include "collector/trace.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace closeaudit {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// One record of every kind, with every field set to something non-zero and
// distinct, and strings holding awkward bytes.
std::vector<Record> Samples() {
  std::vector<Record> out;
  out.push_back(RunRecord{2'000'000'000, 111, 222, "host-\xff", {"/srv/app"}, {"vendor/", "mylib::"}});
  ProcessRecord p;
  p.stream = 3;
  p.pid = 4001;
  p.ppid = 4000;
  p.flags = wire::kHelloForked;
  p.start_mono_ns = 333;
  p.start_real_ns = 444;
  p.exe = std::string("/usr/bin/se\0rver\xff", 17);
  p.argv = {"server", "", std::string("--x=\0y", 6), "\"\n"};
  p.lib_version = 0x000109;
  out.push_back(p);
  ModuleRecord m;
  m.stream = 3;
  m.load_bias = 0x7f0000000000;
  m.start = 0x7f0000001000;
  m.end = 0x7f0000090000;
  m.path = "/usr/lib/libc.so.6";
  m.build_id = std::string("\x00\x01\xfe\xff", 4);
  out.push_back(m);
  StackRecord s;
  s.stream = 3;
  s.ref = 0x48;
  s.frames = {0x401000, 0x402000, 0xffffffffffffffff};
  out.push_back(s);
  StackRecord py = s;
  py.ref = 0x88;
  py.py_frames = {{0x100, 12 | wire::kPyFrameCallEnd}, {0x140, 0}};
  out.push_back(py);
  PyCodeRecord code;
  code.stream = 3;
  code.ref = 0x100;
  code.minor = 11;
  code.firstlineno = 7;
  code.name = "Handler.handle";
  code.file = "/srv/app/server.py";
  code.table = std::string("\x80\x00\xd8\x08", 4);
  out.push_back(code);
  PyCodeRecord js;  // a JavaScript definition the Node.js agent named
  js.stream = 3;
  js.ref = 0x180;
  js.minor = 0;
  js.language = static_cast<uint16_t>(wire::CodeLanguage::kJavaScript);
  js.firstlineno = 12;
  js.name = "Server.<anonymous>";
  js.file = "/srv/app/server.js";
  out.push_back(js);
  EventRecord e;
  e.stream = 3;
  e.seq = 0x123456789a;
  e.event.type = wire::EventType::kEofSeen;
  e.event.flags = wire::kFlagStream | wire::kFlagInet;
  e.event.state = 0x5a5a;
  e.event.fd = -7;
  e.event.tid = 99;
  e.event.err = 104;
  e.event.mono_ns = 555;
  e.event.ident = {0xc00c1e, 0x1d0de};
  e.event.blob = 0x48;
  e.event.aux = 0xaabbccdd;
  e.event.arg = 0x401234;
  out.push_back(e);
  out.push_back(ExitRecord{3, 666, 137, 5, 6, 7});
  out.push_back(EndRecord{777});
  KernelRecord k;
  k.mono_ns = 77;
  k.cookie = 0xabc;
  k.inode = 991;
  k.state = 8;
  k.send_queue = 3;
  k.local = "127.0.0.1:80";
  k.peer = "[::1]:4000";
  k.owners = {{4001, 5}, {4002, 6}};
  k.recv_queue = 1;
  out.push_back(k);
  out.push_back(NoteRecord{"a note \xff", true});
  FoldRecord f;
  f.grace_ns = 5'000'000'000;
  f.latest_ns = 9'000'000'000;
  f.sockets = 123456;
  f.events = 370000;
  f.streams = {1, 3};
  f.time_wait.push_back({3, 192, 1200, 7'000'000'000, 1, {{"10.0.0.2", 1000}, {"[::1]", 200}}});
  f.time_wait.push_back({1, 8, 5, 8'000'000'000, 3, {}});
  f.loads.push_back({3, 6'000'000'000, 10'000'000, {1, 2, 3}, {0, 1, 0}});
  f.loads.push_back({1, 6'000'000'000, 20'000'000, {}, {}});
  f.last_closes.push_back({3, 7, 0xc00c1e, 8'500'000'000, 192, 4001, true});
  f.last_closes.push_back({3, -1, 0, 0, 0, 0, false});
  out.push_back(f);
  return out;
}

// An empty stack and an empty process, which have lengths of zero inside.
std::vector<Record> EdgeSamples() {
  std::vector<Record> out;
  out.push_back(ProcessRecord{});
  out.push_back(StackRecord{});
  out.push_back(ModuleRecord{});
  return out;
}

void ExpectSame(const Record& got, const Record& want) {
  ASSERT_EQ(got.index(), want.index());
  struct Check {
    const Record& want;
    void operator()(const FoldRecord& g) const {
      EXPECT_TRUE(g == std::get<FoldRecord>(want)) << "a FoldRecord differs";
    }
    void operator()(const RunRecord& g) const {
      const auto& w = std::get<RunRecord>(want);
      EXPECT_EQ(g.grace_ns, w.grace_ns);
      EXPECT_EQ(g.start_mono_ns, w.start_mono_ns);
      EXPECT_EQ(g.start_real_ns, w.start_real_ns);
      EXPECT_EQ(g.host, w.host);
    }
    void operator()(const ProcessRecord& g) const {
      const auto& w = std::get<ProcessRecord>(want);
      EXPECT_EQ(g.stream, w.stream);
      EXPECT_EQ(g.pid, w.pid);
      EXPECT_EQ(g.ppid, w.ppid);
      EXPECT_EQ(g.flags, w.flags);
      EXPECT_EQ(g.start_mono_ns, w.start_mono_ns);
      EXPECT_EQ(g.start_real_ns, w.start_real_ns);
      EXPECT_EQ(g.exe, w.exe);
      EXPECT_EQ(g.argv, w.argv);
      EXPECT_EQ(g.lib_version, w.lib_version);
    }
    void operator()(const ModuleRecord& g) const {
      const auto& w = std::get<ModuleRecord>(want);
      EXPECT_EQ(g.stream, w.stream);
      EXPECT_EQ(g.load_bias, w.load_bias);
      EXPECT_EQ(g.start, w.start);
      EXPECT_EQ(g.end, w.end);
      EXPECT_EQ(g.path, w.path);
      EXPECT_EQ(g.build_id, w.build_id);
    }
    void operator()(const StackRecord& g) const {
      const auto& w = std::get<StackRecord>(want);
      EXPECT_EQ(g.stream, w.stream);
      EXPECT_EQ(g.ref, w.ref);
      EXPECT_EQ(g.frames, w.frames);
      ASSERT_EQ(g.py_frames.size(), w.py_frames.size());
      for (size_t i = 0; i < g.py_frames.size(); ++i) {
        EXPECT_EQ(g.py_frames[i].code, w.py_frames[i].code);
        EXPECT_EQ(g.py_frames[i].where, w.py_frames[i].where);
      }
    }
    void operator()(const PyCodeRecord& g) const {
      const auto& w = std::get<PyCodeRecord>(want);
      EXPECT_EQ(g.stream, w.stream);
      EXPECT_EQ(g.ref, w.ref);
      EXPECT_EQ(g.minor, w.minor);
      EXPECT_EQ(g.firstlineno, w.firstlineno);
      EXPECT_EQ(g.name, w.name);
      EXPECT_EQ(g.file, w.file);
      EXPECT_EQ(g.table, w.table);
      EXPECT_EQ(g.language, w.language);
    }
    void operator()(const EventRecord& g) const {
      const auto& w = std::get<EventRecord>(want);
      EXPECT_EQ(g.stream, w.stream);
      EXPECT_EQ(g.seq, w.seq);
      EXPECT_EQ(g.event.type, w.event.type);
      EXPECT_EQ(g.event.fd, w.event.fd);
      EXPECT_EQ(g.event.ident.cookie, w.event.ident.cookie);
      EXPECT_EQ(g.event.arg, w.event.arg);
      EXPECT_EQ(std::memcmp(&g.event, &w.event, sizeof(wire::Event)), 0);
    }
    void operator()(const ExitRecord& g) const {
      const auto& w = std::get<ExitRecord>(want);
      EXPECT_EQ(g.stream, w.stream);
      EXPECT_EQ(g.mono_ns, w.mono_ns);
      EXPECT_EQ(g.exit_status, w.exit_status);
      EXPECT_EQ(g.dropped_events, w.dropped_events);
      EXPECT_EQ(g.dropped_blobs, w.dropped_blobs);
      EXPECT_EQ(g.torn_events, w.torn_events);
    }
    void operator()(const EndRecord& g) const {
      EXPECT_EQ(g.mono_ns, std::get<EndRecord>(want).mono_ns);
    }
    void operator()(const NoteRecord& g) const {
      const auto& w = std::get<NoteRecord>(want);
      EXPECT_EQ(g.text, w.text);
      EXPECT_EQ(g.unaudited, w.unaudited);
    }
    void operator()(const KernelRecord& g) const {
      const auto& w = std::get<KernelRecord>(want);
      EXPECT_EQ(g.mono_ns, w.mono_ns);
      EXPECT_EQ(g.cookie, w.cookie);
      EXPECT_EQ(g.inode, w.inode);
      EXPECT_EQ(g.state, w.state);
      EXPECT_EQ(g.send_queue, w.send_queue);
      EXPECT_EQ(g.local, w.local);
      EXPECT_EQ(g.peer, w.peer);
      EXPECT_EQ(g.owners, w.owners);
      EXPECT_EQ(g.recv_queue, w.recv_queue);
    }
  };
  std::visit(Check{want}, got);
}

void ExpectSameList(const std::vector<Record>& got,
                    const std::vector<Record>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    ExpectSame(got[i], want[i]);
  }
}

// A trace file's bytes, framed as TraceWriter frames them.
std::string Frame(std::string_view payload) {
  uint32_t len = static_cast<uint32_t>(payload.size());
  uint32_t crc = Crc32c(payload);
  std::string out(reinterpret_cast<const char*>(&len), 4);
  out.append(reinterpret_cast<const char*>(&crc), 4);
  out.append(payload);
  return out;
}

std::string TraceBytes(const std::vector<Record>& records) {
  std::string out(kTraceMagic, sizeof(kTraceMagic));
  for (const Record& r : records) out += Frame(EncodeRecord(r));
  return out;
}

std::vector<Record> ReadBytes(std::string_view bytes, std::string* warning) {
  std::vector<Record> out;
  warning->clear();
  ReadTraceBytes(bytes, [&](const Record& r) { out.push_back(r); }, warning);
  return out;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "trace_test.XXXXXX";
    path_ = mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  bool ok() const { return !path_.empty(); }

 private:
  std::string path_;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Crc32c, KnownValues) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_NE(Crc32c("a"), Crc32c("b"));
}

TEST(TraceRecord, EveryKindRoundTrips) {
  std::vector<Record> samples = Samples();
  // Every alternative of Record is covered.
  std::vector<bool> seen(std::variant_size_v<Record>, false);
  for (const Record& r : samples) seen[r.index()] = true;
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_TRUE(seen[i]) << i;

  for (const Record& r : samples) {
    SCOPED_TRACE(r.index());
    std::string bytes = EncodeRecord(r);
    absl::StatusOr<Record> back = DecodeRecord(bytes);
    ASSERT_TRUE(back.ok()) << back.status();
    ExpectSame(*back, r);
  }
  for (const Record& r : EdgeSamples()) {
    absl::StatusOr<Record> back = DecodeRecord(EncodeRecord(r));
    ASSERT_TRUE(back.ok()) << back.status();
    ExpectSame(*back, r);
  }
}

TEST(TraceRecord, KindsAreDistinct) {
  std::vector<Record> samples = Samples();
  for (size_t i = 0; i < samples.size(); ++i) {
    for (size_t j = i + 1; j < samples.size(); ++j) {
      if (samples[i].index() == samples[j].index()) continue;
      EXPECT_NE(EncodeRecord(samples[i])[0], EncodeRecord(samples[j])[0]);
    }
  }
}

TEST(TraceRecord, RejectsEmpty) {
  EXPECT_FALSE(DecodeRecord("").ok());
}

TEST(TraceRecord, RejectsUnknownKind) {
  std::string bytes = EncodeRecord(EndRecord{1});
  for (int kind : {0, 12, 13, 0x7f, 0x80, 0xff}) {
    bytes[0] = static_cast<char>(kind);
    absl::StatusOr<Record> r = DecodeRecord(bytes);
    EXPECT_FALSE(r.ok()) << kind;
    EXPECT_THAT(r.status().message(), HasSubstr("unknown")) << kind;
  }
}

TEST(TraceRecord, RejectsEveryTruncation) {
  std::vector<Record> all = Samples();
  for (const Record& r : EdgeSamples()) all.push_back(r);
  for (const Record& r : all) {
    std::string bytes = EncodeRecord(r);
    // A run record without its host or without the app rules, and a
    // process record without the library's version, are how older traces
    // wrote them.
    size_t older = 0, old = 0;
    if (const auto* run = std::get_if<RunRecord>(&r)) {
      older = 1 + 3 * sizeof(uint64_t);
      old = older + 4 + run->host.size();
    } else if (std::holds_alternative<ProcessRecord>(r)) {
      older = bytes.size() - 4;
    } else if (const auto* st = std::get_if<StackRecord>(&r);
               st != nullptr && !st->py_frames.empty()) {
      older = 1 + 3 * 4 + 8 * st->frames.size();  // before Python frames
    } else if (const auto* code = std::get_if<PyCodeRecord>(&r);
               code != nullptr && code->language != 0) {
      older = bytes.size() - 2;  // a Python definition, before 0.4.0
    } else if (std::holds_alternative<KernelRecord>(r)) {
      older = bytes.size() - 4;  // before the receive queue
    }
    for (size_t n = 0; n < bytes.size(); ++n) {
      absl::StatusOr<Record> cut =
          DecodeRecord(std::string_view(bytes).substr(0, n));
      if (old != 0 && n == old) {
        ASSERT_TRUE(cut.ok()) << cut.status();
        const auto& run = std::get<RunRecord>(*cut);
        EXPECT_EQ(run.host, std::get<RunRecord>(r).host);
        EXPECT_TRUE(run.app_paths.empty() && run.not_app.empty());
        continue;
      }
      if (older != 0 && n == older) {
        ASSERT_TRUE(cut.ok()) << cut.status();
        if (const auto* run = std::get_if<RunRecord>(&*cut)) {
          EXPECT_EQ(run->host, "");
        } else if (const auto* st = std::get_if<StackRecord>(&*cut)) {
          EXPECT_TRUE(st->py_frames.empty());
        } else if (const auto* code = std::get_if<PyCodeRecord>(&*cut)) {
          EXPECT_EQ(code->language, 0);
        } else if (const auto* k = std::get_if<KernelRecord>(&*cut)) {
          EXPECT_EQ(k->recv_queue, KernelRecord::kNoRecvQueue);
        } else {
          EXPECT_EQ(std::get<ProcessRecord>(*cut).lib_version, 0u);
        }
        continue;
      }
      EXPECT_FALSE(cut.ok())
          << "kind " << r.index() << " cut to " << n << " of " << bytes.size();
    }
  }
}

TEST(TraceRecord, RejectsTrailingBytes) {
  for (const Record& r : Samples()) {
    std::string bytes = EncodeRecord(r) + '\0';
    absl::StatusOr<Record> d = DecodeRecord(bytes);
    EXPECT_FALSE(d.ok()) << r.index();
    // A stack's byte more is the start of a Python frame count, cut short;
    // a Python code record's, the start of a language.
    const auto* st = std::get_if<StackRecord>(&r);
    const auto* code = std::get_if<PyCodeRecord>(&r);
    bool optional_next = (st != nullptr && st->py_frames.empty()) ||
                         (code != nullptr && code->language == 0);
    EXPECT_THAT(d.status().message(), optional_next ? HasSubstr("truncated")
                                                    : HasSubstr("trailing"))
        << r.index();
  }
}

TEST(TraceRecord, RejectsHostileLengths) {
  // A string claiming 4 GiB.
  ProcessRecord p;
  p.exe = "abc";
  std::string bytes = EncodeRecord(p);
  size_t exe_len_at = 1 + 4 * 4 + 8 * 2;
  uint32_t huge = 0xffffffffu;
  std::memcpy(&bytes[exe_len_at], &huge, 4);
  EXPECT_FALSE(DecodeRecord(bytes).ok());

  // An exe over the path limit, and a huge argument count.
  ProcessRecord long_exe;
  long_exe.exe.assign(wire::kMaxPathBytes + 1, 'x');
  EXPECT_FALSE(DecodeRecord(EncodeRecord(long_exe)).ok());
  ProcessRecord argc;
  bytes = EncodeRecord(argc);
  std::memcpy(&bytes[bytes.size() - 8], &huge, 4);  // before lib_version
  EXPECT_FALSE(DecodeRecord(bytes).ok());

  // A stack deeper than the shim ever records, and a build-id too long.
  StackRecord deep;
  deep.frames.assign(wire::kMaxFrames + 1, 1);
  EXPECT_FALSE(DecodeRecord(EncodeRecord(deep)).ok());
  ModuleRecord id;
  id.build_id.assign(wire::kMaxBuildIdBytes + 1, 'b');
  EXPECT_FALSE(DecodeRecord(EncodeRecord(id)).ok());
}

TEST(Trace, WriterAndReaderRoundTrip) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::string path = dir.File("trace");
  std::vector<Record> samples = Samples();
  {
    TraceWriter w;
    EXPECT_FALSE(w.is_open());
    ASSERT_TRUE(w.Open(path).ok());
    EXPECT_TRUE(w.is_open());
    for (const Record& r : samples) w.Append(r);
    ASSERT_TRUE(w.Flush().ok());
    // Records appended after the last Flush reach the file on destruction.
    w.Append(samples.back());
  }
  std::vector<Record> want = samples;
  want.push_back(samples.back());

  std::vector<Record> got;
  std::string warning;  // ReadTrace only ever sets it
  ASSERT_TRUE(
      ReadTrace(path, [&](const Record& r) { got.push_back(r); }, &warning).ok());
  EXPECT_THAT(warning, IsEmpty());
  ExpectSameList(got, want);
  // The file is exactly the documented framing.
  EXPECT_EQ(Slurp(path), TraceBytes(want));
}

TEST(Trace, EmptyTraceHasNoRecordsAndNoWarning) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::string path = dir.File("trace");
  {
    TraceWriter w;
    ASSERT_TRUE(w.Open(path).ok());
  }
  std::vector<Record> got;
  std::string warning;
  ASSERT_TRUE(
      ReadTrace(path, [&](const Record& r) { got.push_back(r); }, &warning).ok());
  EXPECT_THAT(got, IsEmpty());
  EXPECT_THAT(warning, IsEmpty());
}

TEST(Trace, MissingFileIsAnError) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::string warning;
  EXPECT_FALSE(
      ReadTrace(dir.File("nope"), [](const Record&) {}, &warning).ok());
  TraceWriter w;
  EXPECT_FALSE(w.Open(dir.File("no/such/dir")).ok());
}

TEST(Trace, TruncatedLastFrameYieldsPrefixAndWarning) {
  std::vector<Record> samples = Samples();
  std::vector<Record> prefix(samples.begin(), samples.end() - 1);
  std::string full = TraceBytes(samples);
  size_t last = TraceBytes(prefix).size();  // where the last frame starts
  ASSERT_LT(last, full.size());

  std::string warning;
  // Cut exactly at the frame boundary: a clean, shorter trace.
  ExpectSameList(ReadBytes(std::string_view(full).substr(0, last), &warning),
                 prefix);
  EXPECT_THAT(warning, IsEmpty());
  for (size_t cut = last + 1; cut < full.size(); ++cut) {
    SCOPED_TRACE(cut);
    std::vector<Record> got =
        ReadBytes(std::string_view(full).substr(0, cut), &warning);
    ExpectSameList(got, prefix);
    EXPECT_THAT(warning, Not(IsEmpty()));
    EXPECT_THAT(warning, HasSubstr("truncated"));
  }
}

TEST(Trace, TruncatedFileOnDisk) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::string path = dir.File("trace");
  std::vector<Record> samples = Samples();
  {
    TraceWriter w;
    ASSERT_TRUE(w.Open(path).ok());
    for (const Record& r : samples) w.Append(r);
  }
  std::string full = Slurp(path);
  ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(full.size() - 3)), 0);
  std::vector<Record> got;
  std::string warning;
  ASSERT_TRUE(
      ReadTrace(path, [&](const Record& r) { got.push_back(r); }, &warning).ok());
  ExpectSameList(got, std::vector<Record>(samples.begin(), samples.end() - 1));
  EXPECT_THAT(warning, HasSubstr("truncated"));
}

TEST(Trace, FlippedPayloadByteStopsAtChecksum) {
  std::vector<Record> samples = Samples();
  constexpr size_t kDamaged = 3;
  std::vector<Record> before(samples.begin(), samples.begin() + kDamaged);
  std::string full = TraceBytes(samples);
  size_t frame = TraceBytes(before).size();
  size_t len = EncodeRecord(samples[kDamaged]).size();
  for (size_t i = 0; i < len; ++i) {
    for (uint8_t flip : {0x01, 0x80, 0xff}) {
      std::string bad = full;
      bad[frame + 8 + i] = static_cast<char>(bad[frame + 8 + i] ^ flip);
      std::string warning;
      std::vector<Record> got = ReadBytes(bad, &warning);
      SCOPED_TRACE(i);
      ExpectSameList(got, before);
      EXPECT_THAT(warning, HasSubstr("checksum"));
    }
  }
  // A damaged checksum field itself is caught the same way.
  std::string bad = full;
  bad[frame + 4] = static_cast<char>(bad[frame + 4] ^ 0x10);
  std::string warning;
  ExpectSameList(ReadBytes(bad, &warning), before);
  EXPECT_THAT(warning, HasSubstr("checksum"));
}

TEST(Trace, OversizedFrameLengthStops) {
  std::vector<Record> samples = Samples();
  std::string bytes = TraceBytes({samples[0]});
  uint32_t len = kMaxTraceFrame + 1;
  std::string frame(reinterpret_cast<const char*>(&len), 4);
  frame.append(4, '\0');
  bytes += frame;
  bytes.append(kMaxTraceFrame + 1, 'x');  // even if the bytes are there
  std::string warning;
  ExpectSameList(ReadBytes(bytes, &warning), {samples[0]});
  EXPECT_THAT(warning, Not(IsEmpty()));
}

TEST(Trace, UndecodablePayloadWithGoodChecksumStops) {
  std::vector<Record> samples = Samples();
  std::string bytes = TraceBytes({samples[0], samples[1]});
  bytes += Frame("\x63garbage");
  bytes += Frame(EncodeRecord(samples[2]));  // never reached
  std::string warning;
  ExpectSameList(ReadBytes(bytes, &warning), {samples[0], samples[1]});
  EXPECT_THAT(warning, HasSubstr("cannot be decoded"));
}

TEST(Trace, BadMagicGivesWarningAndNoRecords) {
  std::string bytes = TraceBytes(Samples());
  for (size_t i = 0; i < sizeof(kTraceMagic); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    std::string warning;
    EXPECT_THAT(ReadBytes(bad, &warning), IsEmpty()) << i;
    EXPECT_THAT(warning, HasSubstr("magic")) << i;
  }
  for (size_t n = 0; n < sizeof(kTraceMagic); ++n) {
    std::string warning;
    EXPECT_THAT(ReadBytes(std::string_view(bytes).substr(0, n), &warning),
                IsEmpty());
    EXPECT_THAT(warning, Not(IsEmpty())) << n;
  }
}

}  // namespace
}  // namespace closeaudit

namespace closeaudit {
namespace {

// Enough events in one flush to be written as a compressed block.
std::vector<Record> ManyEvents(int n) {
  std::vector<Record> out;
  for (int i = 0; i < n; ++i) {
    EventRecord e;
    e.stream = 1;
    e.seq = static_cast<uint64_t>(i);
    e.event.type = wire::EventType::kClose;
    e.event.fd = 3 + i % 7;
    e.event.mono_ns = 1000 + static_cast<uint64_t>(i);
    e.event.ident.cookie = 0x1000 + static_cast<uint64_t>(i);
    out.push_back(e);
  }
  return out;
}

std::string WriteTrace(const std::string& path, const std::vector<Record>& rs) {
  TraceWriter w;
  EXPECT_TRUE(w.Open(path).ok());
  for (const Record& r : rs) w.Append(r);
  EXPECT_TRUE(w.Flush().ok());
  return Slurp(path);
}

TEST(TraceBlock, LargeFlushIsCompressedAndReadsBack) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::vector<Record> events = ManyEvents(2000);
  std::string bytes = WriteTrace(dir.File("trace"), events);
  // Smaller than the same records framed one by one: it was compressed.
  EXPECT_LT(bytes.size() * 3, TraceBytes(events).size());
  std::string warning;
  ExpectSameList(ReadBytes(bytes, &warning), events);
  EXPECT_THAT(warning, IsEmpty());
}

TEST(Trace, EventsAppendedDirectlyAreFramedLikeRecords) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::string path = dir.File("trace");
  std::vector<Record> events = ManyEvents(20);  // too few to compress
  {
    TraceWriter w;
    ASSERT_TRUE(w.Open(path).ok());
    for (const Record& r : events) w.Append(std::get<EventRecord>(r));
  }
  EXPECT_EQ(Slurp(path), TraceBytes(events));
}

TEST(TraceBlock, BatchLargerThanABlockGoesOutPlainWithoutWaitingForFlush) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::string path = dir.File("trace");
  std::vector<Record> events = ManyEvents(30000);
  ASSERT_GT(TraceBytes(events).size(), 2 * kMaxTraceFrame);
  {
    TraceWriter w;
    ASSERT_TRUE(w.Open(path).ok());
    for (const Record& r : events) w.Append(r);
    // Each time the batch outgrew a block, it went out as plain frames.
    std::string written = Slurp(path);
    EXPECT_GT(written.size(), kMaxTraceFrame);
    EXPECT_EQ(written, TraceBytes(events).substr(0, written.size()));
  }
  std::string warning;
  ExpectSameList(ReadBytes(Slurp(path), &warning), events);
  EXPECT_THAT(warning, IsEmpty());
}

TEST(TraceBlock, DamagedBlockStopsAtItWithAWarning) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::vector<Record> first = Samples();
  std::string path = dir.File("trace");
  std::string bytes;
  {
    TraceWriter w;
    ASSERT_TRUE(w.Open(path).ok());
    for (const Record& r : first) w.Append(r);
    ASSERT_TRUE(w.Flush().ok());  // small: plain frames
    for (const Record& r : ManyEvents(2000)) w.Append(r);
    ASSERT_TRUE(w.Flush().ok());  // large: one compressed block
  }
  bytes = Slurp(path);
  size_t block = TraceBytes(first).size();
  ASSERT_LT(block + 64, bytes.size());
  std::string warning;
  // A flipped byte inside the block fails its checksum.
  std::string bad = bytes;
  bad[block + 40] = static_cast<char>(bad[block + 40] ^ 0x04);
  ExpectSameList(ReadBytes(bad, &warning), first);
  EXPECT_THAT(warning, HasSubstr("checksum"));
  // Cut anywhere inside the block: the records before it, and a warning.
  for (size_t cut : {block + 3, block + 9, bytes.size() - 1}) {
    ExpectSameList(ReadBytes(std::string_view(bytes).substr(0, cut), &warning),
                   first);
    EXPECT_THAT(warning, HasSubstr("truncated"));
  }
}

TEST(TraceBlock, GarbageInsideAValidChecksumIsRejected) {
  std::string payload(1, static_cast<char>(0x80));
  uint32_t raw = 4000;
  payload.append(reinterpret_cast<const char*>(&raw), 4);
  payload.append("this is not zstd data at all");
  std::string bytes = TraceBytes({Samples()[0]}) + Frame(payload);
  std::string warning;
  ExpectSameList(ReadBytes(bytes, &warning), {Samples()[0]});
  EXPECT_THAT(warning, HasSubstr("cannot be read"));
  // A block may not claim more than a frame can hold.
  raw = kMaxTraceFrame + 1;
  std::string huge(1, static_cast<char>(0x80));
  huge.append(reinterpret_cast<const char*>(&raw), 4);
  bytes = TraceBytes({Samples()[0]}) + Frame(huge);
  ExpectSameList(ReadBytes(bytes, &warning), {Samples()[0]});
  EXPECT_THAT(warning, HasSubstr("cannot be read"));
}

// A trace is read from disk a piece at a time: one several pieces long,
// plain frames and compressed blocks mixed, reads as the same bytes do from
// memory, and so does every kind of damage past the first piece, with the
// same warning, naming the same byte.
TEST(Trace, ALargeFileReadsAsItsBytesDo) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::string path = dir.File("trace");
  std::vector<Record> events = ManyEvents(80000);
  {
    TraceWriter w;
    ASSERT_TRUE(w.Open(path).ok());
    for (size_t i = 0; i < events.size(); ++i) {
      w.Append(events[i]);
      // Small flushes go out plain, large ones as blocks.
      if (i % 20000 < 15000 ? i % 40 == 39 : i % 2500 == 2499) {
        ASSERT_TRUE(w.Flush().ok());
      }
    }
  }
  const std::string full = Slurp(path);
  ASSERT_GT(full.size(), 3u << 20);
  auto from_disk = [&](const std::string& bytes, std::string* warning) {
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << bytes;
    }
    std::vector<Record> got;
    warning->clear();
    EXPECT_TRUE(
        ReadTrace(path, [&](const Record& r) { got.push_back(r); }, warning).ok());
    return got;
  };
  std::string warning;
  ExpectSameList(from_disk(full, &warning), events);
  EXPECT_THAT(warning, IsEmpty());

  const size_t cuts[] = {(1u << 20) - 3, (1u << 20) + 5, full.size() / 2,
                         full.size() - 1};
  for (size_t at : cuts) {
    SCOPED_TRACE(at);
    std::string want_warning, got_warning;
    std::string flipped = full;
    flipped[at] ^= 0x40;
    std::vector<Record> want = ReadBytes(flipped, &want_warning);
    EXPECT_EQ(from_disk(flipped, &got_warning).size(), want.size());
    EXPECT_EQ(got_warning, want_warning);
    EXPECT_THAT(got_warning, Not(IsEmpty()));
    std::string cut = full.substr(0, at);
    want = ReadBytes(cut, &want_warning);
    EXPECT_EQ(from_disk(cut, &got_warning).size(), want.size());
    EXPECT_EQ(got_warning, want_warning);
    EXPECT_THAT(got_warning, HasSubstr("truncated"));
  }
}

// A frame that ends exactly where a piece of the file does is followed by
// the rest.
TEST(Trace, AFrameEndingWhereAPieceEndsIsFollowedByTheRest) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::vector<Record> events = ManyEvents(20000);
  const size_t event_frame = Frame(EncodeRecord(events[0])).size();
  const size_t empty_note = Frame(EncodeRecord(NoteRecord{})).size();
  constexpr size_t kPiece = 1 << 20;  // ReadTrace's
  const size_t before = 13000;
  std::vector<Record> records;
  records.push_back(NoteRecord{std::string(
      kPiece - sizeof(kTraceMagic) - before * event_frame - empty_note, 'x')});
  records.insert(records.end(), events.begin(), events.end());
  std::string bytes = TraceBytes(records);
  ASSERT_EQ(TraceBytes(std::vector<Record>(records.begin(),
                                           records.begin() + 1 + before))
                .size(),
            kPiece);
  std::string path = dir.File("trace");
  {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
  }
  std::vector<Record> got;
  std::string warning;
  ASSERT_TRUE(
      ReadTrace(path, [&](const Record& r) { got.push_back(r); }, &warning).ok());
  EXPECT_THAT(warning, IsEmpty());
  ExpectSameList(got, records);
}

}  // namespace
}  // namespace closeaudit
