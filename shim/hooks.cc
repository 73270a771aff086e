#include "shim/hooks.h"

#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstring>

#include "shim/next_symbols.h"

namespace closeaudit::shim {

Hooks g_hooks;
bool g_hooks_ready = false;

namespace {

struct HookSpec {
  const char* name;
  uint32_t hash;  // GnuHash(name), computed by the compiler
  size_t offset;  // of the hook's slot in Hooks
  bool required;
};

void Say(const char* a, const char* b) {
  // Before hooks are known we cannot use our own wrappers; write(2) is not
  // interposed.
  (void)!write(2, a, strlen(a));
  (void)!write(2, b, strlen(b));
  (void)!write(2, "\n", 1);
}

}  // namespace

bool ResolveHooks() {
  static std::atomic<int> state{0};  // 0 new, 1 resolving, 2 done, 3 failed
  int s = state.load(std::memory_order_acquire);
  if (s == 2) return true;
  if (s == 3) return false;
#define CA_HOOK(field, sym, req) {sym, GnuHash(sym), offsetof(Hooks, field), req}
  static constexpr HookSpec kSpecs[] = {
      CA_HOOK(socket, "socket", true),
      CA_HOOK(socketpair, "socketpair", true),
      CA_HOOK(accept, "accept", true),
      CA_HOOK(accept4, "accept4", false),
      CA_HOOK(connect, "connect", true),
      CA_HOOK(listen, "listen", true),
      CA_HOOK(close, "close", true),
      CA_HOOK(shutdown, "shutdown", true),
      CA_HOOK(setsockopt, "setsockopt", true),
      CA_HOOK(dup, "dup", true),
      CA_HOOK(dup2, "dup2", true),
      CA_HOOK(dup3, "dup3", false),
      CA_HOOK(fcntl, "fcntl", true),
      CA_HOOK(fcntl64, "fcntl64", false),
      CA_HOOK(read, "read", true),
      CA_HOOK(read_chk, "__read_chk", false),
      CA_HOOK(readv, "readv", true),
      CA_HOOK(recv, "recv", true),
      CA_HOOK(recv_chk, "__recv_chk", false),
      CA_HOOK(recvfrom, "recvfrom", true),
      CA_HOOK(recvfrom_chk, "__recvfrom_chk", false),
      CA_HOOK(recvmsg, "recvmsg", true),
      CA_HOOK(pipe2, "pipe2", true),
      CA_HOOK(fork, "fork", true),
      CA_HOOK(underscore_fork, "_Fork", false),
      CA_HOOK(vfork, "vfork", true),
      CA_HOOK(posix_spawn, "posix_spawn", true),
      CA_HOOK(posix_spawnp, "posix_spawnp", true),
      CA_HOOK(daemon, "daemon", false),
      CA_HOOK(clone, "clone", true),
      CA_HOOK(execve, "execve", true),
      CA_HOOK(execveat, "execveat", false),
      CA_HOOK(fexecve, "fexecve", false),
      CA_HOOK(execv, "execv", true),
      CA_HOOK(execvp, "execvp", true),
      CA_HOOK(execvpe, "execvpe", false),
      CA_HOOK(close_range, "close_range", false),
      CA_HOOK(closefrom, "closefrom", false),
      CA_HOOK(fclose, "fclose", true),
      CA_HOOK(syscall, "syscall", true),
  };
#undef CA_HOOK
  constexpr int kCount = sizeof(kSpecs) / sizeof(kSpecs[0]);
  NextSymbol found[kCount];
  for (int i = 0; i < kCount; ++i) {
    found[i].name = kSpecs[i].name;
    found[i].hash = kSpecs[i].hash;
  }
  FindNextSymbols(found, kCount);
  bool ok = true;
  Hooks resolved{};
  for (int i = 0; i < kCount; ++i) {
    void* fn = found[i].address;
    std::memcpy(reinterpret_cast<char*>(&resolved) + kSpecs[i].offset, &fn,
                sizeof(fn));
    if (!fn && kSpecs[i].required) {
      Say("closeaudit: auditing disabled: cannot resolve libc function ",
          kSpecs[i].name);
      ok = false;
    }
  }
  if (!ok) {
    // Leave g_hooks usable for what was found; wrappers see the audit is off.
    g_hooks = resolved;
    g_hooks_ready = true;
    state.store(3, std::memory_order_release);
    return false;
  }
  g_hooks = resolved;
  g_hooks_ready = true;
  state.store(2, std::memory_order_release);
  return true;
}

}  // namespace closeaudit::shim
