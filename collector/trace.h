// The trace file: every record the collector received, in order, so that
// `closeaudit report DIR` can regenerate the reports later.
//
// Layout (docs/wire-format.md, "Trace file"): an 8-byte magic "CATRACE1",
// then frames of [u32 payload length][u32 CRC-32C of payload][payload]. A
// payload is one record, or (kind 0x80) a zstd-compressed block of frames:
// what one flush wrote, when it was large enough to be worth compressing. A
// reader stops at the first frame or block that is truncated, fails its
// checksum or does not decode, and says so; everything before it is used.
#ifndef CLOSEAUDIT_COLLECTOR_TRACE_H_
#define CLOSEAUDIT_COLLECTOR_TRACE_H_

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "collector/records.h"

namespace closeaudit {

inline constexpr char kTraceMagic[8] = {'C', 'A', 'T', 'R', 'A', 'C', 'E', '1'};
inline constexpr uint32_t kMaxTraceFrame = 1u << 20;

std::string EncodeRecord(const Record& record);
// Decodes one payload. Never trusts a length inside it.
absl::StatusOr<Record> DecodeRecord(std::string_view payload);

uint32_t Crc32c(std::string_view data);

// Appends records to a trace file. Not thread-safe.
class TraceWriter {
 public:
  TraceWriter() = default;
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  absl::Status Open(const std::string& path);
  // Appends to the trace at `path` from now on (one that a compaction put
  // there), flushing to the old file first.
  absl::Status Reopen(const std::string& path);
  // The bytes handed to the kernel so far (the file's size).
  uint64_t size() const { return size_; }
  // Whether everything appended is in the file: it then ends with a whole
  // frame.
  bool flushed() const { return pending_.empty() && buffer_.empty(); }
  void Append(const Record& record);
  // The same for an event, without wrapping it in a Record.
  void Append(const EventRecord& record);
  // Hands buffered frames to the kernel. Call at least once a second.
  absl::Status Flush();
  bool is_open() const { return fd_ >= 0; }

 private:
  // Completes the frame that starts at frame_head in pending_.
  void FinishAppend(size_t frame_head);

  int fd_ = -1;
  std::string pending_;  // frames appended since the last flush
  std::string buffer_;   // bytes ready for the file
  std::unique_ptr<char[]> scratch_;  // a compressed batch, being made
  size_t scratch_size_ = 0;
  std::string path_;
  uint64_t size_ = 0;
};

// Calls fn for each record of the trace at path, reading the file a piece at
// a time (what it holds is at most a frame and a piece, whatever the
// trace's size). Returns an error only if the file cannot be read at all; a
// damaged tail ends the read early and is described in *warning.
// With `limit`, only the file's first `limit` bytes are read (a trace still
// being written to, up to a point it flushed).
absl::Status ReadTrace(const std::string& path,
                       const std::function<void(const Record&)>& fn,
                       std::string* warning,
                       uint64_t limit = ~uint64_t{0});

// The same over bytes already in memory (used by ReadTrace and the fuzzer).
void ReadTraceBytes(std::string_view bytes,
                    const std::function<void(const Record&)>& fn,
                    std::string* warning);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_TRACE_H_
