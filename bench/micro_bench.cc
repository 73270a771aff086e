// Micro-benchmarks of the calls libcloseaudit.so wraps. The same binary runs
// twice in one `scripts/bench` run, once plain and once under the library (with
// a collector draining), and the script reports the difference per call.
// Nothing here knows about the shim: it measures what a program sees.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <benchmark/benchmark.h>

namespace {

// A recv that returns data, on a socket the library tracks: the hot path.
void BM_RecvData(benchmark::State& state) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) std::abort();
  int size = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  std::vector<char> fill(64 * 1024, 'x');
  size_t available = 0;
  char byte;
  for (auto _ : state) {
    if (available == 0) {
      state.PauseTiming();
      ssize_t n = send(sv[0], fill.data(), fill.size(), 0);
      if (n <= 0) std::abort();
      available = static_cast<size_t>(n);
      state.ResumeTiming();
    }
    if (recv(sv[1], &byte, 1, 0) != 1) std::abort();
    --available;
  }
  close(sv[0]);
  close(sv[1]);
}
BENCHMARK(BM_RecvData);

// A recv on an empty non-blocking socket: EAGAIN.
void BM_RecvEagain(benchmark::State& state) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) std::abort();
  char byte;
  for (auto _ : state) {
    benchmark::DoNotOptimize(recv(sv[1], &byte, 1, 0));
  }
  close(sv[0]);
  close(sv[1]);
}
BENCHMARK(BM_RecvEagain);

// A listening Unix stream socket under an abstract name unique to this
// process and `tag`; its address goes to *addr and *len.
int UnixListener(const char* tag, sockaddr_un* addr, socklen_t* len) {
  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  *addr = sockaddr_un{};
  addr->sun_family = AF_UNIX;
  snprintf(addr->sun_path + 1, sizeof(addr->sun_path) - 1,
           "closeaudit-bench-%s-%d", tag, getpid());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 +
                                strlen(addr->sun_path + 1));
  if (bind(listener, reinterpret_cast<sockaddr*>(addr), *len) != 0 ||
      listen(listener, 128) != 0) {
    std::abort();
  }
  return listener;
}

// close(2) without libc: the library interposes close(), and
// syscall(SYS_close) as well.
void RawClose(int fd) {
  long result;
  __asm__ volatile("syscall"
                   : "=a"(result)
                   : "a"(long{SYS_close}), "D"(long{fd})
                   : "rcx", "r11", "memory");
  (void)result;
}

// One connection's whole life on the server side, as a server sees it:
// accept, read the peer's EOF, close: three stacks under the library. The
// client is in the loop too. With `raw_client` its socket, connect and close
// are direct system calls that no library sees, as for a server whose clients
// are elsewhere; otherwise they go through libc, and the library takes five
// stacks. Unix stream sockets keep the kernel's part small and leave no
// TIME_WAIT behind.
void Lifecycle(benchmark::State& state, bool raw_client) {
  sockaddr_un addr;
  socklen_t len;
  int listener = UnixListener(raw_client ? "raw" : "libc", &addr, &len);
  char byte;
  for (auto _ : state) {
    int client = raw_client ? static_cast<int>(syscall(
                                  SYS_socket, AF_UNIX, SOCK_STREAM, 0))
                            : socket(AF_UNIX, SOCK_STREAM, 0);
    int rc = raw_client ? static_cast<int>(syscall(SYS_connect, client, &addr,
                                                   len))
                        : connect(client, reinterpret_cast<sockaddr*>(&addr),
                                  len);
    if (rc != 0) std::abort();
    int server = accept(listener, nullptr, nullptr);
    if (raw_client) {
      RawClose(client);
    } else {
      close(client);
    }
    if (recv(server, &byte, 1, 0) != 0) std::abort();
    close(server);
  }
  close(listener);
}

void BM_AcceptEofClose(benchmark::State& state) { Lifecycle(state, false); }
BENCHMARK(BM_AcceptEofClose);

void BM_ServerLifecycle(benchmark::State& state) { Lifecycle(state, true); }
BENCHMARK(BM_ServerLifecycle);

// The server's lifecycle from 60 frames deep, as under a framework: each of
// its three stacks now holds 60-odd frames (the library keeps up to 64),
// which a capture from a known call site re-reads one by one.
__attribute__((noinline)) void Deep(benchmark::State& state, int depth) {
  if (depth == 0) {
    Lifecycle(state, true);
    return;
  }
  Deep(state, depth - 1);
  benchmark::DoNotOptimize(depth);  // no tail call: keep every frame
}

void BM_DeepServerLifecycle(benchmark::State& state) { Deep(state, 60); }
BENCHMARK(BM_DeepServerLifecycle);

void BM_DupClose(benchmark::State& state) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  for (auto _ : state) {
    int d = dup(fd);
    close(d);
  }
  close(fd);
}
BENCHMARK(BM_DupClose);

// fork() of a process that holds 1000 tracked sockets; the child exits at
// once. The library's part is the child's new ring and its snapshot.
void BM_ForkWith1000Sockets(benchmark::State& state) {
  std::vector<int> fds;
  for (int i = 0; i < 1000; ++i) fds.push_back(socket(AF_INET, SOCK_STREAM, 0));
  for (auto _ : state) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    int status;
    waitpid(pid, &status, 0);
  }
  for (int fd : fds) close(fd);
}
BENCHMARK(BM_ForkWith1000Sockets)->Iterations(200);

}  // namespace

BENCHMARK_MAIN();
