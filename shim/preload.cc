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
#include <alloca.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim/hooks.h"
#include "shim/layout.h"
#include "shim/recorder.h"
#include "shim/stacks.h"

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
  core::EnsureScanned();
  int fd = Real().socket(domain, type, protocol);
  if (fd >= 0) core::OnSocket(fd, domain, type);
  return fd;
}

CA_EXPORT int socketpair(int domain, int type, int protocol, int sv[2]) {
  core::EnsureScanned();
  int r = Real().socketpair(domain, type, protocol, sv);
  if (r == 0) core::OnSocketpair(sv, domain, type);
  return r;
}

CA_EXPORT int accept(int fd, sockaddr* addr, socklen_t* len) {
  core::EnsureScanned();
  core::AcceptPeer peer(addr, len);
  int r = Real().accept(fd, peer.addr(), peer.len());
  if (r >= 0) core::OnAccept(r, fd, 0, peer);
  return r;
}

CA_EXPORT int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  core::EnsureScanned();
  if (!Real().accept4) {
    errno = ENOSYS;
    return -1;
  }
  core::AcceptPeer peer(addr, len);
  int r = Real().accept4(fd, peer.addr(), peer.len(), flags);
  if (r >= 0) core::OnAccept(r, fd, flags, peer);
  return r;
}

CA_EXPORT int connect(int fd, const sockaddr* addr, socklen_t len) {
  core::EnsureScanned();
  int r = Real().connect(fd, addr, len);
  if (r == 0 || errno == EINPROGRESS) core::OnConnect(fd, r, r ? errno : 0);
  return r;
}

CA_EXPORT int listen(int fd, int backlog) {
  core::EnsureScanned();
  int r = Real().listen(fd, backlog);
  if (r == 0) core::OnListen(fd);
  return r;
}

CA_EXPORT int close(int fd) {
  // libunwind closing descriptors of its own is none of the program's doing.
  if (core::t_unwinding > 0 && core::InUnwinder(__builtin_return_address(0))) {
    return core::IsUnwinderPipe(fd) ? 0 : Real().close(fd);
  }
  core::EnsureScanned();
  core::CloseClaim claim = core::ClaimClose(fd);
  int r = Real().close(fd);
  core::FinishClose(fd, claim, r, r ? errno : 0);
  return r;
}

CA_EXPORT int shutdown(int fd, int how) {
  core::EnsureScanned();
  int r = Real().shutdown(fd, how);
  core::OnShutdown(fd, how, r, r ? errno : 0);
  return r;
}

CA_EXPORT int setsockopt(int fd, int level, int name, const void* value,
                         socklen_t len) {
  core::EnsureScanned();
  int r = Real().setsockopt(fd, level, name, value, len);
  if (r == 0) core::OnSetsockopt(fd, level, name, value, len);
  return r;
}

CA_EXPORT int dup(int oldfd) {
  core::EnsureScanned();
  int r = Real().dup(oldfd);
  if (r >= 0) core::OnDup(oldfd, r, false);
  return r;
}

CA_EXPORT int dup2(int oldfd, int newfd) {
  core::EnsureScanned();
  int r = Real().dup2(oldfd, newfd);
  if (r >= 0) core::OnDup2(oldfd, r, false);
  return r;
}

CA_EXPORT int dup3(int oldfd, int newfd, int flags) {
  core::EnsureScanned();
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
  core::EnsureScanned();
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
  core::EnsureScanned();
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
  if (__builtin_expect(core::IsUnwinderPipe(fd), 0) && core::t_unwinding > 0 &&
      core::InUnwinder(__builtin_return_address(0))) {
    errno = EAGAIN;  // the emulated pipe never holds a byte to read
    return -1;
  }
  core::EnsureScanned();
  ssize_t r = Real().read(fd, buf, n);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  core::EnsureScanned();
  ssize_t r = Real().read_chk ? Real().read_chk(fd, buf, n, buflen)
                              : Real().read(fd, buf, n);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t readv(int fd, const iovec* iov, int count) {
  core::EnsureScanned();
  ssize_t r = Real().readv(fd, iov, count);
  if (r >= 0) core::OnRead(fd, r, IovBytes(iov, count), __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t recv(int fd, void* buf, size_t n, int flags) {
  core::EnsureScanned();
  ssize_t r = Real().recv(fd, buf, n, flags);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen,
                             int flags) {
  core::EnsureScanned();
  ssize_t r = Real().recv_chk ? Real().recv_chk(fd, buf, n, buflen, flags)
                              : Real().recv(fd, buf, n, flags);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t recvfrom(int fd, void* buf, size_t n, int flags,
                           sockaddr* addr, socklen_t* len) {
  core::EnsureScanned();
  ssize_t r = Real().recvfrom(fd, buf, n, flags, addr, len);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen,
                                 int flags, sockaddr* addr, socklen_t* len) {
  core::EnsureScanned();
  ssize_t r = Real().recvfrom_chk
                  ? Real().recvfrom_chk(fd, buf, n, buflen, flags, addr, len)
                  : Real().recvfrom(fd, buf, n, flags, addr, len);
  core::OnRead(fd, r, n, __builtin_return_address(0));
  return r;
}

CA_EXPORT ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  core::EnsureScanned();
  ssize_t r = Real().recvmsg(fd, msg, flags);
  if (r >= 0 && msg && msg->msg_controllen > 0) core::ReceivedFds(msg, flags);
  if (r >= 0) {
    core::OnRead(fd, r, msg ? IovBytes(msg->msg_iov, static_cast<int>(msg->msg_iovlen)) : 0,
                 __builtin_return_address(0));
  }
  return r;
}

// libunwind's validation pipe is emulated (see IsUnwinderPipe in stacks.h):
// the pipe libunwind asks for while the shim unwinds never exists.
CA_EXPORT int pipe2(int fds[2], int flags) {
  if (core::t_unwinding > 0 && fds != nullptr &&
      core::InUnwinder(__builtin_return_address(0))) {
    fds[0] = core::kUnwinderPipeRead;
    fds[1] = core::kUnwinderPipeWrite;
    return 0;
  }
  return Real().pipe2(fds, flags);
}

CA_EXPORT int pipe(int fds[2]) { return pipe2(fds, 0); }

CA_EXPORT CA_CHILD_PATH pid_t fork() {
  core::EnsureScanned();
  core::ForkToken token = core::ForkPrepare();
  core::PauseWalksForFork();
  pid_t pid = Real().fork();
  core::ResumeWalksAfterFork(pid == 0);
  if (pid == 0) {
    core::ForkChild(core::ForkKind::kFork);
  } else {
    core::ForkParent(pid, token, core::ForkKind::kFork);
  }
  return pid;
}

// _Fork runs no atfork handlers, but the child still has its own process:
// it needs its own ring like any fork child.
CA_EXPORT pid_t _Fork() {
  core::EnsureScanned();
  if (!Real().underscore_fork) {
    errno = ENOSYS;
    return -1;
  }
  core::ForkToken token = core::ForkPrepare();
  core::PauseWalksForFork();
  pid_t pid = Real().underscore_fork();
  core::ResumeWalksAfterFork(pid == 0);
  if (pid == 0) {
    core::ForkChild(core::ForkKind::kUnderscoreFork);
  } else {
    core::ForkParent(pid, token, core::ForkKind::kUnderscoreFork);
  }
  return pid;
}

// vfork itself is in vfork_x86_64.S: a C wrapper would return into the
// child through a frame the parent still needs.

CA_EXPORT int posix_spawn(pid_t* pid, const char* path,
                          const posix_spawn_file_actions_t* actions,
                          const posix_spawnattr_t* attr, char* const argv[],
                          char* const envp[]) {
  core::EnsureScanned();
  core::ForkToken token = core::ForkPrepare(/*exec_child=*/true);
  pid_t child = -1;
  int r = Real().posix_spawn(&child, path, actions, attr, argv, envp);
  core::ForkParent(r == 0 ? child : -1, token, core::ForkKind::kSpawn);
  if (pid && r == 0) *pid = child;
  return r;
}

CA_EXPORT int posix_spawnp(pid_t* pid, const char* file,
                           const posix_spawn_file_actions_t* actions,
                           const posix_spawnattr_t* attr, char* const argv[],
                           char* const envp[]) {
  core::EnsureScanned();
  core::ForkToken token = core::ForkPrepare(/*exec_child=*/true);
  pid_t child = -1;
  int r = Real().posix_spawnp(&child, file, actions, attr, argv, envp);
  core::ForkParent(r == 0 ? child : -1, token, core::ForkKind::kSpawn);
  if (pid && r == 0) *pid = child;
  return r;
}

// daemon() forks inside libc, where no wrapper sees it, and only the child
// returns.
CA_EXPORT int daemon(int nochdir, int noclose) {
  core::EnsureScanned();
  if (!Real().daemon) {
    errno = ENOSYS;
    return -1;
  }
  core::ForkToken token = core::ForkPrepare();
  int r = Real().daemon(nochdir, noclose);
  if (r == 0) {
    core::ForkChild(core::ForkKind::kDaemon);
  } else {
    core::ForkParent(-1, token, core::ForkKind::kDaemon);  // it failed
  }
  return r;
}

namespace {

// What a clone() child without CLONE_VM runs first. The record lives on the
// parent's stack; the child sees its own copy of that stack.
struct CloneStart {
  int (*fn)(void*);
  void* arg;
};

int CloneTrampoline(void* p) {
  const CloneStart* start = static_cast<const CloneStart*>(p);
  core::ForkChild(core::ForkKind::kClone);
  return start->fn(start->arg);
}

}  // namespace

CA_EXPORT int clone(int (*fn)(void*), void* stack, int flags, void* arg, ...) {
  va_list ap;
  va_start(ap, arg);
  void* parent_tid = va_arg(ap, void*);
  void* tls = va_arg(ap, void*);
  void* child_tid = va_arg(ap, void*);
  va_end(ap);
  if (flags & CLONE_VM) {
    // A thread, or a vfork-like child sharing our memory: nothing to do.
    return Real().clone(fn, stack, flags, arg, parent_tid, tls, child_tid);
  }
  core::EnsureScanned();
  core::ForkToken token = core::ForkPrepare();
  CloneStart start{fn, arg};
  int pid = Real().clone(CloneTrampoline, stack, flags, &start, parent_tid,
                         tls, child_tid);
  core::ForkParent(pid, token, core::ForkKind::kClone);
  return pid;
}

CA_EXPORT CA_CHILD_PATH int execve(const char* path, char* const argv[],
                                   char* const envp[]) {
  core::ExecMark mark = core::OnExec();
  int r = Real().execve(path, argv, envp);
  core::AfterFailedExec(mark);
  return r;
}

CA_EXPORT int execveat(int dirfd, const char* path, char* const argv[],
                       char* const envp[], int flags) {
  if (!Real().execveat) {
    errno = ENOSYS;
    return -1;
  }
  core::ExecMark mark = core::OnExec();
  int r = Real().execveat(dirfd, path, argv, envp, flags);
  core::AfterFailedExec(mark);
  return r;
}

CA_EXPORT int fexecve(int fd, char* const argv[], char* const envp[]) {
  if (!Real().fexecve) {
    errno = ENOSYS;
    return -1;
  }
  core::ExecMark mark = core::OnExec();
  int r = Real().fexecve(fd, argv, envp);
  core::AfterFailedExec(mark);
  return r;
}

CA_EXPORT int execv(const char* path, char* const argv[]) {
  core::ExecMark mark = core::OnExec();
  int r = Real().execv(path, argv);
  core::AfterFailedExec(mark);
  return r;
}

CA_EXPORT int execvp(const char* file, char* const argv[]) {
  core::ExecMark mark = core::OnExec();
  int r = Real().execvp(file, argv);
  core::AfterFailedExec(mark);
  return r;
}

CA_EXPORT int execvpe(const char* file, char* const argv[],
                      char* const envp[]) {
  if (!Real().execvpe) {
    errno = ENOSYS;
    return -1;
  }
  core::ExecMark mark = core::OnExec();
  int r = Real().execvpe(file, argv, envp);
  core::AfterFailedExec(mark);
  return r;
}

// The execl family calls libc's execve internally, out of our reach, so each
// is rebuilt here on its execv counterpart. The argument vector lives on the
// stack, as in libc (no heap: the child may be anything).
#define CA_COLLECT_ARGS(first, last_named, argv, envp_out)               \
  size_t argc = 1;                                                      \
  {                                                                     \
    va_list count;                                                      \
    va_start(count, last_named);                                        \
    while (va_arg(count, const char*) != nullptr) ++argc;               \
    va_end(count);                                                      \
  }                                                                     \
  const char** argv =                                                   \
      static_cast<const char**>(alloca((argc + 1) * sizeof(char*)));    \
  argv[0] = first;                                                      \
  {                                                                     \
    va_list ap;                                                         \
    va_start(ap, last_named);                                           \
    for (size_t i = 1; i <= argc; ++i) argv[i] = va_arg(ap, const char*); \
    envp_out = va_arg(ap, char* const*);                                \
    va_end(ap);                                                         \
  }

CA_EXPORT int execl(const char* path, const char* arg, ...) {
  char* const* unused_env = nullptr;
  CA_COLLECT_ARGS(arg, arg, argv, unused_env);
  (void)unused_env;
  core::ExecMark mark = core::OnExec();
  int r = Real().execv(path, const_cast<char* const*>(argv));
  core::AfterFailedExec(mark);
  return r;
}

CA_EXPORT int execlp(const char* file, const char* arg, ...) {
  char* const* unused_env = nullptr;
  CA_COLLECT_ARGS(arg, arg, argv, unused_env);
  (void)unused_env;
  core::ExecMark mark = core::OnExec();
  int r = Real().execvp(file, const_cast<char* const*>(argv));
  core::AfterFailedExec(mark);
  return r;
}

CA_EXPORT int execle(const char* path, const char* arg, ...) {
  char* const* envp = nullptr;
  CA_COLLECT_ARGS(arg, arg, argv, envp);
  core::ExecMark mark = core::OnExec();
  int r = Real().execve(path, const_cast<char* const*>(argv), envp);
  core::AfterFailedExec(mark);
  return r;
}
#undef CA_COLLECT_ARGS

CA_EXPORT int close_range(unsigned first, unsigned last, int flags) {
  core::EnsureScanned();
  if (!Real().close_range) {
    errno = ENOSYS;
    return -1;
  }
  core::BeforeCloseRange(first, last, static_cast<unsigned>(flags));
  return Real().close_range(first, last, flags);
}

CA_EXPORT void closefrom(int lowfd) {
  core::EnsureScanned();
  if (lowfd >= 0) core::BeforeCloseRange(static_cast<unsigned>(lowfd), ~0u, 0);
  if (Real().closefrom) {
    Real().closefrom(lowfd);
  } else if (Real().close_range) {
    Real().close_range(static_cast<unsigned>(lowfd), ~0u, 0);
  }
}

CA_EXPORT int fclose(FILE* stream) {
  core::EnsureScanned();
  int fd = stream ? fileno(stream) : -1;
  core::CloseClaim claim = core::ClaimClose(fd);
  int r = Real().fclose(stream);
  if (claim.cookie) core::FinishClose(fd, claim, r, r ? errno : 0);
  return r;
}

// syscall() takes up to six register arguments; passing six on is exact for
// every system call, whatever it really uses.
CA_EXPORT long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (long& v : a) v = va_arg(ap, long);
  va_end(ap);
  if (number == SYS_close || number == SYS_close_range) core::EnsureScanned();
  if (number == SYS_close) {
    int fd = static_cast<int>(a[0]);
    core::CloseClaim claim = core::ClaimClose(fd);
    long r = Real().syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
    core::FinishClose(fd, claim, r == 0 ? 0 : -1, r == 0 ? 0 : errno);
    return r;
  }
  if (number == SYS_write && core::IsUnwinderPipe(a[0]) &&
      core::t_unwinding > 0 && core::InUnwinder(__builtin_return_address(0))) {
    return core::UnwinderPipeWrite(reinterpret_cast<const void*>(a[1]),
                                   static_cast<size_t>(a[2]));
  }
  if (number == SYS_close_range) {
    core::BeforeCloseRange(static_cast<unsigned>(a[0]),
                           static_cast<unsigned>(a[1]),
                           static_cast<unsigned>(a[2]));
  }
  return Real().syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
