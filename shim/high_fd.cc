#include "shim/high_fd.h"

#include <fcntl.h>
#include <sys/resource.h>

#include "shim/hooks.h"

namespace closeaudit::shim {

int MoveFdHigh(int fd) {
  if (fd < 0) return fd;
  rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return fd;
  int high = -1;
  // Best: just above the soft limit, where the program can never be handed a
  // number (fds above it stay valid). That takes briefly raising the soft
  // limit to place it there; the kernel's fd table grows only that far.
  if (lim.rlim_max == RLIM_INFINITY || lim.rlim_max >= lim.rlim_cur + 32) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_cur + 32;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      high = fcntl(fd, F_DUPFD_CLOEXEC, static_cast<int>(lim.rlim_cur + 8));
      setrlimit(RLIMIT_NOFILE, &lim);
    }
  }
  // Otherwise the top of the program's range, the numbers it reaches last.
  if (high < 0 && lim.rlim_cur > 16) {
    high = fcntl(fd, F_DUPFD_CLOEXEC, static_cast<int>(lim.rlim_cur - 8));
  }
  if (high < 0) return fd;
  Real().close(fd);
  return high;
}

}  // namespace closeaudit::shim
