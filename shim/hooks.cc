#include "shim/hooks.h"

#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace closeaudit::shim {

Hooks g_hooks;
bool g_hooks_ready = false;

namespace {

struct HookSpec {
  const char* name;
  void** slot;
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
#define CA_HOOK(name, sym, req) {sym, reinterpret_cast<void**>(&g_hooks.name), req}
  const HookSpec specs[] = {
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
  bool ok = true;
  Hooks resolved{};
  for (const HookSpec& spec : specs) {
    void* fn = dlsym(RTLD_NEXT, spec.name);
    size_t offset = reinterpret_cast<char*>(spec.slot) -
                    reinterpret_cast<char*>(&g_hooks);
    std::memcpy(reinterpret_cast<char*>(&resolved) + offset, &fn, sizeof(fn));
    if (!fn && spec.required) {
      Say("closeaudit: auditing disabled: cannot resolve libc function ",
          spec.name);
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
