// The shim's core: what each interposed call means for the audit.
//
// shim/preload.cc defines the libc symbols; each wrapper calls the real
// function and then hands the outcome to one of the functions below. They
// update the fd table and push events (with stacks, for lifecycle events) into
// the shared ring. Unit tests link this core directly, without LD_PRELOAD.
//
// Every function here is async-signal-safe, allocation-free and leaves errno
// alone, except the ones documented as start-up or fork paths. None blocks.
#ifndef CLOSEAUDIT_SHIM_RECORDER_H_
#define CLOSEAUDIT_SHIM_RECORDER_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "shim/closeaudit_js.h"
#include "shim/fd_table.h"

// Set by the vfork trampoline while a vfork child runs on this thread's
// memory (the parent thread is suspended meanwhile); the return address it
// parks. Plain C TLS so that assembly can reach them.
extern "C" __thread int closeaudit_vfork_child
    __attribute__((tls_model("initial-exec")));
extern "C" __thread uintptr_t closeaudit_vfork_return
    __attribute__((tls_model("initial-exec")));

namespace closeaudit::shim {

extern FdTable g_fds;

// Non-zero while this thread is inside libunwind: the files it opens and
// closes for itself are not the program's, and are not recorded.
extern thread_local int t_unwinding __attribute__((tls_model("initial-exec")));

// How deep this thread is inside the shim's own code. Events are recorded at
// any depth; stacks only at depth 1 (see Push in recorder.cc).
extern thread_local int t_busy __attribute__((tls_model("initial-exec")));

// Whether this image still has to look at the fds it was started with
// (kScanPending), is looking (kScanning), or has (kScanDone).
enum ScanState : int { kScanDone, kScanPending, kScanning };
extern std::atomic<int> g_scan;
void ScanNow();

// Every wrapper of a call that takes or makes an fd calls this first: the
// sockets an image inherited are looked for (in /proc/self/fd) before the
// first such call, not at start. One relaxed load when done.
inline void EnsureScanned() {
  if (__builtin_expect(g_scan.load(std::memory_order_relaxed) != kScanDone,
                       0)) {
    ScanNow();
  }
}

// Start-up: resolve hooks, and look at the fds the image started with when
// it starts eagerly (see recorder.cc); otherwise the image is dormant until
// its first socket. Returns false if auditing is off.
bool StartRecording();
bool Recording();

void OnSocket(int fd, int domain, int type);
void OnSocketpair(const int fds[2], int domain, int type);
// The address buffer an accept() is given. The peer's address comes back
// from accept() itself, which spares a getpeername() per connection: into
// the program's buffer when the shim can tell it holds the whole address
// (its size is on the thread's stack, where reading it cannot fault), or
// into a buffer of the shim's when the program passed none (the program
// sees no difference: it asked for nothing).
class AcceptPeer {
 public:
  AcceptPeer(sockaddr* addr, socklen_t* len);
  sockaddr* addr() { return user_ ? user_ : reinterpret_cast<sockaddr*>(&own_); }
  socklen_t* len() { return user_ ? user_len_ : &own_len_; }
  // After a successful accept: the whole peer address, or null.
  const sockaddr* Get(socklen_t* size) const;

 private:
  sockaddr_storage own_{};
  socklen_t own_len_ = sizeof(own_);
  sockaddr* user_;
  socklen_t* user_len_;
  socklen_t user_cap_ = 0;  // the program's buffer size, when known
};

void OnAccept(int fd, int listen_fd, int accept_flags, const AcceptPeer& peer);
void OnConnect(int fd, int result, int err);
void OnListen(int fd);
void OnShutdown(int fd, int how, int result, int err);
void OnSetsockopt(int fd, int level, int name, const void* value,
                  socklen_t len);
// An event library took fd (see wire::HandlerKind): where from, and the
// callback it will deliver the socket's events to.
void OnHandler(int fd, wire::HandlerKind kind, uint32_t flags,
               const void* callback);
// A Python event loop's handler for fd (closeaudit_python_handler(), called
// by the Python-side helper): its definition, as the stack of a kHandler
// event of kind kPython.
void OnPythonHandler(int fd, uint32_t flags, const char* name,
                     const char* file, int line);
// What the program's JavaScript agent named of the socket on fd
// (closeaudit_js_handler(), shim/closeaudit_js.h): a kHandler event of kind
// kNode whose stack is the JavaScript frames, copied once per ring.
void OnJsHandler(int fd, uint32_t flags, closeaudit_js_stack* stack);
// The agent runs in this image (closeaudit_js_agent()): a kRuntime event,
// now and in every ring this image starts.
void OnJsAgent(uint32_t version, uint32_t flags);
// dup(), fcntl(F_DUPFD*): newfd now refers to oldfd's socket.
void OnDup(int oldfd, int newfd, bool cloexec);
// dup2()/dup3(): as OnDup, and whatever newfd held before is closed.
void OnDup2(int oldfd, int newfd, bool cloexec);

// close(): Claim before the real call (so that a racing reuse of the number
// cannot be mistaken for this socket), Finish after it.
struct CloseClaim {
  uint64_t cookie;
  uint64_t inode;
  uint32_t state;
  uint32_t generation;
  uint64_t unsent;  // 1 + bytes queued, for linger-0 sockets; 0 = unknown
};
CloseClaim ClaimClose(int fd);
void FinishClose(int fd, const CloseClaim& claim, int result, int err);

// close_range()/closefrom(): records the closes (or, with
// CLOSE_RANGE_CLOEXEC, the new flags) before the real call.
inline constexpr unsigned kCloseRangeCloexec = 1u << 2;
void BeforeCloseRange(unsigned first, unsigned last, unsigned flags);

// recvmsg(): sockets that arrived as SCM_RIGHTS are new references.
void ReceivedFds(const msghdr* msg, int flags);

// Process creation. Prepare runs in the parent before the real call
// (it takes the stack); then ForkParent in the parent and, for the kinds that
// copy memory, ForkChild in the child.
using wire::ForkKind;
struct ForkToken {
  uint32_t stack;
  uint64_t mono_ns;
  pid_t parent;
  // The calling thread's timer slack before a started image marked it for
  // a child that execs without returning to the shim (vfork, posix_spawn;
  // see ExecMark below). -1: none.
  long slack;
};
// The vfork trampoline's token, between prepare and parent.
extern thread_local ForkToken t_vfork_token
    __attribute__((tls_model("initial-exec")));
// `exec_child`: the child execs without returning to the shim (vfork,
// posix_spawn), so the calling thread's timer slack carries the exec mark
// into it (see ExecMark); a fork or clone child runs the shim itself.
ForkToken ForkPrepare(bool exec_child = false);
// In the parent after the call, whatever it returned (child <= 0: failed).
void ForkParent(pid_t child, const ForkToken& token, ForkKind kind);
void ForkChild(ForkKind kind);

// exec*(): OnExec just before the real call, AfterFailedExec after it (an
// exec returns only when it failed). A started image marks the exec in its
// thread's timer slack (1 ns more), a state of the task that survives
// execve and that no program looks at: the new image finds the mark, takes
// it off again before anything of the program's runs, and says hello at
// once, so that the collector learns that the old image's sockets are gone
// even if the new one never makes any.
struct ExecMark {
  long slack = -1;  // the slack before the mark; -1: none set
};
ExecMark OnExec();
void AfterFailedExec(const ExecMark& mark);

// Reads: the hot path. A read with data only remembers its caller; a read of
// 0 bytes (asked for more than 0) on a stream socket is the peer's EOF.
void OnEofSlow(int fd, FdEntry* entry);

inline void OnRead(int fd, ssize_t result, size_t requested, void* caller) {
  if (result < 0 || requested == 0) return;
  FdEntry* entry = g_fds.Find(fd);
  if (entry == nullptr ||
      entry->cookie.load(std::memory_order_relaxed) == 0) {
    return;
  }
  if (result > 0) {
    entry->last_use_ip.store(reinterpret_cast<uintptr_t>(caller),
                             std::memory_order_relaxed);
    return;
  }
  OnEofSlow(fd, entry);
}

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_RECORDER_H_
