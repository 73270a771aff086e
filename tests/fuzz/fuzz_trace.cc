// Fuzzes the trace file reader (ReadTraceBytes) and the record decoder
// (DecodeRecord) on three views of the input:
//   1. the input as a trace file;
//   2. the input as the frames of a trace file: the magic is prepended when
//      it is missing and every frame's CRC-32C is fixed up, so that mutated
//      payloads reach the record decoder instead of failing the checksum;
//   3. the input as one record payload.
//
// Invariants: never a crash; every decoded record round-trips, i.e.
// EncodeRecord(DecodeRecord(EncodeRecord(r))) == EncodeRecord(r); and a
// payload that decodes is exactly the encoding of what it decodes to (the
// format has one encoding per record, so nothing in it is silently ignored),
// except a run record in its older form, without the host, which encodes
// again with an empty host, and a process record without the library's
// version, which encodes again with version 0.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "collector/records.h"
#include "collector/trace.h"

namespace closeaudit {
namespace {

void Fail(const char* what, std::string_view bytes) {
  std::fprintf(stderr, "fuzz_trace: %s (record of %zu bytes, kind %d)\n", what,
               bytes.size(), bytes.empty() ? -1 : static_cast<int>(bytes[0]));
  std::abort();
}

void CheckRoundTrip(const Record& record) {
  std::string encoded = EncodeRecord(record);
  absl::StatusOr<Record> back = DecodeRecord(encoded);
  if (!back.ok()) Fail("EncodeRecord output does not decode", encoded);
  if (back->index() != record.index()) {
    Fail("round trip changed the kind", encoded);
  }
  if (EncodeRecord(*back) != encoded) {
    Fail("round trip changed the record", encoded);
  }
}

void ReadAll(std::string_view bytes) {
  std::vector<Record> records;
  std::string warning;
  ReadTraceBytes(
      bytes, [&](const Record& r) { records.push_back(r); }, &warning);
  for (const Record& r : records) CheckRoundTrip(r);
}

// The input as frames after the magic, with each frame's checksum replaced by
// the right one (up to the first frame that does not fit).
std::string WithValidFrames(std::string_view in) {
  std::string out;
  if (in.size() < sizeof(kTraceMagic) ||
      std::memcmp(in.data(), kTraceMagic, sizeof(kTraceMagic)) != 0) {
    out.assign(kTraceMagic, sizeof(kTraceMagic));
  }
  size_t off = out.size();
  out.append(in);
  while (out.size() - off >= 8) {
    uint32_t len;
    std::memcpy(&len, out.data() + off, 4);
    if (len > out.size() - off - 8) break;
    uint32_t crc = Crc32c(std::string_view(out).substr(off + 8, len));
    std::memcpy(out.data() + off + 4, &crc, 4);
    off += 8 + size_t{len};
  }
  return out;
}

}  // namespace
}  // namespace closeaudit

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace closeaudit;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ReadAll(in);
  ReadAll(WithValidFrames(in));
  absl::StatusOr<Record> record = DecodeRecord(in);
  if (record.ok()) {
    CheckRoundTrip(*record);
    std::string again = EncodeRecord(*record);
    // The older forms encode again with the newer fields empty: zero bytes
    // more (a string's length or the version: 4; the two app rule counts:
    // 8; a run record without the host has neither: 12), or a kernel
    // record's receive queue unknown (4 bytes of 0xff).
    const auto* run = std::get_if<RunRecord>(&*record);
    const auto* process = std::get_if<ProcessRecord>(&*record);
    const auto* kernel = std::get_if<KernelRecord>(&*record);
    bool no_rules = run != nullptr && run->app_paths.empty() && run->not_app.empty();
    bool older =
        (no_rules && run->host.empty() &&
         again == std::string(in) + std::string(12, '\0')) ||
        (no_rules && again == std::string(in) + std::string(8, '\0')) ||
        (process != nullptr && process->lib_version == 0 &&
         again == std::string(in) + std::string(4, '\0')) ||
        (kernel != nullptr && kernel->recv_queue == KernelRecord::kNoRecvQueue &&
         again == std::string(in) + std::string(4, '\xff'));
    if (again != in && !older) {
      Fail("a payload decodes but is not the encoding of its record", in);
    }
  }
  return 0;
}
