/* For the collector-restart test: holds three sockets, waits for GO_FILE to
 * appear (the test kills the collector and starts another meanwhile), then
 * makes five more and holds all of them until SIGTERM.
 * Usage: restart_probe READY_FILE GO_FILE */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static void touch(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s READY_FILE GO_FILE\n", argv[0]);
    return 2;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
  if (socket(AF_INET, SOCK_STREAM, 0) < 0) return 1;
  touch(argv[1]);
  while (access(argv[2], F_OK) != 0) usleep(20 * 1000);
  for (int i = 0; i < 5; i++) {
    if (socket(AF_INET, SOCK_STREAM, 0) < 0) return 1;
  }
  touch(argv[1]);  /* the READY_FILE again: all eight made */
  for (;;) pause();
}
