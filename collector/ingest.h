// Decoding what traced processes send: the hello on the socket, and the
// events and blobs in their shared rings.
//
// Every byte here comes from another process and may be garbage, truncated or
// malicious, and shared memory may change while it is read. So: sizes and
// offsets are checked against the collector's own copy of the layout (taken
// once, at Map()), each event and blob is copied out before it is looked at,
// and any failure is a Status, never a crash.
#ifndef CLOSEAUDIT_COLLECTOR_INGEST_H_
#define CLOSEAUDIT_COLLECTOR_INGEST_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "collector/records.h"
#include "common/wire.h"

namespace closeaudit {

struct Hello {
  wire::HelloMsg msg{};
  std::string exe;
  std::vector<std::string> argv;
};

// How many bytes the hello that starts with `prefix` occupies in total, once
// at least sizeof(HelloMsg) bytes are there; an error if the header is not a
// hello this collector understands.
absl::StatusOr<size_t> HelloSize(std::string_view prefix);

// Decodes a complete hello (exactly HelloSize() bytes).
absl::StatusOr<Hello> DecodeHello(std::string_view bytes);

// Where drained records go. Events, nearly all of the traffic, have their
// own entry point, so that the collector's hot path makes no Record.
class IngestSink {
 public:
  virtual void OnEvent(const EventRecord& record) = 0;
  virtual void OnRecord(Record record) = 0;  // every other kind
  // Called by the Collector after each batch it drains from a ring (a
  // bounded number of events): for work that need not be done per event.
  virtual void OnBatchEnd() {}

 protected:
  ~IngestSink() = default;
};

// Every record as a Record, events included (tests and fuzzers).
using RecordSink = std::function<void(Record)>;

// The consumer end of one process's ring.
class RingReader {
 public:
  // Maps the memfd received with a hello. Checks that the file is sealed
  // against shrinking and that its header describes a sane layout that fits
  // the file. Takes ownership of memfd in every case.
  static absl::StatusOr<std::unique_ptr<RingReader>> Map(int memfd,
                                                         uint64_t claimed_bytes);
  ~RingReader();
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  // Moves up to `max` committed events into records for `stream`, each
  // preceded by the blobs (stacks, modules) it refers to that were not
  // passed on before. When producer_dead, positions that were claimed but
  // never committed are skipped and counted as torn. Returns the number of
  // events consumed.
  size_t Drain(uint32_t stream, bool producer_dead, size_t max,
               IngestSink& sink);
  size_t Drain(uint32_t stream, bool producer_dead, size_t max,
               const RecordSink& sink);

  void Heartbeat(uint64_t mono_ns);
  uint64_t dropped_events() const;
  uint64_t dropped_blobs() const;
  uint64_t torn_events() const { return torn_; }
  // Blobs that failed validation (a buggy or hostile producer).
  uint64_t bad_blobs() const { return bad_blobs_; }

 private:
  RingReader() = default;
  bool ReadBlob(uint32_t offset, wire::BlobKind kind, std::string* out);
  // Hands the PyCodeRecord of the code blob at ref to sink, the first time
  // a stack names it; whether it could be read (now or then).
  bool SendPyCode(uint32_t stream, uint32_t ref, IngestSink& sink);

  uint8_t* base_ = nullptr;
  uint64_t bytes_ = 0;
  wire::RingHeader* header_ = nullptr;
  wire::Slot* slots_ = nullptr;
  const uint8_t* arena_ = nullptr;
  uint32_t slot_count_ = 0;
  uint32_t shift_ = 0;
  uint64_t arena_bytes_ = 0;
  uint64_t torn_ = 0;
  uint64_t bad_blobs_ = 0;
  absl::flat_hash_set<uint32_t> sent_stacks_;
  absl::flat_hash_map<uint32_t, bool> sent_codes_;
};

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_INGEST_H_
