// Fuzzes ParsePerfMapLine(), the parser of the perf maps runtimes write
// (/tmp/perf-PID.map, which any process of the user may write), on each
// line of the input.
//
// Invariants: never a crash; every line it accepts names a non-empty range
// that does not wrap, and a name that is not empty, holds no newline and is
// at most 1024 bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "collector/module_finder.h"

namespace {

void Fail(const char* what) {
  std::fprintf(stderr, "fuzz_perfmap: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  while (!in.empty()) {
    size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
    uint64_t start = 0, length = 0;
    std::string name;
    if (!closeaudit::internal::ParsePerfMapLine(line, &start, &length, &name)) {
      continue;
    }
    if (length == 0 || start + length < start) Fail("empty or wrapping range");
    if (name.empty() || name.size() > 1024) Fail("bad name length");
    if (name.find('\n') != std::string::npos) Fail("newline in a name");
  }
  return 0;
}
