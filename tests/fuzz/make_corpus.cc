// Writes the fuzz targets' seed corpora: small valid inputs of each kind, so
// that fuzzing starts from the shapes real peers send rather than from
// nothing.
//
//   make_corpus OUTDIR [TRACE...]
//
// writes OUTDIR/fuzz_hello, fuzz_trace, fuzz_ring and fuzz_diag. Each TRACE
// (a trace.catrace from `closeaudit run --out DIR`) is copied into the trace
// corpus as real_N.catrace, cut at a frame boundary below 16 KiB. The
// committed corpus under tests/fuzz/corpus/ was made with
//
//   build-fuzz/tests/fuzz/make_corpus tests/fuzz/corpus A.catrace B.catrace
//
// where A and B are the traces of `closeaudit run --out DIR --` the
// end-to-end programs leak_server (two clients connecting and closing) and
// bad_close (mode double). To regenerate without new runs, pass copies of
// the committed real_0.catrace and real_1.catrace instead. Everything else is
// generated here, deterministically.
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "collector/kernel.h"
#include "collector/records.h"
#include "collector/trace.h"
#include "common/ring.h"
#include "common/version.h"
#include "common/wire.h"

namespace closeaudit {
namespace {

std::string out_dir;

void Die(const std::string& what) {
  std::fprintf(stderr, "make_corpus: %s\n", what.c_str());
  std::exit(1);
}

void MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) Die("mkdir " + path);
}

void Write(const std::string& target, const std::string& name,
           std::string_view bytes) {
  MakeDir(out_dir + "/" + target);
  std::string path = out_dir + "/" + target + "/" + name;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) Die("write " + path);
}

template <typename T>
void Append(std::string* out, const T& v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

// --- fuzz_hello -------------------------------------------------------------

std::string Hello(std::string_view exe, std::string_view argv_bytes,
                  uint32_t flags) {
  wire::HelloMsg m{};
  m.magic = wire::kHelloMagic;
  m.version = wire::kWireVersion;
  m.hello_size = sizeof(wire::HelloMsg);
  m.pid = 4242;
  m.ppid = 1;
  m.flags = flags;
  m.exe_len = static_cast<uint32_t>(exe.size());
  m.argv_len = static_cast<uint32_t>(argv_bytes.size());
  m.lib_version = kVersionNumber;
  m.start_mono_ns = 123456789;
  m.start_real_ns = 1700000000000000000;
  m.ring_bytes = 4096 + 4096 * 64 + (1u << 20);
  std::string out;
  Append(&out, m);
  out.append(exe);
  out.append(argv_bytes);
  return out;
}

void HelloCorpus() {
  using namespace std::string_view_literals;
  Write("fuzz_hello", "server",
        Hello("/usr/sbin/server", "server\0--port\08080\0"sv, 0));
  Write("fuzz_hello", "forked",
        Hello("/usr/bin/python3", "python3\0-m\0http.server\0"sv,
              wire::kHelloForked));
  Write("fuzz_hello", "after_exec_empty_arg",
        Hello("/bin/sh", "sh\0-c\0\0"sv,
              wire::kHelloAfterExec | wire::kHelloReconnect));
  Write("fuzz_hello", "no_argv", Hello("/opt/a.out", "", 0));
  Write("fuzz_hello", "no_exe_unterminated", Hello("", "a.out\0-x"sv, 0));
}

// --- fuzz_trace -------------------------------------------------------------

std::vector<Record> SampleRecords() {
  std::vector<Record> records;
  records.push_back(RunRecord{5'000'000'000, 1000, 1700000000000000000, "", {}, {}});
  ProcessRecord p;
  p.stream = 1;
  p.pid = 4242;
  p.ppid = 1;
  p.flags = wire::kHelloForked;
  p.start_mono_ns = 1000;
  p.start_real_ns = 1700000000000000000;
  p.exe = "/usr/sbin/server";
  p.argv = {"server", "--port", "8080"};
  p.lib_version = kVersionNumber;
  records.push_back(p);
  ModuleRecord m;
  m.stream = 1;
  m.load_bias = 0x555555554000;
  m.start = 0x555555554000;
  m.end = 0x555555559000;
  m.path = "/usr/sbin/server";
  m.build_id = std::string("\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23", 10);
  records.push_back(m);
  records.push_back(
      StackRecord{1, 8, {0x555555555123, 0x555555555456, 0x7ffff7c29d8f}, {}});
  // A CPython process's: a code object, and a stack with its Python frames.
  PyCodeRecord code;
  code.stream = 1;
  code.ref = 0x40;
  code.minor = 11;
  code.firstlineno = 20;
  code.name = "Handler.handle";
  code.file = "/srv/app/server.py";
  code.table = std::string("\x80\x00\xd8\x08\x0c\x88\x34", 7);
  records.push_back(code);
  records.push_back(StackRecord{1, 0x80, {0x555555555123, 0x7ffff7c29d8f},
                                {{0x40, 12 | wire::kPyFrameCallEnd}}});
  wire::Event e{};
  e.type = wire::EventType::kAccept;
  e.flags = wire::kFlagStream | wire::kFlagInet;
  e.state = wire::kStateStream | wire::kStateInet | wire::kStateConnected;
  e.fd = 5;
  e.tid = 4242;
  e.mono_ns = 2000;
  e.ident = {0xc00c1e, 0x1234};
  e.blob = 8;
  e.arg = 3;
  records.push_back(EventRecord{1, 0, e});
  e.type = wire::EventType::kEofSeen;
  e.state |= wire::kStateEofSeen | wire::kStateUsed;
  e.mono_ns = 3000;
  e.arg = 0x555555555123;
  records.push_back(EventRecord{1, 1, e});
  KernelRecord k;
  k.mono_ns = 9000;
  k.cookie = 0xc00c1e;
  k.inode = 0x1234;
  k.state = kTcpCloseWait;
  k.send_queue = 0;
  k.local = "127.0.0.1:8080";
  k.peer = "127.0.0.1:54020";
  k.owners = {{4242, 5}, {4243, 5}};
  records.push_back(k);
  records.push_back(ExitRecord{1, 10000, 0, 1, 2, 3});
  FoldRecord f;  // what a compaction writes
  f.grace_ns = 5'000'000'000;
  f.latest_ns = 10500;
  f.sockets = 3;
  f.events = 9;
  f.streams = {1};
  f.time_wait.push_back({1, 8, 3, 2500, 1, {{"127.0.0.1", 3}}});
  f.loads.push_back({1, 1000, 10'000'000, {4000}, {1000}});
  f.last_closes.push_back({1, 5, 0xc00c1f, 2600, 8, 4242, false});
  records.push_back(f);
  records.push_back(EndRecord{11000});
  return records;
}

std::string Frame(std::string_view payload) {
  std::string out;
  Append(&out, static_cast<uint32_t>(payload.size()));
  Append(&out, Crc32c(payload));
  out.append(payload);
  return out;
}

void TraceCorpus(const std::vector<std::string>& traces) {
  std::vector<Record> records = SampleRecords();
  std::string trace(kTraceMagic, sizeof(kTraceMagic));
  const char* names[] = {"run",       "process", "module",   "stack",
                         "py_code",   "py_stack", "event",   "event_eof",
                         "kernel",    "exit",    "fold",     "end"};
  static_assert(sizeof(names) / sizeof(names[0]) == 12);
  if (records.size() != sizeof(names) / sizeof(names[0])) {
    Die("a sample record without a name");
  }
  for (size_t i = 0; i < records.size(); ++i) {
    std::string payload = EncodeRecord(records[i]);
    Write("fuzz_trace", std::string("record_") + names[i], payload);
    trace += Frame(payload);
  }
  Write("fuzz_trace", "every_kind.catrace", trace);
  // A damaged tail: the reader must keep what came before.
  Write("fuzz_trace", "truncated.catrace", trace.substr(0, trace.size() - 5));

  int n = 0;
  for (const std::string& path : traces) {
    std::ifstream f(path, std::ios::binary);
    if (!f) Die("cannot open " + path);
    std::string bytes((std::istreambuf_iterator<char>(f)),
                      std::istreambuf_iterator<char>());
    if (bytes.size() < sizeof(kTraceMagic) ||
        std::memcmp(bytes.data(), kTraceMagic, sizeof(kTraceMagic)) != 0) {
      Die("not a readable trace: " + path);
    }
    size_t off = sizeof(kTraceMagic);
    while (bytes.size() - off >= 8) {
      uint32_t len;
      std::memcpy(&len, bytes.data() + off, 4);
      if (len > bytes.size() - off - 8 || off + 8 + len > 16 * 1024) break;
      off += 8 + size_t{len};
    }
    Write("fuzz_trace", "real_" + std::to_string(n++) + ".catrace",
          bytes.substr(0, off));
  }
}

// --- fuzz_ring --------------------------------------------------------------
// The compact input form fuzz_ring.cc reads: a control byte, the RingHeader
// (without the rest of its page), the 64 slots, the 4 KiB arena.

constexpr uint32_t kSlots = 64;
constexpr uint32_t kArena = 4096;

class Ring {
 public:
  Ring() {
    // Page-aligned, like the memfd mapping (RingHeader is 64-byte aligned).
    void* mem = std::aligned_alloc(4096, kBytes);
    if (mem == nullptr) Die("out of memory");
    std::memset(mem, 0, kBytes);
    mem_.reset(static_cast<uint8_t*>(mem));
    wire::RingHeader* h = header();
    h->magic = wire::kRingMagic;
    h->version = wire::kWireVersion;
    h->slot_bytes = sizeof(wire::Slot);
    h->slot_count = kSlots;
    h->arena_offset = wire::kRingHeaderBytes + kSlots * sizeof(wire::Slot);
    h->arena_bytes = kArena;
    h->arena_used = 8;
  }
  wire::RingHeader* header() {
    return reinterpret_cast<wire::RingHeader*>(mem_.get());
  }
  wire::Slot* slots() {
    return reinterpret_cast<wire::Slot*>(mem_.get() + wire::kRingHeaderBytes);
  }
  uint8_t* arena() { return mem_.get() + header()->arena_offset; }

  void Push(const wire::Event& e) {
    if (!ring::Push(header(), slots(), kSlots, ring::Log2(kSlots), &e)) {
      Die("seed ring is full");
    }
  }
  // Consumes an event, as the collector would.
  void Pop() {
    wire::Event e;
    ring::Pop(header(), slots(), kSlots, ring::Log2(kSlots), &e);
  }
  uint32_t Alloc(uint32_t bytes) {
    uint64_t off = header()->arena_used;
    header()->arena_used += wire::AlignBlob(bytes);
    if (header()->arena_used > kArena) Die("seed arena is full");
    return static_cast<uint32_t>(off);
  }
  uint32_t Stack(std::initializer_list<uint64_t> frames) {
    uint32_t bytes =
        static_cast<uint32_t>(sizeof(wire::StackBlob) + 8 * frames.size());
    uint32_t off = Alloc(bytes);
    wire::StackBlob s{};
    s.header.kind = wire::BlobKind::kStack;
    s.header.bytes = bytes;
    s.frame_count = static_cast<uint32_t>(frames.size());
    std::memcpy(arena() + off, &s, sizeof(s));
    std::memcpy(arena() + off + sizeof(s), frames.begin(), 8 * frames.size());
    return off;
  }
  // A stack with Python frames, each naming a code blob.
  uint32_t PyStack(std::initializer_list<uint64_t> frames,
                   std::initializer_list<wire::PyFrame> py) {
    uint32_t bytes = static_cast<uint32_t>(
        sizeof(wire::StackBlob) + 8 * frames.size() + 8 * py.size());
    uint32_t off = Alloc(bytes);
    wire::StackBlob s{};
    s.header.kind = wire::BlobKind::kStack;
    s.header.bytes = bytes;
    s.frame_count = static_cast<uint32_t>(frames.size());
    s.py_frame_count = static_cast<uint32_t>(py.size());
    std::memcpy(arena() + off, &s, sizeof(s));
    if (frames.size() > 0) {
      std::memcpy(arena() + off + sizeof(s), frames.begin(), 8 * frames.size());
    }
    if (py.size() > 0) {
      std::memcpy(arena() + off + sizeof(s) + 8 * frames.size(), py.begin(),
                  8 * py.size());
    }
    return off;
  }
  uint32_t PyCode(uint16_t minor, std::string_view name, std::string_view file,
                  std::string_view table) {
    uint32_t bytes = static_cast<uint32_t>(sizeof(wire::PyCodeBlob) +
                                           name.size() + file.size() +
                                           table.size());
    uint32_t off = Alloc(bytes);
    wire::PyCodeBlob c{};
    c.header.kind = wire::BlobKind::kPyCode;
    c.header.bytes = wire::AlignBlob(bytes);
    c.minor = minor;
    c.firstlineno = 20;
    c.name_len = static_cast<uint32_t>(name.size());
    c.file_len = static_cast<uint32_t>(file.size());
    c.table_len = static_cast<uint32_t>(table.size());
    std::memcpy(arena() + off, &c, sizeof(c));
    std::string rest = std::string(name) + std::string(file) + std::string(table);
    std::memcpy(arena() + off + sizeof(c), rest.data(), rest.size());
    return off;
  }
  uint32_t Module(std::string_view path, std::string_view build_id) {
    uint32_t bytes = static_cast<uint32_t>(sizeof(wire::ModuleBlob) +
                                           path.size() + build_id.size());
    uint32_t off = Alloc(bytes);
    wire::ModuleBlob m{};
    m.header.kind = wire::BlobKind::kModule;
    m.header.bytes = bytes;
    m.load_bias = 0x7ffff7c00000;
    m.start = 0x7ffff7c00000;
    m.end = 0x7ffff7e00000;
    m.path_len = static_cast<uint16_t>(path.size());
    m.build_id_len = static_cast<uint16_t>(build_id.size());
    std::memcpy(arena() + off, &m, sizeof(m));
    std::memcpy(arena() + off + sizeof(m), path.data(), path.size());
    std::memcpy(arena() + off + sizeof(m) + path.size(), build_id.data(),
                build_id.size());
    return off;
  }

  std::string Compact(uint8_t control = 0) {
    std::string out(1, static_cast<char>(control));
    out.append(reinterpret_cast<const char*>(mem_.get()),
               sizeof(wire::RingHeader));
    out.append(reinterpret_cast<const char*>(slots()),
               kSlots * sizeof(wire::Slot));
    out.append(reinterpret_cast<const char*>(arena()), kArena);
    return out;
  }

 private:
  static constexpr size_t kBytes =
      wire::kRingHeaderBytes + kSlots * sizeof(wire::Slot) + kArena;
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> mem_;
};

wire::Event Ev(wire::EventType type, int fd, uint32_t blob = 0,
               uint64_t arg = 0) {
  static uint64_t clock = 1000;
  wire::Event e{};
  e.type = type;
  e.flags = wire::kFlagStream | wire::kFlagInet;
  e.state = wire::kStateStream | wire::kStateInet;
  e.fd = fd;
  e.tid = 4242;
  e.mono_ns = clock += 1000;
  e.ident = {0xc00c1e00u + static_cast<uint64_t>(fd),
             0x5000u + static_cast<uint64_t>(fd)};
  e.blob = blob;
  e.arg = arg;
  return e;
}

wire::Event Address(int fd) {
  wire::AddressEvent a{};
  a.type = wire::EventType::kAddress;
  a.family = 4;
  a.local_port = 8080;
  a.fd = fd;
  a.peer_port = 54020;
  a.cookie = 0xc00c1e00u + static_cast<uint64_t>(fd);
  const uint8_t lo[4] = {127, 0, 0, 1};
  std::memcpy(a.local_addr, lo, 4);
  std::memcpy(a.peer_addr, lo, 4);
  wire::Event e;
  static_assert(sizeof(e) == sizeof(a));
  std::memcpy(&e, &a, sizeof(e));
  return e;
}

void RingCorpus() {
  using wire::EventType;
  {
    Ring r;
    Write("fuzz_ring", "empty", r.Compact());
  }
  {
    // A server's life: its module, a listener, one connection read to EOF
    // and closed; the accept and the EOF share a stack.
    Ring r;
    uint32_t mod =
        r.Module("/usr/sbin/server", "\x01\x23\x45\x67\x89\xab\xcd\xef");
    uint32_t created = r.Stack({0x555555555123, 0x555555555456});
    uint32_t eof = r.Stack({0x555555555789, 0x555555555456, 0x7ffff7c29d8f});
    uint32_t closed = r.Stack({0x555555555abc});
    r.Push(Ev(EventType::kModule, -1, mod));
    r.Push(Ev(EventType::kSocket, 3, created, 0));
    r.Push(Ev(EventType::kListen, 3));
    r.Push(Ev(EventType::kAccept, 4, created, 3));
    r.Push(Address(4));
    r.Push(Ev(EventType::kEofSeen, 4, eof, 0x555555555700));
    r.Push(Ev(EventType::kShutdown, 4, eof));
    r.Push(Ev(EventType::kClose, 4, closed));
    r.Push(Ev(EventType::kCloseUntracked, 9, closed));
    Write("fuzz_ring", "server_events", r.Compact());
    Write("fuzz_ring", "server_events_raw_layout", r.Compact(1));
  }
  {
    // A Python server's: stacks with Python frames, their code objects
    // (one a handler's definition), a kRuntime event and a Python handler.
    Ring r;
    uint32_t handle = r.PyCode(11, "Handler.handle", "/srv/app/server.py",
                               std::string("\x80\x00\xd8\x08\x0c\x88", 6));
    uint32_t serve = r.PyCode(11, "serve", "/srv/app/server.py", "\x80\x00");
    uint32_t def = r.PyCode(0, "handle", "/srv/app/server.py", "");
    uint32_t created = r.PyStack({0x555555555123, 0x555555555456},
                                 {{serve, 8 | wire::kPyFrameCallEnd}});
    uint32_t eof = r.PyStack({0x555555555789},
                             {{handle, 12}, {serve, 8 | wire::kPyFrameCallEnd}});
    uint32_t handler = r.PyStack({}, {{def, wire::kPyFrameCallEnd}});
    wire::Event rt = Ev(EventType::kRuntime, -1);
    rt.aux = static_cast<uint32_t>(wire::PyStatus::kWalked);
    rt.arg = wire::PyVersion(3, 11, 2);
    r.Push(rt);
    r.Push(Ev(EventType::kAccept, 4, created, 3));
    wire::Event h = Ev(EventType::kHandler, 4, handler);
    h.aux = static_cast<uint32_t>(wire::HandlerKind::kPython) |
            wire::kHandlerPyStreams;
    r.Push(h);
    r.Push(Ev(EventType::kEofSeen, 4, eof, 0x555555555700));
    Write("fuzz_ring", "python", r.Compact());
  }
  {
    // Several laps in: positions well past the slot count.
    Ring r;
    uint32_t st = r.Stack({0x401000});
    for (int i = 0; i < 3 * static_cast<int>(kSlots) + 5; ++i) {
      r.Push(Ev(EventType::kDup, 5 + i % 7, 0, 4));
      r.Pop();
    }
    r.Push(Ev(EventType::kFork, 3, st, 4343));
    r.Push(Ev(EventType::kExec, 3, st));
    r.Push(Ev(EventType::kLinger, 3, st));
    r.Push(Ev(EventType::kInherited, 6));
    Write("fuzz_ring", "wrapped", r.Compact());
  }
  {
    // A producer died between claiming a position and committing it.
    Ring r;
    r.Push(Ev(EventType::kSocket, 3));
    r.header()->write_pos += 1;  // claimed, never committed
    r.Push(Ev(EventType::kConnect, 3));
    Write("fuzz_ring", "torn", r.Compact());
  }
  {
    // Full: every slot committed, and a dropped event counted.
    Ring r;
    uint32_t st = r.Stack({0x401000, 0x402000});
    for (uint32_t i = 0; i < kSlots; ++i) {
      r.Push(Ev(i % 2 ? EventType::kClose : EventType::kSocket, 3 + i % 5, st));
    }
    r.header()->dropped_events = 1;
    Write("fuzz_ring", "full", r.Compact());
  }
}

// --- fuzz_diag --------------------------------------------------------------

// seq 0: a dump's message (sequence number 1, NLM_F_MULTI); else the
// answer to the single-socket request of that number.
void Message(std::string* out, uint16_t type, std::string_view payload,
             uint32_t seq = 0) {
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(sizeof(h) + payload.size());
  h.nlmsg_type = type;
  h.nlmsg_flags = seq == 0 ? NLM_F_MULTI : 0;
  h.nlmsg_seq = seq == 0 ? 1 : seq;
  h.nlmsg_pid = 0;
  Append(out, h);
  out->append(payload);
  out->resize(NLMSG_ALIGN(out->size()), '\0');
}

std::string Diag(int family, int state, const char* src, uint16_t sport,
                 const char* dst, uint16_t dport, uint64_t cookie,
                 uint32_t inode) {
  inet_diag_msg m{};
  m.idiag_family = static_cast<uint8_t>(family);
  m.idiag_state = static_cast<uint8_t>(state);
  m.id.idiag_sport = htons(sport);
  m.id.idiag_dport = htons(dport);
  if (inet_pton(family, src, m.id.idiag_src) != 1 ||
      inet_pton(family, dst, m.id.idiag_dst) != 1) {
    Die("bad address");
  }
  m.id.idiag_cookie[0] = static_cast<uint32_t>(cookie);
  m.id.idiag_cookie[1] = static_cast<uint32_t>(cookie >> 32);
  m.idiag_rqueue = state == kTcpCloseWait ? 1 : 0;
  m.idiag_wqueue = 0;
  m.idiag_uid = 1000;
  m.idiag_inode = inode;
  std::string out;
  Append(&out, m);
  return out;
}

std::string Int(int v) {
  std::string out;
  Append(&out, v);
  return out;
}

void DiagCorpus() {
  std::string v4;
  Message(&v4, SOCK_DIAG_BY_FAMILY,
          Diag(AF_INET, kTcpCloseWait, "127.0.0.1", 8080, "127.0.0.1", 54020,
               0x100000001, 31337));
  Message(
      &v4, SOCK_DIAG_BY_FAMILY,
      Diag(AF_INET, kTcpTimeWait, "10.0.0.2", 443, "10.0.0.9", 40000, 7, 0));
  Write("fuzz_diag", "v4_rows", v4);
  std::string done = v4;
  Message(&done, NLMSG_DONE, Int(0));
  Write("fuzz_diag", "v4_rows_done", done);

  std::string v6;
  Message(&v6, SOCK_DIAG_BY_FAMILY,
          Diag(AF_INET6, kTcpEstablished, "::1", 8080, "::1", 50000, 42, 777));
  Message(&v6, SOCK_DIAG_BY_FAMILY,
          Diag(AF_INET6, kTcpFinWait2, "::ffff:127.0.0.1", 8080,
               "::ffff:127.0.0.1", 50001, 43, 0));
  Message(&v6, NLMSG_NOOP, "");
  Message(&v6, NLMSG_DONE, Int(0));
  Write("fuzz_diag", "v6_rows_done", v6);

  std::string only_done;
  Message(&only_done, NLMSG_DONE, Int(0));
  Write("fuzz_diag", "done", only_done);

  // Answers to a lookup's requests 1 to 3: found, gone, another socket's.
  std::string lookup;
  Message(&lookup, SOCK_DIAG_BY_FAMILY,
          Diag(AF_INET, kTcpCloseWait, "127.0.0.1", 8080, "127.0.0.1", 54021,
               0x100000002, 31338),
          1);
  Message(&lookup, NLMSG_ERROR, Int(-ENOENT), 2);
  Message(&lookup, NLMSG_ERROR, Int(-ESTALE), 3);
  Write("fuzz_diag", "lookup_answers", lookup);

  // EPERM, with the request echoed as the kernel does.
  std::string err = Int(-EPERM);
  nlmsghdr req{};
  req.nlmsg_len = sizeof(req) + sizeof(inet_diag_req_v2);
  req.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nlmsg_seq = 1;
  Append(&err, req);
  std::string error;
  Message(&error, NLMSG_ERROR, err);
  Write("fuzz_diag", "error_eperm", error);
}

}  // namespace
}  // namespace closeaudit

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: make_corpus OUTDIR [TRACE...]\n");
    return 2;
  }
  closeaudit::out_dir = argv[1];
  closeaudit::MakeDir(closeaudit::out_dir);
  closeaudit::HelloCorpus();
  closeaudit::TraceCorpus(std::vector<std::string>(argv + 2, argv + argc));
  closeaudit::RingCorpus();
  closeaudit::DiagCorpus();
  return 0;
}
