// The real libc functions behind every wrapper, resolved once, in one place.
//
// ResolveHooks() runs from the shim's constructor, before the program's
// main, so that close() and friends never look a symbol up later (neither
// dlsym nor dl_iterate_phdr is async-signal-safe). It finds all of them in
// one walk over the loaded objects' hash tables (next_symbols.h): two fifths
// of the instructions that 44 dlsym calls took. A wrapper entered before the
// constructor (another library's constructor calling close) resolves lazily
// through ResolveHooks() as well. A required hook that cannot be found disables auditing with one line
// on stderr; an optional one (close_range, accept4 on old libcs) is simply
// passed through when absent.
#ifndef CLOSEAUDIT_SHIM_HOOKS_H_
#define CLOSEAUDIT_SHIM_HOOKS_H_

#include <dirent.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

namespace closeaudit::shim {

struct Hooks {
  int (*socket)(int, int, int);
  int (*socketpair)(int, int, int, int*);
  int (*accept)(int, sockaddr*, socklen_t*);
  int (*accept4)(int, sockaddr*, socklen_t*, int);
  int (*connect)(int, const sockaddr*, socklen_t);
  int (*listen)(int, int);
  int (*close)(int);
  int (*shutdown)(int, int);
  int (*setsockopt)(int, int, int, const void*, socklen_t);
  int (*dup)(int);
  int (*dup2)(int, int);
  int (*dup3)(int, int, int);
  int (*fcntl)(int, int, ...);
  int (*fcntl64)(int, int, ...);
  ssize_t (*read)(int, void*, size_t);
  ssize_t (*read_chk)(int, void*, size_t, size_t);
  ssize_t (*readv)(int, const iovec*, int);
  ssize_t (*recv)(int, void*, size_t, int);
  ssize_t (*recv_chk)(int, void*, size_t, size_t, int);
  ssize_t (*recvfrom)(int, void*, size_t, int, sockaddr*, socklen_t*);
  ssize_t (*recvfrom_chk)(int, void*, size_t, size_t, int, sockaddr*,
                          socklen_t*);
  ssize_t (*recvmsg)(int, msghdr*, int);
  int (*pipe2)(int*, int);
  pid_t (*fork)();
  pid_t (*underscore_fork)();
  pid_t (*vfork)();
  int (*posix_spawn)(pid_t*, const char*, const posix_spawn_file_actions_t*,
                     const posix_spawnattr_t*, char* const[], char* const[]);
  int (*posix_spawnp)(pid_t*, const char*, const posix_spawn_file_actions_t*,
                      const posix_spawnattr_t*, char* const[], char* const[]);
  int (*daemon)(int, int);
  int (*clone)(int (*)(void*), void*, int, void*, ...);
  int (*execve)(const char*, char* const[], char* const[]);
  int (*execveat)(int, const char*, char* const[], char* const[], int);
  int (*fexecve)(int, char* const[], char* const[]);
  int (*execv)(const char*, char* const[]);
  int (*execvp)(const char*, char* const[]);
  int (*execvpe)(const char*, char* const[], char* const[]);
  int (*close_range)(unsigned, unsigned, int);
  void (*closefrom)(int);
  int (*fclose)(FILE*);
  long (*syscall)(long, ...);
};

// The table. Zero until Resolve() has run.
extern Hooks g_hooks;

// Fills g_hooks. Returns false if a required hook is missing; safe to call
// more than once (later calls are no-ops once it succeeded).
bool ResolveHooks();

// g_hooks with Resolve() done. For wrappers: cheap after the first call.
inline const Hooks& Real() {
  extern bool g_hooks_ready;
  if (__builtin_expect(!g_hooks_ready, 0)) ResolveHooks();
  return g_hooks;
}

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_HOOKS_H_
