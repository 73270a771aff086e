// Fuzzes PythonLine(), the decoder of CPython's line tables (bytes the
// library copies out of a process), on the input as: one byte for the minor
// version, four for the offset, the rest the table.
//
// Invariants: never a crash or a read past the table; a line is never
// negative.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "collector/python_lines.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  int minor = 8 + data[0] % 8;  // 3.8 to 3.15: the known and the unknown
  uint32_t offset;
  std::memcpy(&offset, data + 1, 4);
  std::string_view table(reinterpret_cast<const char*>(data + 5), size - 5);
  for (uint32_t at : {offset, offset % 512, 0u}) {
    if (closeaudit::PythonLine(minor, 1 + data[0], table, at) < 0) {
      std::fprintf(stderr, "fuzz_pylines: a negative line\n");
      std::abort();
    }
  }
  return 0;
}
