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
// left it (OnHandler saves and restores it), nothing is allocated, and a
// program that never loads the library never reaches this code. The real
// functions are found at their first call with dlsym(RTLD_NEXT), not at
// start: a library dlopen'd later (and the objects that call it) binds to
// these definitions just the same, and programs without the library pay
// nothing. Calls a library makes to its own exported functions may reach
// these wrappers too (libevent's filters call bufferevent_setcb); the
// collector keeps only callbacks in the program's own code.
#include <dlfcn.h>
#include <errno.h>

#include <atomic>

#include "common/wire.h"
#include "shim/recorder.h"

#define CA_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using closeaudit::wire::HandlerKind;
namespace core = closeaudit::shim;

// The definition after this library's: resolved once, at the first call.
template <typename Fn>
Fn Next(std::atomic<Fn>& cache, const char* name) {
  Fn fn = cache.load(std::memory_order_acquire);
  if (fn == nullptr) {
    int saved = errno;
    fn = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
    errno = saved;
    cache.store(fn, std::memory_order_release);
  }
  return fn;
}

// libevent's types, as far as these calls need them (event2/*.h): the
// structures are opaque, evutil_socket_t is int on Linux.
struct bufferevent;
struct event_base;
struct event;
using bufferevent_data_cb = void (*)(bufferevent*, void*);
using bufferevent_event_cb = void (*)(bufferevent*, short, void*);
using event_callback_fn = void (*)(int, short, void*);
constexpr int kBevOptCloseOnFree = 1 << 0;  // BEV_OPT_CLOSE_ON_FREE

// libuv's (uv.h): uv_stream_t and uv_handle_t share their first fields.
struct uv_stream_s;
struct uv_handle_s;
using uv_alloc_cb = void (*)(uv_handle_s*, size_t, void*);
using uv_read_cb = void (*)(uv_stream_s*, long, const void*);

std::atomic<int (*)(bufferevent*)> g_bufferevent_getfd{nullptr};

int BuffereventFd(bufferevent* bev) {
  auto getfd = Next(g_bufferevent_getfd, "bufferevent_getfd");
  if (getfd == nullptr || bev == nullptr) return -1;
  int saved = errno;
  int fd = getfd(bev);
  errno = saved;
  return fd;
}

}  // namespace

CA_EXPORT bufferevent* bufferevent_socket_new(event_base* base, int fd,
                                              int options) {
  static std::atomic<bufferevent* (*)(event_base*, int, int)> real{nullptr};
  auto fn = Next(real, "bufferevent_socket_new");
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
  static std::atomic<void (*)(bufferevent*, bufferevent_data_cb,
                              bufferevent_data_cb, bufferevent_event_cb,
                              void*)>
      real{nullptr};
  auto fn = Next(real, "bufferevent_setcb");
  if (fn == nullptr) return;
  fn(bev, readcb, writecb, eventcb, cbarg);
  // The EOF goes to the event callback (BEV_EVENT_EOF); a bufferevent
  // without one tells the program only by its reads stopping.
  const void* cb = eventcb ? reinterpret_cast<const void*>(eventcb)
                           : reinterpret_cast<const void*>(readcb);
  if (cb == nullptr) return;
  int fd = BuffereventFd(bev);
  if (fd >= 0) core::OnHandler(fd, HandlerKind::kBuffereventCb, 0, cb);
}

CA_EXPORT void bufferevent_free(bufferevent* bev) {
  static std::atomic<void (*)(bufferevent*)> real{nullptr};
  auto fn = Next(real, "bufferevent_free");
  if (fn == nullptr) return;
  int fd = BuffereventFd(bev);  // before the bufferevent is gone
  if (fd >= 0) core::OnHandler(fd, HandlerKind::kBuffereventFree, 0, nullptr);
  fn(bev);
}

CA_EXPORT event* event_new(event_base* base, int fd, short events,
                           event_callback_fn cb, void* arg) {
  static std::atomic<event* (*)(event_base*, int, short, event_callback_fn,
                                void*)>
      real{nullptr};
  auto fn = Next(real, "event_new");
  if (fn == nullptr) {
    errno = ENOSYS;
    return nullptr;
  }
  event* ev = fn(base, fd, events, cb, arg);
  if (ev != nullptr && fd >= 0 && cb != nullptr) {
    core::OnHandler(fd, HandlerKind::kEvent, 0,
                    reinterpret_cast<const void*>(cb));
  }
  return ev;
}

CA_EXPORT int event_assign(event* ev, event_base* base, int fd, short events,
                           event_callback_fn cb, void* arg) {
  static std::atomic<int (*)(event*, event_base*, int, short,
                             event_callback_fn, void*)>
      real{nullptr};
  auto fn = Next(real, "event_assign");
  if (fn == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  int r = fn(ev, base, fd, events, cb, arg);
  if (r == 0 && fd >= 0 && cb != nullptr) {
    core::OnHandler(fd, HandlerKind::kEvent, 0,
                    reinterpret_cast<const void*>(cb));
  }
  return r;
}

CA_EXPORT int uv_read_start(uv_stream_s* stream, uv_alloc_cb alloc_cb,
                            uv_read_cb read_cb) {
  static std::atomic<int (*)(uv_stream_s*, uv_alloc_cb, uv_read_cb)> real{
      nullptr};
  static std::atomic<int (*)(const uv_handle_s*, int*)> fileno{nullptr};
  auto fn = Next(real, "uv_read_start");
  if (fn == nullptr) return -ENOSYS;  // libuv's errors are negative errnos
  int r = fn(stream, alloc_cb, read_cb);
  auto fd_of = Next(fileno, "uv_fileno");
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
