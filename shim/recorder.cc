#include "shim/recorder.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "common/wire.h"
#include "shim/node_env.h"
#include "shim/env.h"
#include "shim/hooks.h"
#include "shim/java_frames.h"
#include "shim/layout.h"
#include "shim/modules.h"
#include "shim/python_frames.h"
#include "shim/ring_writer.h"
#include "shim/stacks.h"
#include "shim/transport.h"
#include "shim/unwinder.h"

extern "C" {
__thread int closeaudit_vfork_child __attribute__((tls_model("initial-exec"))) = 0;
__thread uintptr_t closeaudit_vfork_return
    __attribute__((tls_model("initial-exec"))) = 0;
}

namespace closeaudit::shim {

CA_BULK FdTable g_fds;
thread_local int t_busy __attribute__((tls_model("initial-exec"))) = 0;
thread_local int t_unwinding __attribute__((tls_model("initial-exec"))) = 0;
std::atomic<int> g_scan{kScanDone};
thread_local ForkToken t_vfork_token __attribute__((tls_model("initial-exec")));

namespace {

using wire::Event;
using wire::EventType;

constexpr uint32_t kDefaultSlots = 1u << 16;         // 4 MiB of slots
constexpr uint32_t kDefaultArenaBytes = 4u << 20;    // 4 MiB of stacks
constexpr uint64_t kRetryIntervalNs = 1000000000ull;  // re-register at most 1/s
// An exec from a started image (ExecMark) adds 1 ns to the exec'ing
// thread's timer slack, a whole number of microseconds (the default is
// 50 us): a slack of N us + 1 ns is the mark. The new image takes it off
// again. An image the library never enters (static, setuid) keeps the
// extra nanosecond, which changes no timer of its measurably.
bool SlackMarked(long slack) { return slack > 1000 && slack % 1000 == 1; }

// Marks the calling thread's timer slack (see ExecMark); returns the slack
// to put back, or -1 if none was marked.
long MarkSlack() {
  // Only a slack of whole microseconds can carry the mark unambiguously;
  // another one (a program that asked for 1 ns) goes without.
  long slack = Real().syscall(SYS_prctl, PR_GET_TIMERSLACK, 0, 0, 0, 0, 0);
  if (slack >= 1000 && slack % 1000 == 0 &&
      Real().syscall(SYS_prctl, PR_SET_TIMERSLACK, slack + 1, 0, 0, 0, 0) ==
          0) {
    return slack;
  }
  return -1;
}

void UnmarkSlack(long slack) {
  if (slack >= 0) Real().syscall(SYS_prctl, PR_SET_TIMERSLACK, slack, 0, 0, 0, 0);
}

// The current ring, and the ones before it: after a collector dies the shim
// moves to a new ring for the next one, but never unmaps the old (another
// thread may still be pushing into it, and a collector that was only stopped
// will still drain it). Bounded: after kMaxRings the shim stops reconnecting.
constexpr int kMaxRings = 4;
RingWriter g_rings[kMaxRings];
std::atomic<int> g_ring_index{0};
RingWriter& Ring() { return g_rings[g_ring_index.load(std::memory_order_acquire)]; }
// A collector whose heartbeat is older than this is taken for gone.
constexpr uint64_t kStaleCollectorNs = 3000000000ull;
std::atomic<uint64_t> g_registered_at{0};
// What the first hello of this image says, also when it is sent late because
// no collector answered at first; see HelloFlags.
uint32_t g_hello_flags = 0;
// The process the image was loaded into: any other that runs it is a fork
// child (a dormant parent's child writes nothing at fork, and so copies none
// of the shim's pages, to say it).
pid_t g_image_pid = 0;
std::atomic<bool> g_recording{false};
// An image starts dormant: no ring, no hello, nothing for the collector to
// do. The first socket it tracks (made, accepted, received or inherited)
// starts it. Most images a shell or a build runs never make one.
enum StartState : int { kDormant, kStarting, kStarted };
std::atomic<int> g_start{kDormant};
// Set in a fork child of a started image: its stack table is the parent's.
bool g_stacks_stale = false;
// When this image began (its constructor), for sockets found open at start.
uint64_t g_image_start_ns = 0;
thread_local bool t_scanning __attribute__((tls_model("initial-exec"))) = false;
std::atomic<bool> g_registered{false};
std::atomic<bool> g_registering{false};
std::atomic<uint64_t> g_last_register_try{0};
uint32_t g_slots = kDefaultSlots;
uint32_t g_arena = kDefaultArenaBytes;
thread_local pid_t t_tid __attribute__((tls_model("initial-exec"))) = 0;
ForkToken g_fork;

// Keeps errno and marks the thread busy for the duration of a slow path.
class Scope {
 public:
  Scope() : errno_(errno) { ++t_busy; }
  ~Scope() {
    --t_busy;
    errno = errno_;
  }

 private:
  int errno_;
};

// Blocks every signal for a registration: between the memfd's creation and
// the hello that hands it over, the shim holds two fds, and a signal handler
// that opened a file meanwhile would be given another number than without
// the library.
class SignalsBlocked {
 public:
  SignalsBlocked() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

 private:
  sigset_t old_;
};

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

uint32_t Tid() {
  // libc's syscall(), not the shim's wrapper (which reads six arguments
  // whatever the call has, and may run in a vfork parent's frame).
  if (t_tid == 0) t_tid = static_cast<pid_t>(Real().syscall(SYS_gettid));
  return static_cast<uint32_t>(t_tid);
}

uint8_t WireFlags(uint32_t state) {
  uint8_t flags = 0;
  if (state & kStateStream) flags |= wire::kFlagStream;
  if (state & kStateCloexec) flags |= wire::kFlagCloexec;
  if (state & kStateInet) flags |= wire::kFlagInet;
  return flags;
}

Event MakeEvent(EventType type, int fd, uint64_t cookie, uint64_t inode,
                uint32_t state) {
  Event e{};
  e.type = type;
  e.flags = WireFlags(state);
  e.state = static_cast<uint16_t>(state);
  e.fd = fd;
  e.tid = Tid();
  e.mono_ns = NowNs();
  e.ident.cookie = cookie;
  e.ident.inode = inode;
  return e;
}

// The Node.js agent's hello (OnJsAgent), as its kRuntime event's
// aux << 32 | arg; 0 until the agent says it.
std::atomic<uint64_t> g_node_agent{0};

void PushNodeAgent(RingWriter& ring, uint64_t agent) {
  Event ev = MakeEvent(EventType::kRuntime, -1, 0, 0, 0);
  ev.aux = static_cast<uint32_t>(agent >> 32);
  ev.arg = agent & 0xffffffffu;
  ring.Push(ev);
}

// Says what the library made of the image's interpreter, if it has one,
// and that the Node.js agent runs, if it does.
void SendRuntimeStatus(RingWriter& ring) {
  if (uint64_t agent = g_node_agent.load(std::memory_order_acquire)) {
    PushNodeAgent(ring, agent);
  }
  uint32_t status = 0;
  uint64_t version = 0;
  if (!python::Status(&status, &version)) return;
  Event ev = MakeEvent(EventType::kRuntime, -1, 0, 0, 0);
  ev.aux = status;
  ev.arg = version;
  ring.Push(ev);
}

void TryRegister(uint32_t flags) {
  bool expected = false;
  if (!g_registering.compare_exchange_strong(expected, true)) return;
  g_last_register_try.store(NowNs(), std::memory_order_relaxed);
  if (Register(Ring(), flags)) {
    g_registered_at.store(NowNs(), std::memory_order_relaxed);
    g_registered.store(true);
  } else {
    // No collector: do not hold an fd the program may count on (it may run
    // at its fd limit). A collector that turns up later gets a new ring.
    RingWriter& ring = Ring();
    bool ours = ring.FdStillOurs();
    int fd = ring.ReleaseFd();
    if (fd >= 0 && ours) Real().close(fd);
  }
  g_registering.store(false);
}

// Tells a new ring everything the collector needs to know about the sockets
// already open: the resync snapshot a restarted collector starts from.
void Snapshot(RingWriter& ring, uint32_t aux, uint64_t mono_ns) {
  g_fds.ForEach([&](int fd, FdEntry& e) {
    // Addresses sent into an earlier ring may never be read (a collector
    // that died with it): send them again when they are next needed.
    uint32_t state = e.state.fetch_and(~uint32_t{kStateAddressSent},
                                       std::memory_order_relaxed) &
                     ~uint32_t{kStateAddressSent};
    Event ev = MakeEvent(EventType::kInherited, fd,
                         e.cookie.load(std::memory_order_relaxed),
                         e.inode.load(std::memory_order_relaxed), state);
    if (mono_ns) ev.mono_ns = mono_ns;
    ev.aux = aux;
    ring.Push(ev);
  });
}

// The collector stopped draining (killed, or stopped for a long time): make
// a new ring, fill it with the module maps and a snapshot of the open
// sockets, and hand it to whichever collector answers now.
void Reconnect(uint32_t flags) {
  bool expected = false;
  if (!g_registering.compare_exchange_strong(expected, true)) return;
  SignalsBlocked blocked;
  g_last_register_try.store(NowNs(), std::memory_order_relaxed);
  int current = g_ring_index.load(std::memory_order_relaxed);
  int next = current + 1;
  if (next < kMaxRings && g_rings[next].Create(g_slots, g_arena)) {
    RingWriter& fresh = g_rings[next];
    ResendModules(fresh);
    SendRuntimeStatus(fresh);
    Snapshot(fresh, /*aux=*/3, 0);
    // What no collector will ever read from the old ring counts as lost.
    if (!g_registered.load(std::memory_order_relaxed)) {
      fresh.CountDropped(g_rings[current].written() +
                         g_rings[current].dropped());
    }
    if (Register(fresh, flags)) {
      g_registered_at.store(NowNs(), std::memory_order_relaxed);
      g_ring_index.store(next, std::memory_order_release);
      g_registered.store(true);
    } else {
      int fd = fresh.ReleaseFd();
      if (fd >= 0) Real().close(fd);
      fresh.Abandon();  // never published: nobody else touched it
    }
  }
  g_registering.store(false);
}

// A fork child's hello says only that it forked (not how its parent's image
// began).
uint32_t HelloFlags() {
  return getpid() == g_image_pid ? g_hello_flags : wire::kHelloForked;
}

// Lifecycle events give a collector that was missing at start another
// chance, and notice one that has gone, at most once a second.
// `now` is the event's own timestamp: no second clock read per event.
void MaybeRegister(uint64_t now) {
  // Another thread may have tried after this event was stamped.
  uint64_t last = g_last_register_try.load(std::memory_order_relaxed);
  if (now < last || now - last < kRetryIntervalNs) return;
  if (!g_registered.load(std::memory_order_relaxed)) {
    Reconnect(HelloFlags());
    return;
  }
  uint64_t beat = Ring().consumer_heartbeat();
  uint64_t since = beat ? beat : g_registered_at.load(std::memory_order_relaxed);
  if (now > since && now - since > kStaleCollectorNs) {
    Reconnect(wire::kHelloReconnect);
  }
}

bool EnsureStarted();

// Whether an event of this type starts a dormant image: only one that tracks
// a socket. The others (a fork, an exec, a close of an fd that never held a
// socket) say nothing about sockets in an image that has none.
bool StartsImage(EventType type) {
  return type == EventType::kSocket || type == EventType::kAccept ||
         type == EventType::kInherited;
}

void Push(Event& event, bool with_stack) {
  if (g_start.load(std::memory_order_acquire) != kStarted &&
      !(StartsImage(event.type) && EnsureStarted())) {
    return;
  }
  if (with_stack && t_busy == 1) {
    event.blob = CaptureStack(
        Ring(), event.type == EventType::kClose ? event.ident.cookie : 0);
  }
  Ring().Push(event);
  MaybeRegister(event.mono_ns);
}

// The kernel's identity for the socket at fd: its cookie (unique for the
// boot) and sockfs inode. Where SO_COOKIE is missing the inode stands in,
// tagged in the top bit so it cannot collide with a real cookie.
// One system call when the kernel has SO_COOKIE (every Linux since 4.x): the
// inode is then left 0, since the collector matches sockets by cookie and
// the kernel's sock_diag rows carry both.
void Identify(int fd, uint64_t* cookie, uint64_t* inode) {
  uint64_t c = 0;
  socklen_t len = sizeof(c);
  *inode = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len) != 0 || c == 0) {
    struct stat st;
    *inode = fstat(fd, &st) == 0 ? st.st_ino : 0;
    c = *inode | (1ull << 63);
  }
  *cookie = c;
}

// The entry of fd if it holds a tracked socket (its cookie in *cookie).
FdEntry* Tracked(int fd, uint64_t* cookie) {
  FdEntry* e = g_fds.Find(fd);
  if (!e) return nullptr;
  *cookie = e->cookie.load(std::memory_order_relaxed);
  return *cookie ? e : nullptr;
}

// Sets state bits on an entry and returns the state as it now is.
uint32_t AddState(FdEntry* e, uint32_t bits) {
  return e->state.fetch_or(bits, std::memory_order_relaxed) | bits;
}

uint32_t StateFor(int domain, int type) {
  uint32_t state = 0;
  if ((type & 0xf) == SOCK_STREAM) state |= kStateStream;
  if (domain == AF_INET || domain == AF_INET6) state |= kStateInet;
  if (type & SOCK_CLOEXEC) state |= kStateCloexec;
  return state;
}

// Returns the socket's cookie. `at_ns`, if not 0, is when the process got
// it (an inherited socket found later than that).
uint64_t Track(EventType type, int fd, uint32_t state, uint32_t aux,
               uint64_t arg, bool with_stack, uint64_t at_ns = 0) {
  uint64_t cookie, inode;
  Identify(fd, &cookie, &inode);
  g_fds.Set(fd, cookie, inode, state);
  Event e = MakeEvent(type, fd, cookie, inode, state);
  if (at_ns != 0) e.mono_ns = at_ns;
  e.aux = aux;
  e.arg = arg;
  Push(e, with_stack);
  return cookie;
}

// A kAddress event from the two endpoints; nothing unless both are IPv4 or
// both IPv6. Returns whether it went into the ring.
bool PushEndpoints(int fd, uint64_t cookie, const sockaddr* local,
                   const sockaddr* peer) {
  wire::AddressEvent a{};
  a.type = EventType::kAddress;
  a.fd = fd;
  a.cookie = cookie;
  if (local->sa_family == AF_INET && peer->sa_family == AF_INET) {
    auto* l = reinterpret_cast<const sockaddr_in*>(local);
    auto* p = reinterpret_cast<const sockaddr_in*>(peer);
    a.family = 4;
    a.local_port = ntohs(l->sin_port);
    a.peer_port = ntohs(p->sin_port);
    std::memcpy(a.local_addr, &l->sin_addr, 4);
    std::memcpy(a.peer_addr, &p->sin_addr, 4);
  } else if (local->sa_family == AF_INET6 && peer->sa_family == AF_INET6) {
    auto* l = reinterpret_cast<const sockaddr_in6*>(local);
    auto* p = reinterpret_cast<const sockaddr_in6*>(peer);
    a.family = 6;
    a.local_port = ntohs(l->sin6_port);
    a.peer_port = ntohs(p->sin6_port);
    std::memcpy(a.local_addr, &l->sin6_addr, 16);
    std::memcpy(a.peer_addr, &p->sin6_addr, 16);
  } else {
    return false;
  }
  Event e;
  static_assert(sizeof(e) == sizeof(a));
  std::memcpy(&e, &a, sizeof(e));
  return Ring().Push(e);
}

// The endpoints of a connected TCP socket whose addresses were not sent at
// its creation, asked from the kernel.
void PushAddress(int fd, uint64_t cookie, uint32_t state) {
  // Only TCP/IP endpoints are reported; skip the system calls otherwise.
  if (!(state & kStateInet) || (state & kStateAddressSent)) return;
  sockaddr_storage local{}, peer{};
  socklen_t llen = sizeof(local), plen = sizeof(peer);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) != 0 ||
      getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0) {
    return;
  }
  PushEndpoints(fd, cookie, reinterpret_cast<sockaddr*>(&local),
                reinterpret_cast<sockaddr*>(&peer));
}

// The local end of the listener this thread last accepted from. A socket
// accepted from a listener bound to one address has that local address; one
// bound to a wildcard (0.0.0.0, ::) does not, and the kernel is asked.
thread_local uint64_t t_listener_cookie
    __attribute__((tls_model("initial-exec"))) = 0;
thread_local sockaddr_in6 t_listener_local
    __attribute__((tls_model("initial-exec")));
thread_local bool t_listener_wildcard
    __attribute__((tls_model("initial-exec"))) = false;

bool IsWildcard(const sockaddr* a) {
  if (a->sa_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr ==
           htonl(INADDR_ANY);
  }
  if (a->sa_family == AF_INET6) {
    const in6_addr& v6 = reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr;
    return IN6_IS_ADDR_UNSPECIFIED(&v6) || IN6_IS_ADDR_V4MAPPED(&v6);
  }
  return true;  // not IP: never stands in for the accepted socket's end
}

// Whether PushEndpoints() can describe these two: both whole IPv4 or IPv6.
bool Describable(const sockaddr* local, const sockaddr* peer,
                 socklen_t peer_len) {
  if (local->sa_family != peer->sa_family) return false;
  if (peer->sa_family == AF_INET) return peer_len >= sizeof(sockaddr_in);
  if (peer->sa_family == AF_INET6) return peer_len >= sizeof(sockaddr_in6);
  return false;
}

// The local end of `fd`, accepted from `listen_fd`, into *out.
bool LocalEnd(int fd, int listen_fd, uint64_t listener_cookie,
              sockaddr_storage* out) {
  if (listener_cookie == 0 || listener_cookie != t_listener_cookie) {
    sockaddr_storage l{};
    socklen_t len = sizeof(l);
    t_listener_cookie = 0;
    if (listener_cookie != 0 &&
        getsockname(listen_fd, reinterpret_cast<sockaddr*>(&l), &len) == 0 &&
        len <= sizeof(sockaddr_in6)) {
      std::memcpy(&t_listener_local, &l, sizeof(t_listener_local));
      t_listener_wildcard = IsWildcard(reinterpret_cast<sockaddr*>(&l));
      t_listener_cookie = listener_cookie;
    }
  }
  if (t_listener_cookie != 0 && !t_listener_wildcard) {
    *out = sockaddr_storage{};
    std::memcpy(out, &t_listener_local, sizeof(t_listener_local));
    return true;
  }
  socklen_t len = sizeof(*out);
  return getsockname(fd, reinterpret_cast<sockaddr*>(out), &len) == 0;
}

// Starts tracking a socket the program got without creating it: inherited
// (aux 0), or received over a Unix socket (aux 2). Not a socket: ignored.
void TrackExisting(int fd, uint32_t aux, bool cloexec) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  int type = 0, domain = 0, listening = 0;
  socklen_t len = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  len = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
  len = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
  uint32_t state = StateFor(domain, type);
  int fdflags = fcntl(fd, F_GETFD);
  if (cloexec || (fdflags > 0 && (fdflags & FD_CLOEXEC))) state |= kStateCloexec;
  if (listening) state |= kStateListening;
  sockaddr_storage peer;
  socklen_t plen = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) {
    state |= kStateConnected;
  }
  // Found at start (perhaps looked for later, see EnsureScanned): held since
  // the image began.
  uint64_t at = (aux & wire::kInheritedFromMask) == 0 ? g_image_start_ns : 0;
  Track(EventType::kInherited, fd, state, aux,
        (uint64_t(domain) << 16) | (uint64_t(type) & 0xffff), false, at);
}

// Sockets the process already had when the shim arrived (inherited across
// exec, or opened by constructors that ran before ours).
void ScanExistingSockets() {
  // The sockets a service manager hands over on purpose (sd_listen_fds(3)):
  // fds 3 .. 3 + $LISTEN_FDS - 1, unless $LISTEN_PID is set to another pid.
  // Read once, by hand: no heap, and errno stays as it was.
  auto number = [](const char* s, long* out) {
    if (s == nullptr || *s == '\0') return false;
    long v = 0;
    for (; *s != '\0'; ++s) {
      if (*s < '0' || *s > '9' || v > (1L << 30)) return false;
      v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
  };
  long listen_fds = 0, listen_pid = 0;
  const char* pid_env = getenv("LISTEN_PID");
  if (!number(getenv("LISTEN_FDS"), &listen_fds) ||
      (pid_env != nullptr &&
       (!number(pid_env, &listen_pid) || listen_pid != getpid()))) {
    listen_fds = 0;
  }
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;
  alignas(8) char buf[4096];
  for (;;) {
    long n = Real().syscall(SYS_getdents64, dir, buf, sizeof(buf));
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<dirent64*>(buf + off);
      off += d->d_reclen;
      char* end;
      long fd = strtol(d->d_name, &end, 10);
      if (*end != '\0' || end == d->d_name || fd == dir) continue;
      bool passed = fd >= 3 && fd - 3 < listen_fds;
      TrackExisting(static_cast<int>(fd),
                    /*aux=*/passed ? wire::kInheritedListenFd : 0, false);
    }
  }
  Real().close(dir);
}

uint32_t EnvNumber(const char* name, uint32_t fallback, uint32_t lo,
                   uint32_t hi) {
  const char* v = EnvValue(name);
  if (!v || !*v) return fallback;
  unsigned long n = strtoul(v, nullptr, 10);
  if (n < lo || n > hi) return fallback;
  return static_cast<uint32_t>(n);
}

void SayDisabled(const char* why) {
  char line[256];
  int n = snprintf(line, sizeof(line),
                   "closeaudit: auditing disabled for pid %d: %s: %s\n",
                   static_cast<int>(getpid()), why, strerror(errno));
  if (n > 0) (void)!write(2, line, static_cast<size_t>(n));
}

}  // namespace

CA_CHILD_PATH bool Recording() {
  // A vfork child shares the parent's memory: it must not touch the parent's
  // table or ring until it execs.
  return g_recording.load(std::memory_order_relaxed) &&
         !closeaudit_vfork_child;
}

namespace {

// Makes this image's ring, fills it with the module maps (and, in a fork
// child, the sockets it inherited) and hands it to the collector. Runs once
// per image, with every signal blocked: the memfd and the hello's socket
// exist only inside this call.
bool StartRing(bool snapshot, bool daemon_fork) {
  SignalsBlocked blocked;
  MapStackTables();
  if (g_stacks_stale) {
    // The stacks a fork's parent knew point into the parent's ring.
    ResetStacks();
    g_stacks_stale = false;
  }
  InitTransport();
  if (!Ring().Create(g_slots, g_arena)) {
    SayDisabled("cannot create the event ring");
    g_recording.store(false);
    g_fds.Clear();
    // Never "starting" for good: threads waiting in EnsureStarted go on,
    // and find the audit off.
    g_start.store(kStarted, std::memory_order_release);
    return false;
  }
  // What is known already, and (except in a fork child, which must not
  // take the loader's lock another thread of its parent may have held) what
  // was loaded since.
  ResendModules(Ring());
  if (!snapshot) {
    SendModules(Ring());
    python::Detect();
    java::Detect();
  }
  SendRuntimeStatus(Ring());
  // Events pushed while starting must not trigger a registration of their
  // own before the one below.
  g_last_register_try.store(NowNs(), std::memory_order_relaxed);
  if (daemon_fork) {
    // daemon()'s parent exits inside daemon() and cannot say it forked: the
    // child says it, with its own stack (the parent's is in the old ring).
    Event ev = MakeEvent(EventType::kFork, -1, 0, 0, 0);
    ev.mono_ns = g_fork.mono_ns;
    ev.arg = static_cast<uint64_t>(g_fork.parent);
    ev.aux = static_cast<uint32_t>(ForkKind::kDaemon);
    ev.blob = CaptureStack(Ring());
    Ring().Push(ev);
  }
  if (snapshot) Snapshot(Ring(), /*aux=*/1, g_fork.mono_ns);
  g_start.store(kStarted, std::memory_order_release);
  EnsureDefaultCollector();
  TryRegister(HelloFlags());
  return true;
}

bool EnsureStarted() {
  int state = g_start.load(std::memory_order_acquire);
  if (state == kStarted) return true;
  if (state == kDormant &&
      g_start.compare_exchange_strong(state, kStarting,
                                      std::memory_order_acq_rel)) {
    return StartRing(/*snapshot=*/false, /*daemon_fork=*/false);
  }
  // Another thread is starting the image, with its signals blocked: it
  // finishes (it waits for nothing but, in the literal form, the daemon's
  // first process, 2 s at the most), then this event goes into the ring.
  while ((state = g_start.load(std::memory_order_acquire)) == kStarting) {
    sched_yield();
  }
  return state == kStarted && Recording();
}

// Whether this image was exec'd by a started one (see ExecMark in
// recorder.h); takes the mark off.
bool ExecdByStartedImage() {
  long slack = Real().syscall(SYS_prctl, PR_GET_TIMERSLACK, 0, 0, 0, 0, 0);
  if (!SlackMarked(slack)) return false;
  Real().syscall(SYS_prctl, PR_SET_TIMERSLACK, slack - 1, 0, 0, 0, 0);
  return true;
}

// `closeaudit run` wants its own command to say hello even if it never makes
// a socket, so that the report can tell "audited, nothing found" from "the
// library never loaded". It names its pid; the command's images are the ones
// whose parent that is.
bool StartEagerly() {
  const char* run = EnvValue("CLOSEAUDIT_RUN_PID");
  if (run == nullptr || *run == '\0') return false;
  // By hand rather than strtol: every process of the run's tree asks, and
  // this one is its first call into libc.
  long pid = 0;
  for (; *run >= '0' && *run <= '9' && pid < (1L << 40); ++run) {
    pid = pid * 10 + (*run - '0');
  }
  return *run == '\0' && pid == Real().syscall(SYS_getppid, 0, 0, 0, 0, 0, 0);
}

}  // namespace

bool StartRecording() {
  Scope scope;
  if (!ResolveHooks()) return false;
  InitModules(ExePath());
  PrepareNode();
  InitStacks();
  g_slots = EnvNumber("CLOSEAUDIT_RING_SLOTS", kDefaultSlots, 64,
                      wire::kMaxRingSlots);
  g_slots = 1u << (31 - __builtin_clz(g_slots));  // a power of two
  g_arena = EnvNumber("CLOSEAUDIT_ARENA_BYTES", kDefaultArenaBytes, 4096,
                      static_cast<uint32_t>(wire::kMaxArenaBytes));
  // Through syscall(), the one libc function the start has bound already
  // (the hooks' lookup found it): each other first call costs a lazy
  // binding, and clock_gettime's a page of the vDSO.
  timespec now{};
  Real().syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &now, 0, 0, 0, 0);
  g_image_start_ns = uint64_t(now.tv_sec) * 1000000000ull + now.tv_nsec;
  g_image_pid =
      static_cast<pid_t>(Real().syscall(SYS_getpid, 0, 0, 0, 0, 0, 0));
  g_recording.store(true);
  bool after_exec = ExecdByStartedImage();
  if (after_exec) g_hello_flags |= wire::kHelloAfterExec;
  // Inherited sockets start the image (through their events); so do an exec
  // from a started image and `closeaudit run`'s own command. Those look at
  // their fds now; the others when they first touch an fd (EnsureScanned):
  // the look costs a process start about a twentieth of its time, and
  // /bin/true and its like never touch one.
  bool eager =
      after_exec || StartEagerly() || EnvValue("LISTEN_FDS") != nullptr;
  if (eager) {
    t_scanning = true;
    ScanExistingSockets();
    t_scanning = false;
    EnsureStarted();
  } else {
    g_scan.store(kScanPending, std::memory_order_release);
  }
  return true;
}

void ScanNow() {
  if (t_scanning || !Recording()) return;  // a call the scan itself makes
  int state = kScanPending;
  if (g_scan.compare_exchange_strong(state, kScanning,
                                     std::memory_order_acq_rel)) {
    Scope scope;
    SignalsBlocked blocked;
    t_scanning = true;
    ScanExistingSockets();
    t_scanning = false;
    g_scan.store(kScanDone, std::memory_order_release);
    return;
  }
  // Another thread is looking, with its signals blocked: it finishes.
  while (g_scan.load(std::memory_order_acquire) == kScanning) sched_yield();
}

void OnSocket(int fd, int domain, int type) {
  if (!Recording() || fd < 0) return;
  Scope scope;
  Track(EventType::kSocket, fd, StateFor(domain, type),
        (uint32_t(domain) << 16) | (uint32_t(type) & 0xffff), 0, true);
}

void OnSocketpair(const int fds[2], int domain, int type) {
  OnSocket(fds[0], domain, type);
  OnSocket(fds[1], domain, type);
}

AcceptPeer::AcceptPeer(sockaddr* addr, socklen_t* len)
    : user_(addr), user_len_(len) {
  // A size the program keeps on its stack can be read without risk (it may
  // have passed a bad pointer, which only the kernel may find out).
  if (addr != nullptr && len != nullptr &&
      OnThisThreadsStack(len, sizeof(*len))) {
    user_cap_ = *len;
  }
}

const sockaddr* AcceptPeer::Get(socklen_t* size) const {
  if (user_ == nullptr) {
    *size = own_len_;
    return own_len_ <= sizeof(own_) ? reinterpret_cast<const sockaddr*>(&own_)
                                    : nullptr;
  }
  // The kernel wrote all of it only if it fitted in the program's buffer.
  if (user_cap_ == 0 || *user_len_ > user_cap_) return nullptr;
  *size = *user_len_;
  return user_;
}

void OnAccept(int fd, int listen_fd, int accept_flags, const AcceptPeer& peer) {
  if (!Recording() || fd < 0) return;
  Scope scope;
  uint32_t state = kStateConnected;
  FdEntry* listener = g_fds.Find(listen_fd);
  uint64_t listener_cookie =
      listener ? listener->cookie.load(std::memory_order_relaxed) : 0;
  if (listener_cookie != 0) {
    state |= listener->state.load(std::memory_order_relaxed) &
             (kStateStream | kStateInet);
  } else {
    int type = 0, domain = 0;
    socklen_t len = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
    len = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
    state |= StateFor(domain, type);
  }
  if (accept_flags & SOCK_CLOEXEC) state |= kStateCloexec;
  // A TCP connection's endpoints, now, while they cost little.
  sockaddr_storage local;
  socklen_t peer_len = 0;
  const sockaddr* remote = nullptr;
  if ((state & (kStateStream | kStateInet)) == (kStateStream | kStateInet)) {
    remote = peer.Get(&peer_len);
    if (remote != nullptr &&
        (!LocalEnd(fd, listen_fd, listener_cookie, &local) ||
         !Describable(reinterpret_cast<sockaddr*>(&local), remote,
                      peer_len))) {
      remote = nullptr;
    }
  }
  uint64_t cookie = Track(EventType::kAccept, fd, state, 0,
                          static_cast<uint64_t>(listen_fd), true);
  // Only an address that made it into the ring spares the later look-up.
  if (remote != nullptr &&
      PushEndpoints(fd, cookie, reinterpret_cast<sockaddr*>(&local), remote)) {
    uint64_t current;
    if (FdEntry* e = Tracked(fd, &current); e != nullptr && current == cookie) {
      AddState(e, kStateAddressSent);
    }
  }
}

void OnConnect(int fd, int result, int err) {
  if (!Recording()) return;
  if (result != 0 && err != EINPROGRESS) return;
  uint64_t cookie;
  FdEntry* e = Tracked(fd, &cookie);
  if (!e) return;
  Scope scope;
  uint32_t state = AddState(e, kStateConnected);
  Event ev = MakeEvent(EventType::kConnect, fd, cookie,
                       e->inode.load(std::memory_order_relaxed), state);
  ev.err = result == 0 ? 0 : err;
  Push(ev, false);
}

void OnListen(int fd) {
  if (!Recording()) return;
  uint64_t cookie;
  FdEntry* e = Tracked(fd, &cookie);
  if (!e) return;
  Scope scope;
  uint32_t state = AddState(e, kStateListening);
  Event ev = MakeEvent(EventType::kListen, fd, cookie,
                       e->inode.load(std::memory_order_relaxed), state);
  Push(ev, false);
}

void OnEofSlow(int fd, FdEntry* entry) {
  if (!Recording()) return;
  uint32_t state = entry->state.load(std::memory_order_relaxed);
  // Only the first EOF of a connected stream socket is news; a datagram of
  // length 0 is not an EOF at all.
  if (!(state & kStateStream) || (state & kStateEofSeen)) return;
  state = entry->state.fetch_or(kStateEofSeen, std::memory_order_relaxed);
  if (state & kStateEofSeen) return;
  state |= kStateEofSeen;
  Scope scope;
  uint64_t cookie = entry->cookie.load(std::memory_order_relaxed);
  Event ev = MakeEvent(EventType::kEofSeen, fd, cookie,
                       entry->inode.load(std::memory_order_relaxed), state);
  uint64_t last = entry->last_use_ip.load(std::memory_order_relaxed);
  ev.arg = last ? last - 1 : 0;  // no read returned data: unknown
  Push(ev, true);
  PushAddress(fd, cookie, state);
}

void OnShutdown(int fd, int how, int result, int err) {
  if (!Recording()) return;
  uint64_t cookie;
  FdEntry* e = Tracked(fd, &cookie);
  if (!e) return;
  Scope scope;
  uint32_t state = e->state.load(std::memory_order_relaxed);
  if (result == 0 && (how == SHUT_WR || how == SHUT_RDWR)) {
    state = AddState(e, kStateShutWr);
  }
  Event ev = MakeEvent(EventType::kShutdown, fd, cookie,
                       e->inode.load(std::memory_order_relaxed), state);
  ev.aux = static_cast<uint32_t>(how);
  ev.err = result == 0 ? 0 : err;
  // The close that follows carries the stack of a runtime's own shutdown.
  bool before_close = false;
  if (t_busy == 1 && g_start.load(std::memory_order_acquire) == kStarted) {
    if (result == 0) {
      ev.blob = CaptureShutdownStack(Ring(), cookie, &before_close);
    } else {
      ev.blob = CaptureStack(Ring());
    }
  }
  if (before_close) ev.aux |= wire::kShutdownBeforeClose;
  Push(ev, false);
}

void OnSetsockopt(int fd, int level, int name, const void* value,
                  socklen_t len) {
  if (!Recording()) return;
  if (level != SOL_SOCKET || name != SO_LINGER || value == nullptr ||
      len < sizeof(linger)) {
    return;
  }
  uint64_t cookie;
  FdEntry* e = Tracked(fd, &cookie);
  if (!e) return;
  Scope scope;
  linger l;
  std::memcpy(&l, value, sizeof(l));
  uint32_t state;
  if (l.l_onoff && l.l_linger == 0) {
    state = AddState(e, kStateLinger0);
  } else {
    state = e->state.fetch_and(~kStateLinger0, std::memory_order_relaxed) &
            ~kStateLinger0;
  }
  Event ev = MakeEvent(EventType::kLinger, fd, cookie,
                       e->inode.load(std::memory_order_relaxed), state);
  ev.aux = (static_cast<uint32_t>(l.l_onoff != 0) << 16) |
           (static_cast<uint32_t>(l.l_linger) & 0xffff);
  Push(ev, true);
}

namespace {

// The kHandler event for fd, if it is a tracked socket.
bool HandlerEvent(int fd, wire::HandlerKind kind, uint32_t flags, Event* ev) {
  if (!Recording()) return false;
  uint64_t cookie;
  FdEntry* e = Tracked(fd, &cookie);
  if (!e) return false;
  *ev = MakeEvent(EventType::kHandler, fd, cookie,
                  e->inode.load(std::memory_order_relaxed),
                  e->state.load(std::memory_order_relaxed));
  ev->aux = static_cast<uint32_t>(kind) | flags;
  return true;
}

}  // namespace

void OnHandler(int fd, wire::HandlerKind kind, uint32_t flags,
               const void* callback) {
  Scope scope;
  Event ev;
  if (!HandlerEvent(fd, kind, flags, &ev)) return;
  ev.arg = reinterpret_cast<uintptr_t>(callback);
  Push(ev, true);
}

void OnPythonHandler(int fd, uint32_t flags, const char* name,
                     const char* file, int line) {
  Scope scope;
  Event ev;
  if (!HandlerEvent(fd, wire::HandlerKind::kPython,
                    flags & wire::kHandlerPyStreams, &ev)) {
    return;
  }
  if (g_start.load(std::memory_order_acquire) == kStarted) {
    uint32_t code = python::DefinitionBlob(Ring(), name, file, line);
    wire::PyFrame frame{code, wire::kPyFrameCallEnd};
    uint64_t none[1] = {0};
    if (code != 0) ev.blob = StackBlobOf(Ring(), none, 0, &frame, 1);
  }
  Push(ev, false);
}

void OnJsAgent(uint32_t version, uint32_t flags) {
  Scope scope;
  uint32_t aux = wire::kRuntimeNodeAgent |
                 ((flags & 1) ? wire::kRuntimeNodeOwnPerfMap : 0);
  uint64_t agent = uint64_t{aux} << 32 | (version & 0xffffffu);
  // Once per image (each worker thread's agent says it again); a ring that
  // starts later sends it itself.
  if (g_node_agent.exchange(agent, std::memory_order_acq_rel) == agent) return;
  if (Recording() && g_start.load(std::memory_order_acquire) == kStarted) {
    PushNodeAgent(Ring(), agent);
  }
}

void OnJsHandler(int fd, uint32_t flags, closeaudit_js_stack* stack) {
  Scope scope;
  Event ev;
  if (!HandlerEvent(fd, wire::HandlerKind::kNode,
                    flags & wire::kHandlerNodeFlags, &ev)) {
    return;
  }
  if (stack != nullptr && stack->frames != nullptr && stack->count > 0 &&
      g_start.load(std::memory_order_acquire) == kStarted) {
    RingWriter& ring = Ring();
    // The agent names the same few places again and again (one per server,
    // per call site): each is copied once per ring.
    std::atomic_ref<uint64_t> cache(stack->cache);
    uint64_t cached = cache.load(std::memory_order_acquire);
    if (cached != 0 && (cached >> 32) == ring.generation()) {
      ev.blob = static_cast<uint32_t>(cached);
    } else {
      wire::PyFrame frames[wire::kMaxJsFrames];
      uint32_t n = std::min(stack->count, wire::kMaxJsFrames);
      uint32_t kept = 0;
      for (uint32_t i = 0; i < n; ++i) {
        const closeaudit_js_frame& f = stack->frames[i];
        uint32_t code = python::DefinitionBlob(
            ring, f.function, f.file, f.line, wire::CodeLanguage::kJavaScript);
        if (code == 0) break;
        frames[kept++] = wire::PyFrame{code, 0};
      }
      if (kept > 0) {
        frames[kept - 1].where = wire::kPyFrameCallEnd;
        uint64_t none[1] = {0};
        ev.blob = StackBlobOf(ring, none, 0, frames, static_cast<int>(kept));
        if (ev.blob != 0 && kept == n) {
          cache.store((uint64_t{ring.generation()} << 32) | ev.blob,
                      std::memory_order_release);
        }
      }
    }
  }
  Push(ev, false);
}

CloseClaim ClaimClose(int fd) {
  CloseClaim claim{};
  if (!Recording()) return claim;
  FdEntry copy{};
  claim.cookie = g_fds.Release(fd, &copy);
  if (claim.cookie == 0) return claim;
  claim.inode = copy.inode.load(std::memory_order_relaxed);
  claim.state = copy.state.load(std::memory_order_relaxed);
  claim.generation = copy.generation.load(std::memory_order_relaxed);
  if (copy.last_use_ip.load(std::memory_order_relaxed) != 0) {
    claim.state |= kStateUsed;
  }
  Scope scope;
  constexpr uint32_t kTcp = kStateStream | kStateInet | kStateConnected;
  if ((claim.state & kTcp) == kTcp) {
    if (!(claim.state & kStateEofSeen)) {
      // Closing before the peer did: this side may end in TIME_WAIT (or,
      // with linger 0, reset the peer), and the report names the peers.
      PushAddress(fd, claim.cookie, claim.state);
    }
    if (claim.state & kStateLinger0) {
      // What an abortive close throws away: bytes not yet sent or acked.
      int queued = 0;
      if (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued >= 0) {
        claim.unsent = static_cast<uint64_t>(queued) + 1;
      }
    }
  }
  return claim;
}

void FinishClose(int fd, const CloseClaim& claim, int result, int err) {
  if (!Recording()) return;
  if (claim.cookie == 0 && !(result != 0 && err == EBADF)) return;
  Scope scope;
  EventType type =
      claim.cookie ? EventType::kClose : EventType::kCloseUntracked;
  Event ev = MakeEvent(type, fd, claim.cookie, claim.inode, claim.state);
  ev.err = result == 0 ? 0 : err;
  ev.aux = claim.generation;
  ev.arg = claim.unsent;
  Push(ev, true);
}

void BeforeCloseRange(unsigned first, unsigned last, unsigned flags) {
  if (!Recording() || first > last) return;
  Scope scope;
  long top = last >= static_cast<unsigned>(FdTable::kMaxFd)
                 ? FdTable::kMaxFd - 1
                 : static_cast<long>(last);
  if (flags & kCloseRangeCloexec) {
    for (long fd = first; fd <= top; ++fd) {
      FdEntry* e = g_fds.Find(static_cast<int>(fd));
      if (e && e->cookie.load(std::memory_order_relaxed) != 0) {
        e->state.fetch_or(kStateCloexec, std::memory_order_relaxed);
      }
    }
    return;
  }
  // One stack for the whole sweep.
  uint32_t stack = 0;
  bool have_stack = false;
  for (long fd = first; fd <= top; ++fd) {
    if (!g_fds.Find(static_cast<int>(fd))) {
      fd |= FdTable::kChunkSize - 1;  // no chunk: skip to the next one
      continue;
    }
    CloseClaim claim = ClaimClose(static_cast<int>(fd));
    if (claim.cookie == 0) continue;
    if (!have_stack) {
      stack = t_busy == 1 ? CaptureStack(Ring()) : 0;
      have_stack = true;
    }
    Event ev = MakeEvent(EventType::kClose, static_cast<int>(fd), claim.cookie,
                         claim.inode, claim.state);
    ev.aux = claim.generation;
    ev.arg = claim.unsent;
    ev.blob = stack;
    Push(ev, false);
  }
}

void ReceivedFds(const msghdr* msg, int flags) {
  if (!Recording() || msg == nullptr || msg->msg_controllen == 0) return;
  Scope scope;
  for (cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr;
       c = CMSG_NXTHDR(const_cast<msghdr*>(msg), c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      TrackExisting(fd, /*aux=*/2, (flags & MSG_CMSG_CLOEXEC) != 0);
    }
  }
}

void OnDup(int oldfd, int newfd, bool cloexec) {
  if (!Recording() || newfd < 0) return;
  FdEntry* src = g_fds.Find(oldfd);
  if (!src) return;
  uint64_t cookie = src->cookie.load(std::memory_order_relaxed);
  if (cookie == 0) return;
  Scope scope;
  uint64_t inode = src->inode.load(std::memory_order_relaxed);
  // A dup shares the socket, and its EOF state; CLOEXEC is per fd.
  uint32_t state = src->state.load(std::memory_order_relaxed) & ~kStateCloexec;
  if (cloexec) state |= kStateCloexec;
  g_fds.Set(newfd, cookie, inode, state);
  Event ev = MakeEvent(EventType::kDup, newfd, cookie, inode, state);
  ev.arg = static_cast<uint64_t>(oldfd);
  Push(ev, false);
}

void OnDup2(int oldfd, int newfd, bool cloexec) {
  if (!Recording() || newfd < 0 || oldfd == newfd) return;
  // dup2 closed whatever newfd was: that is a close like any other.
  CloseClaim claim = ClaimClose(newfd);
  if (claim.cookie) FinishClose(newfd, claim, 0, 0);
  OnDup(oldfd, newfd, cloexec);
}

ForkToken ForkPrepare(bool exec_child) {
  ForkToken token{};
  token.slack = -1;
  // A dormant image records no fork (see Push): nothing to prepare.
  int state = g_start.load(std::memory_order_acquire);
  if (!Recording() || state == kDormant) return token;
  // Another thread is starting the image: its stack tables and ring are
  // ready when it is done.
  if (state == kStarting && !EnsureStarted()) return token;
  // A child of a process that holds no socket holds none either: neither
  // it nor the image it may exec can leave one open, so the fork is not
  // worth an event (a shell under `closeaudit run` forks for every command).
  if (!g_fds.Any()) return token;
  Scope scope;
  token.stack = t_busy == 1 ? CaptureStack(Ring()) : 0;
  token.mono_ns = NowNs();
  token.parent = getpid();
  // A vfork or posix_spawn child execs without returning to the shim: it
  // takes the mark with it from this thread.
  token.slack =
      exec_child && g_start.load(std::memory_order_acquire) == kStarted
          ? MarkSlack()
          : -1;
  g_fork = token;  // the child's copy of memory carries it over
  return token;
}

void ForkParent(pid_t child, const ForkToken& token, ForkKind kind) {
  if (token.slack >= 0) {
    int saved = errno;
    UnmarkSlack(token.slack);
    errno = saved;
  }
  // A token with no time was not prepared (a dormant image, or one holding
  // no socket): no event.
  if (!Recording() || child <= 0 || token.mono_ns == 0) return;
  Scope scope;
  Event ev = MakeEvent(EventType::kFork, -1, 0, 0, 0);
  ev.mono_ns = token.mono_ns;
  ev.arg = static_cast<uint64_t>(child);
  ev.blob = token.stack;
  ev.aux = static_cast<uint32_t>(kind);
  Push(ev, false);
}

CA_CHILD_PATH void ForkChild(ForkKind kind) {
  if (!Recording()) return;
  Scope scope;
  if (t_tid != 0) t_tid = 0;
  bool parent_dormant = g_start.load(std::memory_order_relaxed) == kDormant;
  UnwinderForkChild();
  java::ForkChild();
  // A look at the fds another thread had under way: this child looks again.
  if (g_scan.load(std::memory_order_relaxed) == kScanning) {
    g_scan.store(kScanPending, std::memory_order_relaxed);
  }
  // A dormant image tracks no socket (the first one starts it): this child
  // holds none of the shim's, has no ring to let go of, and writes nothing
  // (each page of the shim's it wrote, or even read for the first time,
  // would be a fault: a shell pays that for every command it runs).
  if (parent_dormant) return;
  // Every socket the parent had is now held here too, since the fork.
  // Reads in the parent are not reads in the child.
  int held = 0;
  g_fds.ForEach([&held](int, FdEntry& e) {
    e.last_use_ip.store(0, std::memory_order_relaxed);
    ++held;
  });
  // The parent's ring stays the parent's: let go of it (and of its memfd,
  // if the parent had not handed it over yet) and start our own. A child
  // with no socket (most of them exec at once) only forgets the parent's
  // rings; it unmaps nothing and replaces its stack table only if it starts
  // (StartRing).
  for (RingWriter& ring : g_rings) {
    // The parent's memfd, if it still had one: close our copy, unless the
    // program has put something else on that number meanwhile.
    if (ring.fd() >= 0) {
      bool ours = ring.FdStillOurs();
      int inherited = ring.ReleaseFd();
      if (ours) Real().close(inherited);
    }
    if (!ring.ok()) continue;
    if (held == 0) {
      ring.Forget();
    } else {
      ring.Abandon();
    }
  }
  g_ring_index.store(0, std::memory_order_release);
  g_registered.store(false);
  g_registering.store(false);
  g_last_register_try.store(0, std::memory_order_relaxed);
  g_stacks_stale = true;
  if (held == 0) {
    // Nothing to say until this process makes a socket of its own.
    g_start.store(kDormant, std::memory_order_release);
    return;
  }
  g_start.store(kStarting, std::memory_order_release);
  StartRing(/*snapshot=*/true, kind == ForkKind::kDaemon);
}

CA_CHILD_PATH ExecMark OnExec() {
  ExecMark mark;
  if (!Recording() || g_start.load(std::memory_order_acquire) != kStarted) {
    return mark;
  }
  Scope scope;
  Event ev = MakeEvent(EventType::kExec, -1, 0, 0, 0);
  Push(ev, true);
  mark.slack = MarkSlack();
  return mark;
}

void AfterFailedExec(const ExecMark& mark) {
  if (mark.slack < 0) return;
  Scope scope;
  UnmarkSlack(mark.slack);
}

}  // namespace closeaudit::shim

// The vfork trampoline (vfork_x86_64.S) calls these two, in the parent only.
using closeaudit::shim::ForkKind;

extern "C" void* closeaudit_vfork_prepare() {
  closeaudit::shim::EnsureScanned();
  closeaudit::shim::t_vfork_token =
      closeaudit::shim::ForkPrepare(/*exec_child=*/true);
  return reinterpret_cast<void*>(closeaudit::shim::Real().vfork);
}

extern "C" void closeaudit_vfork_parent(int pid) {
  closeaudit::shim::ForkParent(pid, closeaudit::shim::t_vfork_token,
                               ForkKind::kVfork);
}

namespace closeaudit::shim {
}  // namespace closeaudit::shim
