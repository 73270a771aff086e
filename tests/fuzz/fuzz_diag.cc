// Fuzzes ParseDiagMessages(), the parser of the kernel's sock_diag replies
// (one recv() buffer of netlink messages), on the input as such a buffer.
//
// Invariants: never a crash; every row it returns is an IPv4 or IPv6 socket
// with both endpoints formatted.
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "collector/kernel.h"

namespace {

void Fail(const char* what) {
  std::fprintf(stderr, "fuzz_diag: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<closeaudit::KernelSocket> rows;
  bool done = false;
  closeaudit::ParseDiagMessages(in, &rows, &done).IgnoreError();
  for (const closeaudit::KernelSocket& s : rows) {
    if (s.family != AF_INET && s.family != AF_INET6) {
      Fail("row of another family");
    }
    if (s.local.empty() || s.peer.empty()) Fail("row without endpoints");
    closeaudit::TcpStateName(s.state);
  }
  return 0;
}
