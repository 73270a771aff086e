/* A program that makes one TCP socket and exits 0: the unauditable-binary
 * cases build it statically, make it setuid, or label it as Go. */
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 1;
  return close(fd) == 0 ? 0 : 1;
}
