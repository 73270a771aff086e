// The event libraries' calls libcloseaudit.so interposes: where a program
// hands a socket, and the callback its events go to, to libevent or libuv.
//
// When the EOF is read inside an event library, the stack of the read shows
// the library's loop, not the program's code; the callback the library
// delivers it to is the code that should have closed. So the shim notes,
// per socket, which callback was registered for it and where (a kHandler
// event, wire.h), and the collector names that callback in the finding.
//
// The same rules as for the libc wrappers hold: the real function is called
// first and its result returned unchanged, errno is left as the real call
// left it (OnHandler saves and restores it), nothing is allocated once a
// call site's real function is known, and a program that never loads the
// library never reaches this code. The real functions are found at a call
// site's first call (Next, below), not at start: a library dlopen'd later
// (and the objects that call it) binds to these definitions just the same,
// and programs without the library pay nothing. Calls a library makes to its own exported functions may reach
// these wrappers too (libevent's filters call bufferevent_setcb); the
// collector keeps only callbacks in the program's own code.
#include <dlfcn.h>
#include <errno.h>

#include <atomic>
#include <cstdint>

#include "common/wire.h"
#include "shim/recorder.h"

#define CA_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using closeaudit::wire::HandlerKind;
namespace core = closeaudit::shim;

// Which definition is the real one depends on who called. A program or a
// library linked with libevent or libuv calls the shared library's, the next
// one after this library in the global scope (dlsym(RTLD_NEXT)). But a
// library that carries a copy of its own and exports it (uvloop's libuv, in
// an extension module Python loaded RTLD_LOCAL) calls its copy through its
// PLT, which this library's definition intercepts too, and RTLD_NEXT never
// searches a local scope. So the caller's own object is asked first (dlsym
// on a RTLD_NOLOAD handle of it searches it and its dependencies), then
// RTLD_NEXT; a definition in this library is never the answer. Answers are
// kept per call site (return address), a few call sites per function.
// (No function-local static: its guard would need libstdc++ at run time.)
std::atomic<const void*> g_self_base{nullptr};

bool InThisLibrary(const void* p) {
  const void* self_base = g_self_base.load(std::memory_order_acquire);
  Dl_info info;
  if (self_base == nullptr &&
      dladdr(reinterpret_cast<const void*>(&InThisLibrary), &info) != 0) {
    self_base = info.dli_fbase;
    g_self_base.store(self_base, std::memory_order_release);
  }
  return p == nullptr ||
         (dladdr(p, &info) != 0 && info.dli_fbase == self_base);
}

void* Lookup(const char* name, const void* caller) {
  void* fn = nullptr;
  Dl_info info;
  if (dladdr(caller, &info) != 0 && info.dli_fname != nullptr &&
      info.dli_fname[0] != '\0') {
    if (void* handle = dlopen(info.dli_fname, RTLD_NOLOAD | RTLD_LAZY)) {
      fn = dlsym(handle, name);
      dlclose(handle);  // only drops the reference RTLD_NOLOAD took
      if (InThisLibrary(fn)) fn = nullptr;
    }
  }
  if (fn == nullptr) fn = dlsym(RTLD_NEXT, name);
  return InThisLibrary(fn) ? nullptr : fn;
}

template <typename Fn>
struct Next {
  static constexpr int kSites = 8;
  std::atomic<uintptr_t> site[kSites];
  std::atomic<Fn> fn[kSites];

  Fn Get(const char* name, const void* caller) {
    auto at = reinterpret_cast<uintptr_t>(caller);
    for (int i = 0; i < kSites; ++i) {
      if (site[i].load(std::memory_order_acquire) == at) {
        if (Fn f = fn[i].load(std::memory_order_acquire)) return f;
        break;  // being filled in: look it up here
      }
    }
    int saved = errno;
    Fn f = reinterpret_cast<Fn>(Lookup(name, caller));
    errno = saved;
    if (f == nullptr) return nullptr;
    for (int i = 0; i < kSites; ++i) {
      uintptr_t expected = 0;
      if (site[i].compare_exchange_strong(expected, at,
                                          std::memory_order_acq_rel)) {
        fn[i].store(f, std::memory_order_release);
        break;
      }
      if (expected == at) break;
    }
    return f;
  }
};

#define CA_CALLER __builtin_return_address(0)

// libevent's types, as far as these calls need them (event2/*.h): the
// structures are opaque, evutil_socket_t is int on Linux.
struct bufferevent;
struct event_base;
struct event;
using bufferevent_data_cb = void (*)(bufferevent*, void*);
using bufferevent_event_cb = void (*)(bufferevent*, short, void*);
using event_callback_fn = void (*)(int, short, void*);
constexpr int kBevOptCloseOnFree = 1 << 0;  // BEV_OPT_CLOSE_ON_FREE
constexpr short kEvRead = 0x02;              // EV_READ
constexpr short kEvSignal = 0x08;            // EV_SIGNAL: fd is a signal number

// An event whose callback will see the socket's EOF: one that waits for it
// to be readable (a signal's "fd" is the signal's number).
bool ForReading(int fd, short events) {
  return fd >= 0 && (events & kEvRead) && !(events & kEvSignal);
}

// libuv's (uv.h): uv_stream_t and uv_handle_t share their first fields.
struct uv_stream_s;
struct uv_handle_s;
using uv_alloc_cb = void (*)(uv_handle_s*, size_t, void*);
using uv_read_cb = void (*)(uv_stream_s*, long, const void*);

Next<int (*)(bufferevent*)> g_bufferevent_getfd{};

// The bufferevent's fd, from the copy of libevent the caller uses.
int BuffereventFd(bufferevent* bev, const void* caller) {
  auto getfd = g_bufferevent_getfd.Get("bufferevent_getfd", caller);
  if (getfd == nullptr || bev == nullptr) return -1;
  int saved = errno;
  int fd = getfd(bev);
  errno = saved;
  return fd;
}

}  // namespace

CA_EXPORT bufferevent* bufferevent_socket_new(event_base* base, int fd,
                                              int options) {
  static Next<bufferevent* (*)(event_base*, int, int)> real{};
  auto fn = real.Get("bufferevent_socket_new", CA_CALLER);
  if (fn == nullptr) {
    errno = ENOSYS;
    return nullptr;
  }
  bufferevent* bev = fn(base, fd, options);
  if (bev != nullptr && fd >= 0) {
    core::OnHandler(fd, HandlerKind::kBufferevent,
                    (options & kBevOptCloseOnFree)
                        ? closeaudit::wire::kHandlerCloseOnFree
                        : 0,
                    nullptr);
  }
  return bev;
}

CA_EXPORT void bufferevent_setcb(bufferevent* bev, bufferevent_data_cb readcb,
                                 bufferevent_data_cb writecb,
                                 bufferevent_event_cb eventcb, void* cbarg) {
  static Next<void (*)(bufferevent*, bufferevent_data_cb, bufferevent_data_cb,
                       bufferevent_event_cb, void*)>
      real{};
  const void* caller = CA_CALLER;
  auto fn = real.Get("bufferevent_setcb", caller);
  if (fn == nullptr) return;
  fn(bev, readcb, writecb, eventcb, cbarg);
  // The EOF goes to the event callback (BEV_EVENT_EOF); a bufferevent
  // without one tells the program nothing but that its reads stop.
  if (eventcb == nullptr) return;
  int fd = BuffereventFd(bev, caller);
  if (fd >= 0) {
    core::OnHandler(fd, HandlerKind::kBuffereventCb, 0,
                    reinterpret_cast<const void*>(eventcb));
  }
}

CA_EXPORT void bufferevent_free(bufferevent* bev) {
  static Next<void (*)(bufferevent*)> real{};
  const void* caller = CA_CALLER;
  auto fn = real.Get("bufferevent_free", caller);
  if (fn == nullptr) return;
  int fd = BuffereventFd(bev, caller);  // before the bufferevent is gone
  if (fd >= 0) core::OnHandler(fd, HandlerKind::kBuffereventFree, 0, nullptr);
  fn(bev);
}

CA_EXPORT event* event_new(event_base* base, int fd, short events,
                           event_callback_fn cb, void* arg) {
  static Next<event* (*)(event_base*, int, short, event_callback_fn, void*)>
      real{};
  auto fn = real.Get("event_new", CA_CALLER);
  if (fn == nullptr) {
    errno = ENOSYS;
    return nullptr;
  }
  event* ev = fn(base, fd, events, cb, arg);
  if (ev != nullptr && ForReading(fd, events) && cb != nullptr) {
    core::OnHandler(fd, HandlerKind::kEvent, 0,
                    reinterpret_cast<const void*>(cb));
  }
  return ev;
}

CA_EXPORT int event_assign(event* ev, event_base* base, int fd, short events,
                           event_callback_fn cb, void* arg) {
  static Next<int (*)(event*, event_base*, int, short, event_callback_fn,
                      void*)>
      real{};
  auto fn = real.Get("event_assign", CA_CALLER);
  if (fn == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  int r = fn(ev, base, fd, events, cb, arg);
  if (r == 0 && ForReading(fd, events) && cb != nullptr) {
    core::OnHandler(fd, HandlerKind::kEvent, 0,
                    reinterpret_cast<const void*>(cb));
  }
  return r;
}

CA_EXPORT int uv_read_start(uv_stream_s* stream, uv_alloc_cb alloc_cb,
                            uv_read_cb read_cb) {
  static Next<int (*)(uv_stream_s*, uv_alloc_cb, uv_read_cb)> real{};
  static Next<int (*)(const uv_handle_s*, int*)> fileno{};
  const void* caller = CA_CALLER;
  auto fn = real.Get("uv_read_start", caller);
  if (fn == nullptr) return -ENOSYS;  // libuv's errors are negative errnos
  int r = fn(stream, alloc_cb, read_cb);
  auto fd_of = fileno.Get("uv_fileno", caller);
  if (r == 0 && read_cb != nullptr && fd_of != nullptr) {
    int saved = errno;
    int fd = -1;
    bool ok = fd_of(reinterpret_cast<const uv_handle_s*>(stream), &fd) == 0;
    errno = saved;
    if (ok && fd >= 0) {
      core::OnHandler(fd, HandlerKind::kUvRead, 0,
                      reinterpret_cast<const void*>(read_cb));
    }
  }
  return r;
}

// The entry point of the Python-side helper (shim/python/sitecustomize.py),
// called through ctypes when an asyncio loop makes a transport for a
// connection: the handler the connection's events go to, by its
// definition. `flags` is wire::kHandlerPyStreams for a start_server
// callback, 0 for a Protocol's method. Not one of libc's names: nothing
// else calls it.
CA_EXPORT void closeaudit_python_handler(int fd, const char* name,
                                         const char* file, int line,
                                         unsigned flags) {
  if (fd < 0) return;
  core::OnPythonHandler(fd, flags, name, file, line);
}

// The entry point of the Node.js agent's addon (shim/node/): what the agent
// learned of the connection on fd, as JavaScript frames (shim/closeaudit_js.h).
CA_EXPORT void closeaudit_js_handler(int fd, unsigned flags,
                                     closeaudit_js_stack* stack) {
  if (fd < 0) return;
  core::OnJsHandler(fd, flags, stack);
}

CA_EXPORT void closeaudit_js_agent(unsigned version, unsigned flags) {
  core::OnJsAgent(version, flags);
}
