// The libc symbols libcloseaudit.so interposes. Nothing else is exported (see
// libcloseaudit.map).
//
// Each wrapper calls the real function first and returns exactly what it
// returned, with errno exactly as it left it; what the call means for the
// audit is the core's business (shim/recorder.h), and the core saves and
// restores errno around its own work.
// Both fcntl and fcntl64 are defined below; with 64-bit file offsets the
// headers would rename the first into the second.
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim/hooks.h"
#include "shim/recorder.h"

using closeaudit::shim::Real;
namespace core = closeaudit::shim;

namespace {

__attribute__((constructor)) void CloseauditStart() {
  core::StartRecording();
}

size_t IovBytes(const iovec* iov, int count) {
  size_t total = 0;
  for (int i = 0; iov && i < count; ++i) total += iov[i].iov_len;
  return total;
}

bool IsDupCommand(int cmd) { return cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC; }

}  // namespace

#define CA_EXPORT extern "C" __attribute__((visibility("default")))

CA_EXPORT int socket(int domain, int type, int protocol) {
  int fd = Real().socket(domain, type, protocol);
  if (fd >= 0) core::OnSocket(fd, domain, type);
  return fd;
}

CA_EXPORT int socketpair(int domain, int type, int protocol, int sv[2]) {
  int r = Real().socketpair(domain, type, protocol, sv);
  if (r == 0) core::OnSocketpair(sv, domain, type);
  return r;
}

CA_EXPORT int accept(int fd, sockaddr* addr, socklen_t* len) {
  int r = Real().accept(fd, addr, len);
  if (r >= 0) core::OnAccept(r, fd, 0);
  return r;
}

CA_EXPORT int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (!Real().accept4) {
    errno = ENOSYS;
    return -1;
  }
  int r = Real().accept4(fd, addr, len, flags);
  if (r >= 0) core::OnAccept(r, fd, flags);
  return r;
}

CA_EXPORT int connect(int fd, const sockaddr* addr, socklen_t len) {
  int r = Real().connect(fd, addr, len);
  if (r == 0 || errno == EINPROGRESS) core::OnConnect(fd, r, r ? errno : 0);
  return r;
}

CA_EXPORT int listen(int fd, int backlog) {
  int r = Real().listen(fd, backlog);
  if (r == 0) core::OnListen(fd);
  return r;
}

CA_EXPORT int close(int fd) {
  core::CloseClaim claim = core::ClaimClose(fd);
  int r = Real().close(fd);
  core::FinishClose(fd, claim, r, r ? errno : 0);
  return r;
}

CA_EXPORT int shutdown(int fd, int how) {
  int r = Real().shutdown(fd, how);
  core::OnShutdown(fd, how, r, r ? errno : 0);
  return r;
}

CA_EXPORT int setsockopt(int fd, int level, int name, const void* value,
                         socklen_t len) {
  int r = Real().setsockopt(fd, level, name, value, len);
  if (r == 0) core::OnSetsockopt(fd, level, name, value, len);
  return r;
}

CA_EXPORT int dup(int oldfd) {
  int r = Real().dup(oldfd);
  if (r >= 0) core::OnDup(oldfd, r, false);
  return r;
}

CA_EXPORT int dup2(int oldfd, int newfd) {
  int r = Real().dup2(oldfd, newfd);
  if (r >= 0) core::OnDup2(oldfd, r, false);
  return r;
}

CA_EXPORT int dup3(int oldfd, int newfd, int flags) {
  if (!Real().dup3) {
    errno = ENOSYS;
    return -1;
  }
  int r = Real().dup3(oldfd, newfd, flags);
  if (r >= 0) core::OnDup2(oldfd, r, (flags & O_CLOEXEC) != 0);
  return r;
}

// fcntl's third argument is an int or a pointer depending on cmd; on x86-64
// both travel in one 64-bit register, so passing it on as a long is exact.
CA_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  long arg = va_arg(ap, long);
  va_end(ap);
  int r = Real().fcntl(fd, cmd, arg);
  if (r >= 0 && IsDupCommand(cmd)) {
    core::OnDup(fd, r, cmd == F_DUPFD_CLOEXEC);
  }
  return r;
}

CA_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  long arg = va_arg(ap, long);
  va_end(ap);
  auto real = Real().fcntl64 ? Real().fcntl64 : Real().fcntl;
  int r = real(fd, cmd, arg);
  if (r >= 0 && IsDupCommand(cmd)) {
    core::OnDup(fd, r, cmd == F_DUPFD_CLOEXEC);
  }
  return r;
}

CA_EXPORT ssize_t read(int fd, void* buf, size_t n) {
  ssize_t r = Real().read(fd, buf, n);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  ssize_t r = Real().read_chk ? Real().read_chk(fd, buf, n, buflen)
                              : Real().read(fd, buf, n);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t readv(int fd, const iovec* iov, int count) {
  ssize_t r = Real().readv(fd, iov, count);
  if (r >= 0) core::OnRead(fd, r, IovBytes(iov, count), __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t recv(int fd, void* buf, size_t n, int flags) {
  ssize_t r = Real().recv(fd, buf, n, flags);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen,
                             int flags) {
  ssize_t r = Real().recv_chk ? Real().recv_chk(fd, buf, n, buflen, flags)
                              : Real().recv(fd, buf, n, flags);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t recvfrom(int fd, void* buf, size_t n, int flags,
                           sockaddr* addr, socklen_t* len) {
  ssize_t r = Real().recvfrom(fd, buf, n, flags, addr, len);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen,
                                 int flags, sockaddr* addr, socklen_t* len) {
  ssize_t r = Real().recvfrom_chk
                  ? Real().recvfrom_chk(fd, buf, n, buflen, flags, addr, len)
                  : Real().recvfrom(fd, buf, n, flags, addr, len);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  ssize_t r = Real().recvmsg(fd, msg, flags);
  if (r >= 0) {
    core::OnRead(fd, r, msg ? IovBytes(msg->msg_iov, static_cast<int>(msg->msg_iovlen)) : 0,
                 __builtin_return_address(0));
  }
  return r;
}

CA_EXPORT pid_t fork() {
  uint32_t stack = core::ForkPrepare();
  pid_t pid = Real().fork();
  if (pid == 0) {
    core::ForkChild();
  } else if (pid > 0) {
    core::ForkParent(pid, stack);
  }
  return pid;
}
