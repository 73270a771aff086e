/* E2E test program: the EOF read from JIT-compiled code.
 *
 * Usage: jit_reader DONE_FILE
 *
 * Copies a small x86-64 function into anonymous executable memory, the way
 * a JIT compiler does, and names it in /tmp/perf-PID.map the way V8, the
 * JVM and CPython do ("START SIZE NAME"). The function keeps a frame
 * pointer and calls recv() for its caller. The program connects to itself
 * twice, closes the client side, reads the EOF through the JIT function
 * (E2E:jit_call) and never closes: two connections left in CLOSE_WAIT
 * whose eof_seen stack has a frame in no module at all. After 2 s (past the
 * driver's 1 s grace period) it writes DONE_FILE, removes its perf map and
 * exits 0.
 */
#include "client.h"

#include <sys/mman.h>

typedef ssize_t (*jit_recv_fn)(int fd, void *buf, size_t n, int flags,
                               void *target);

/* push rbp; mov rbp, rsp; call r8; pop rbp; ret */
static const unsigned char kCode[] = {0x55, 0x48, 0x89, 0xe5, 0x41,
                                      0xff, 0xd0, 0x5d, 0xc3};

static jit_recv_fn compile(char *map_path, size_t map_path_size) {
  void *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) e2e_die("mmap");
  memcpy((char *)mem + 64, kCode, sizeof kCode);
  if (mprotect(mem, 4096, PROT_READ | PROT_EXEC) != 0) e2e_die("mprotect");
  snprintf(map_path, map_path_size, "/tmp/perf-%d.map", (int)getpid());
  FILE *map = fopen(map_path, "w");
  if (map == NULL) e2e_die("fopen %s", map_path);
  fprintf(map, "%lx %zx jit_read_request\n", (unsigned long)mem + 64,
          sizeof kCode);
  fclose(map);
  return (jit_recv_fn)((char *)mem + 64);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: jit_reader DONE_FILE\n");
    return 2;
  }
  char map_path[64];
  jit_recv_fn jit_recv = compile(map_path, sizeof map_path);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = e2e_loopback_addr(0);
  socklen_t len = sizeof addr;
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      listen(listener, 4) != 0 ||
      getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
    e2e_die("listen on loopback");
  }
  for (int i = 0; i < 2; ++i) {
    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0 || connect(client, (struct sockaddr *)&addr, sizeof addr) != 0) {
      e2e_die("connect");
    }
    int server = accept(listener, NULL, NULL);
    if (server < 0) e2e_die("accept");
    close(client);
    char buf[16];
    ssize_t n = jit_recv(server, buf, sizeof buf, 0, (void *)recv); /* E2E:jit_call */
    if (n != 0) e2e_die("recv through the JIT function returned %zd", n);
  }
  sleep(2);
  e2e_write_file_atomic(argv[1], "done\n");
  unlink(map_path);
  return 0;
}
