// Test support: builds a run record by record and feeds it to an Analyzer,
// for the golden-style tests of the analyzer and of the finding rules.
//
// Every stream gets the same fake module (which does not exist on disk, so
// the real Symbolizer answers with one unsymbolized frame per address) and
// the same four stacks, named by the arena offsets below.
#ifndef CLOSEAUDIT_COLLECTOR_ANALYZER_FEED_H_
#define CLOSEAUDIT_COLLECTOR_ANALYZER_FEED_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "collector/analyzer.h"
#include "collector/records.h"
#include "collector/report.h"
#include "collector/symbolizer.h"
#include "common/wire.h"

namespace closeaudit::testing_feed {

inline constexpr uint64_t kMs = 1'000'000;
inline constexpr uint64_t kSec = 1000 * kMs;
inline constexpr uint64_t kT0 =
    5000 * kSec;  // the run's start, CLOCK_MONOTONIC

inline constexpr uint64_t kBias = 0x555555554000;
inline constexpr uint64_t kModStart = kBias + 0x1000;
inline constexpr uint64_t kModEnd = kBias + 0x100000;
inline constexpr char kModulePath[] =
    "/nonexistent/closeaudit-analyzer-test/server";

// Arena offsets that name the stacks in every stream.
inline constexpr uint32_t kAcceptRef = 8;
inline constexpr uint32_t kEofRef = 64;
inline constexpr uint32_t kEofRef2 = 128;
inline constexpr uint32_t kCloseRef = 192;

inline const std::vector<uint64_t> kAcceptFrames = {kBias + 0x1100,
                                                    kBias + 0x1200};
inline const std::vector<uint64_t> kEofFrames = {kBias + 0x2100, kBias + 0x2200,
                                                 kBias + 0x2300};
inline const std::vector<uint64_t> kEofFrames2 = {kBias + 0x4100,
                                                  kBias + 0x2300};
inline const std::vector<uint64_t> kCloseFrames = {kBias + 0x5100};
inline constexpr uint64_t kLastUseIp = kBias + 0x3000;

inline constexpr uint8_t kTcp = wire::kFlagStream | wire::kFlagInet;

// Builds a run record by record and feeds it to an Analyzer.
class Feed {
 public:
  explicit Feed(uint64_t grace_ns = kSec, AnalyzerOptions options = {})
      : analyzer_(options),
        run_{grace_ns, kT0, 1'700'000'000 * kSec, "test-host", {}, {}} {
    analyzer_.Add(run_);
  }
  // From now on, also appends every record to *tap (the run record first),
  // to be written to a trace.
  void Tap(std::vector<Record>* tap) {
    tap_ = tap;
    tap_->push_back(run_);
  }

  // A process image with the fake module loaded at `bias` (ASLR) from
  // `module_path`, and the four stacks relocated to match.
  void Process(uint32_t stream, uint32_t pid, std::string exe = "/srv/server",
               std::vector<std::string> argv = {"server"},
               uint64_t bias = kBias, std::string module_path = kModulePath,
               std::string build_id = "") {
    ProcessRecord p;
    p.stream = stream;
    p.pid = pid;
    p.ppid = 1;
    p.start_mono_ns = kT0;
    p.exe = std::move(exe);
    p.argv = std::move(argv);
    Put(p);
    Put(ModuleRecord{stream, bias, kModStart - kBias + bias,
                               kModEnd - kBias + bias, std::move(module_path),
                               std::move(build_id)});
    auto at = [bias](const std::vector<uint64_t>& frames) {
      std::vector<uint64_t> out;
      for (uint64_t ip : frames) out.push_back(ip - kBias + bias);
      return out;
    };
    Put(StackRecord{stream, kAcceptRef, at(kAcceptFrames), {}});
    Put(StackRecord{stream, kEofRef, at(kEofFrames), {}});
    Put(StackRecord{stream, kEofRef2, at(kEofFrames2), {}});
    Put(StackRecord{stream, kCloseRef, at(kCloseFrames), {}});
  }

  void Event(uint32_t stream, wire::EventType type, int fd, uint64_t cookie,
             uint64_t t, uint8_t flags, uint32_t blob = 0, uint64_t arg = 0,
             uint32_t aux = 0, uint16_t state = 0) {
    EventRecord r;
    r.stream = stream;
    r.seq = seq_++;
    r.event.type = type;
    r.event.flags = flags;
    r.event.state = state;
    r.event.fd = fd;
    r.event.tid = 1;
    r.event.mono_ns = t;
    r.event.ident.cookie = cookie;
    r.event.ident.inode = cookie + 1000;
    r.event.blob = blob;
    r.event.aux = aux;
    r.event.arg = arg;
    Put(r);
  }
  void Accept(uint32_t stream, int fd, uint64_t cookie, uint64_t t,
              uint8_t flags = kTcp) {
    Event(stream, wire::EventType::kAccept, fd, cookie, t, flags, kAcceptRef,
          3);
  }
  void Eof(uint32_t stream, int fd, uint64_t cookie, uint64_t t,
           uint32_t ref = kEofRef, uint8_t flags = kTcp) {
    Event(stream, wire::EventType::kEofSeen, fd, cookie, t, flags, ref,
          kLastUseIp);
  }
  void Close(uint32_t stream, int fd, uint64_t cookie, uint64_t t) {
    Event(stream, wire::EventType::kClose, fd, cookie, t, 0, kCloseRef);
  }
  // A close() that failed with EBADF on a number the shim did not track.
  void CloseUntracked(uint32_t stream, int fd, uint64_t t,
                      uint32_t ref = kCloseRef) {
    Event(stream, wire::EventType::kCloseUntracked, fd, 0, t, 0, ref);
  }
  // A socket the process found open, got over a fork or received (`aux` as
  // in wire::EventType::kInherited).
  void Inherited(uint32_t stream, int fd, uint64_t cookie, uint64_t t,
                 uint32_t aux, uint16_t state = 0, uint8_t flags = kTcp) {
    Event(stream, wire::EventType::kInherited, fd, cookie, t, flags, 0, 0, aux,
          state);
  }
  void Dup(uint32_t stream, int newfd, int oldfd, uint64_t cookie, uint64_t t) {
    Event(stream, wire::EventType::kDup, newfd, cookie, t, 0, 0,
          static_cast<uint64_t>(oldfd));
  }
  // An event library took the socket (wire::kHandler), from the accept's
  // stack.
  void Handler(uint32_t stream, int fd, uint64_t cookie, uint64_t t,
               wire::HandlerKind kind, uint64_t callback, uint32_t flags = 0,
               uint32_t ref = kAcceptRef) {
    Event(stream, wire::EventType::kHandler, fd, cookie, t, kTcp, ref,
          callback, static_cast<uint32_t>(kind) | flags);
  }
  // The endpoints of a TCP socket: 127.0.0.1:8080, and the peer 127.0.0.PEER
  // on a port of the cookie's.
  void Address(uint32_t stream, int fd, uint64_t cookie, uint8_t peer) {
    wire::AddressEvent a{};
    a.type = wire::EventType::kAddress;
    a.fd = fd;
    a.cookie = cookie;
    a.family = 4;
    a.local_port = 8080;
    a.peer_port = static_cast<uint16_t>(40000 + cookie % 20000);
    const uint8_t local[4] = {127, 0, 0, 1};
    const uint8_t remote[4] = {127, 0, 0, peer};
    std::memcpy(a.local_addr, local, 4);
    std::memcpy(a.peer_addr, remote, 4);
    EventRecord r;
    r.stream = stream;
    std::memcpy(&r.event, &a, sizeof(a));  // it has no time of its own
    Put(r);
  }
  void Exit(uint32_t stream, uint64_t t, int32_t status = 0,
            uint64_t dropped = 0, uint64_t torn = 0,
            uint64_t dropped_blobs = 0) {
    Put(ExitRecord{stream, t, status, dropped, dropped_blobs, torn});
  }
  void End(uint64_t t) { Put(EndRecord{t}); }
  // Any other record, as it is.
  void Add(const Record& record) { Put(record); }
  // A kernel sample of one socket; `owners` only for sockets the shim never
  // reported.
  void Kernel(uint64_t t, uint64_t cookie, uint64_t inode, int state,
              std::vector<std::pair<uint32_t, int32_t>> owners = {},
              std::string local = "", std::string peer = "") {
    KernelRecord k;
    k.mono_ns = t;
    k.cookie = cookie;
    k.inode = inode;
    k.state = state;
    k.local = std::move(local);
    k.peer = std::move(peer);
    k.owners = std::move(owners);
    Put(k);
  }
  void Note(std::string text, bool unaudited) {
    Put(NoteRecord{std::move(text), unaudited});
  }

  void Put(const EventRecord& r) {
    if (tap_) tap_->push_back(r);
    analyzer_.Add(r);
  }
  void Put(const Record& r) {
    if (tap_) tap_->push_back(r);
    analyzer_.Add(r);
  }

  Report Build(std::optional<uint64_t> as_of = std::nullopt) {
    Symbolizer symbolizer;
    return analyzer_.Build(symbolizer, as_of);
  }
  const Analyzer& analyzer() const { return analyzer_; }
  Analyzer& analyzer() { return analyzer_; }

 private:
  Analyzer analyzer_;
  RunRecord run_;
  std::vector<Record>* tap_ = nullptr;
  uint64_t seq_ = 0;
};

inline std::vector<uint64_t> Addresses(const std::vector<Frame>& frames) {
  std::vector<uint64_t> out;
  for (const Frame& f : frames) out.push_back(f.address);
  return out;
}

inline const std::vector<Frame>* Stack(const Finding& f,
                                       std::string_view name) {
  for (const auto& [n, frames] : f.stacks) {
    if (n == name) return &frames;
  }
  return nullptr;
}

}  // namespace closeaudit::testing_feed

#endif  // CLOSEAUDIT_COLLECTOR_ANALYZER_FEED_H_
