// What tracking an fd costs the program in memory: opens N sockets and prints
// how much its resident set grew, in bytes, split into private memory (the
// library's fd table lives there) and shared memory (its event ring, a memfd
// of fixed size that the collector maps too). `scripts/bench` runs it plain
// and under the library; the difference in private growth over N is the
// library's bytes per fd.
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

struct Resident {
  long private_bytes;
  long shared_bytes;  // file-backed and shared memory
};

Resident Measure() {
  long total = 0, resident = 0, shared = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr || std::fscanf(f, "%ld %ld %ld", &total, &resident,
                                  &shared) != 3) {
    std::perror("/proc/self/statm");
    std::exit(1);
  }
  std::fclose(f);
  long page = sysconf(_SC_PAGESIZE);
  return {(resident - shared) * page, shared * page};
}

}  // namespace

int main(int argc, char** argv) {
  long n = argc > 1 ? std::atol(argv[1]) : 50000;
  // As many as the hard limit allows, with room for the library's own fds.
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_max != RLIM_INFINITY &&
      static_cast<rlim_t>(n + 64) > lim.rlim_max) {
    n = static_cast<long>(lim.rlim_max) - 64;
  }
  if (lim.rlim_cur < static_cast<rlim_t>(n + 64)) {
    lim.rlim_cur = static_cast<rlim_t>(n + 64);
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
      std::perror("setrlimit RLIMIT_NOFILE");
      return 1;
    }
  }
  std::vector<int> fds;
  fds.reserve(static_cast<size_t>(n));
  // One socket first, so that the library's set-up is in the baseline.
  int first = socket(AF_INET, SOCK_STREAM, 0);
  Resident before = Measure();
  for (long i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      std::perror("socket");
      return 1;
    }
    fds.push_back(fd);
  }
  Resident after = Measure();
  std::printf("{\"sockets\": %ld, \"private_growth_bytes\": %ld, "
              "\"shared_growth_bytes\": %ld}\n",
              n, after.private_bytes - before.private_bytes,
              after.shared_bytes - before.shared_bytes);
  for (int fd : fds) close(fd);
  close(first);
  return 0;
}
