/* A program for start_bench: exits at once, or ("socket") first makes one
 * TCP socket and closes it, which starts the library's ring and loads
 * libunwind for the two stacks. */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "socket") == 0) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || close(fd) != 0) return 1;
  }
  return 0;
}
