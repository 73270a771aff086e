#include "shim/high_fd.h"

#include <fcntl.h>
#include <sys/resource.h>

#include "shim/hooks.h"

namespace closeaudit::shim {

int MoveFdHigh(int fd) {
  if (fd < 0) return fd;
  rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return fd;
  rlim_t floor = lim.rlim_cur > 1024 + 16 ? 1024 : lim.rlim_cur / 2;
  if (floor <= 3 || static_cast<rlim_t>(fd) >= floor) return fd;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, static_cast<int>(floor));
  if (high < 0) return fd;
  Real().close(fd);
  return high;
}

}  // namespace closeaudit::shim
