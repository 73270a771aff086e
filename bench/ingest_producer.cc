// A synthetic traced process for measuring the collector: it registers a ring
// the way libcloseaudit.so does and pushes events into it as fast as it can.
//   ingest_producer events N     N close/socket events on a few sockets
//   ingest_producer live N       N distinct sockets created and kept open,
//                                then waits for SIGTERM (collector memory)
// Run it under `closeaudit run` (which provides the collector) without the
// library preloaded: it is its own shim.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/wire.h"
#include "shim/ring_writer.h"
#include "shim/transport.h"

using closeaudit::shim::RingWriter;
namespace wire = closeaudit::wire;

namespace {

uint64_t Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

// Pushes, retrying while the ring is full: the producer measures the
// collector, so it waits for it instead of dropping.
void PushAll(RingWriter& ring, wire::Event& e) {
  while (!ring.Push(e)) {
    timespec ts{0, 20000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (strcmp(argv[1], "events") && strcmp(argv[1], "live"))) {
    fprintf(stderr, "usage: %s events|live N\n", argv[0]);
    return 2;
  }
  long n = atol(argv[2]);
  closeaudit::shim::InitTransport();
  RingWriter ring;
  if (!ring.Create(1u << 16, 1u << 20)) {
    perror("ring");
    return 1;
  }
  if (!closeaudit::shim::Register(ring, 0)) {
    fprintf(stderr, "ingest_producer: no collector (run it under closeaudit run)\n");
    return 1;
  }
  wire::Event e{};
  e.flags = wire::kFlagStream | wire::kFlagInet;
  e.state = wire::kStateStream | wire::kStateInet | wire::kStateConnected;
  e.tid = static_cast<uint32_t>(getpid());
  uint64_t start = Now();
  if (strcmp(argv[1], "events") == 0) {
    // A realistic mix for a busy server: accept, close, over 1000 live fds.
    for (long i = 0; i < n; ++i) {
      bool open = (i & 1) == 0;
      e.type = open ? wire::EventType::kAccept : wire::EventType::kClose;
      e.fd = static_cast<int32_t>(3 + (i / 2) % 1000);
      e.ident.cookie = 1 + static_cast<uint64_t>(i / 2);
      e.ident.inode = e.ident.cookie;
      e.mono_ns = start + static_cast<uint64_t>(i);
      PushAll(ring, e);
    }
    printf("pushed=%ld seconds=%.3f\n", n, (Now() - start) / 1e9);
    return 0;
  }
  for (long i = 0; i < n; ++i) {
    e.type = wire::EventType::kAccept;
    e.fd = static_cast<int32_t>(3 + i);
    e.ident.cookie = 1 + static_cast<uint64_t>(i);
    e.ident.inode = e.ident.cookie;
    e.mono_ns = Now();
    PushAll(ring, e);
  }
  printf("live=%ld\n", n);
  fflush(stdout);
  pause();  // until closeaudit forwards SIGTERM
  return 0;
}
