#include "collector/demo.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <cstring>
#include <thread>

namespace closeaudit {
namespace {

int ConnectLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void Order(int port, const char* request) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return;
  (void)!::write(fd, request, strlen(request));
  char reply[128];
  ssize_t n = ::read(fd, reply, sizeof(reply) - 1);
  if (n > 0) {
    reply[n] = '\0';
    printf("  client: %.*s -> %s", static_cast<int>(strcspn(request, "\n")),
           request, reply);
  }
  ::close(fd);
}

}  // namespace

void DriveDemoClients(const std::string& port_file, uint64_t grace_ns) {
  int port = 0;
  for (int i = 0; i < 500 && port == 0; ++i) {
    std::ifstream in(port_file);
    if (!(in >> port)) {
      port = 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "closeaudit demo: the server never announced its port\n");
    return;
  }
  Order(port, "ORDER coffee 2\n");
  for (int i = 0; i < 3; ++i) {
    // A health check: connect, then hang up without a request.
    int fd = ConnectLoopback(port);
    if (fd >= 0) ::close(fd);
  }
  printf("  client: 3 health checks connected and hung up\n");
  Order(port, "ORDER tea 1\n");
  Order(port, "STATUS 1000\n");
  fflush(stdout);
  // Let the leaked sockets outlive the grace period, so they count.
  std::this_thread::sleep_for(std::chrono::nanoseconds(grace_ns) +
                              std::chrono::milliseconds(700));
}

}  // namespace closeaudit
