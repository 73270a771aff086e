// Fuzzes the parsers of the kernel's sock_diag replies, on the input as one
// recv() buffer of netlink messages: ParseDiagMessages() (a dump's) and
// ParseLookupAnswers() (the answers to single-socket requests, the batch's
// sequence numbers 1 to 64).
//
// Invariants: never a crash; every row either returns is an IPv4 or IPv6
// socket with both endpoints formatted; no more lookup answers are counted
// than there are messages.
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
  size_t answered = 0;
  closeaudit::ParseLookupAnswers(in, 1, 64, &rows, &answered).IgnoreError();
  if (answered > size / 16) Fail("more answers than messages");
  for (const closeaudit::KernelSocket& s : rows) {
    if (s.family != AF_INET && s.family != AF_INET6) {
      Fail("row of another family");
    }
    if (s.local.empty() || s.peer.empty()) Fail("row without endpoints");
    closeaudit::TcpStateName(s.state);
  }
  return 0;
}
