// Fuzzes the hello a traced process sends first on the collector's socket:
// HelloSize() on the prefixes the server may have buffered when it asks, and
// DecodeHello() on the whole input, on the exact size the header claims and on
// one byte less.
//
// Invariants: any byte string yields a value or a Status, never a crash; a
// decoded hello accounts for every byte after the header (the path is the
// exe_len bytes, and the argv strings joined by NUL are the rest).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "collector/ingest.h"
#include "common/wire.h"

namespace {

void Fail(const char* what) {
  std::fprintf(stderr, "fuzz_hello: %s\n", what);
  std::abort();
}

void CheckDecoded(std::string_view bytes, const closeaudit::Hello& hello) {
  using closeaudit::wire::HelloMsg;
  if (hello.exe.size() != hello.msg.exe_len) Fail("exe is not exe_len bytes");
  std::string_view rest = bytes.substr(sizeof(HelloMsg));
  if (rest.substr(0, hello.msg.exe_len) != hello.exe) Fail("exe differs");
  std::string_view args = rest.substr(hello.msg.exe_len);
  if (args.size() != hello.msg.argv_len) Fail("argv is not argv_len bytes");
  std::string joined;
  for (size_t i = 0; i < hello.argv.size(); ++i) {
    if (i > 0) joined.push_back('\0');
    joined += hello.argv[i];
  }
  if (!args.empty() && args.back() == '\0') joined.push_back('\0');
  if (joined != args) Fail("argv strings do not add up to the argv bytes");
}

void Decode(std::string_view bytes) {
  absl::StatusOr<closeaudit::Hello> hello = closeaudit::DecodeHello(bytes);
  if (hello.ok()) CheckDecoded(bytes, *hello);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // The server asks once it has a header's worth; shorter prefixes must be
  // refused, not read past.
  constexpr size_t kHeader = sizeof(closeaudit::wire::HelloMsg);
  for (size_t n = 0; n <= size && n <= kHeader + 8; ++n) {
    absl::StatusOr<size_t> s = closeaudit::HelloSize(in.substr(0, n));
    if (s.ok() && (n < kHeader || *s < kHeader)) {
      Fail("HelloSize accepted a short prefix");
    }
  }
  absl::StatusOr<size_t> total = closeaudit::HelloSize(in);
  Decode(in);
  if (total.ok()) {
    if (*total > closeaudit::wire::kMaxHelloBytes) {
      Fail("HelloSize over the limit");
    }
    if (*total <= size) {
      Decode(in.substr(0, *total));
      if (!closeaudit::DecodeHello(in.substr(0, *total)).ok()) {
        Fail("DecodeHello refused exactly HelloSize() bytes");
      }
      Decode(in.substr(0, *total - 1));
    }
  }
  return 0;
}
