/* E2E test program: a library that carries its own copy of libuv's and
 * libevent's exported functions, loaded RTLD_LOCAL (as Python loads an
 * extension module such as uvloop, which builds libuv in).
 *
 * Usage: private_copy LIBRARY
 * Built as the host (plain) and as LIBRARY (-DE2E_PRIVATE_COPY). The
 * library's own uv_read_start(), event_new() and bufferevent_setcb() are
 * stand-ins that return or record a marker; its run_copy() calls them
 * through its own PLT, which the preloaded audit library intercepts as
 * well. The host prints what run_copy() returned: the same with and without
 * the audit, or the audit changed the program.
 */
#include <dlfcn.h>
#include <stdio.h>

#ifdef E2E_PRIVATE_COPY
static int g_setcb_calls;

__attribute__((visibility("default"))) int uv_read_start(void *stream,
                                                          void *alloc_cb,
                                                          void *read_cb) {
  (void)stream, (void)alloc_cb, (void)read_cb;
  return 42;
}

__attribute__((visibility("default"))) void *event_new(void *base, int fd,
                                                       short events, void *cb,
                                                       void *arg) {
  (void)base, (void)fd, (void)events, (void)cb, (void)arg;
  return &g_setcb_calls;
}

__attribute__((visibility("default"))) void bufferevent_setcb(
    void *bev, void *readcb, void *writecb, void *eventcb, void *cbarg) {
  (void)bev, (void)readcb, (void)writecb, (void)eventcb, (void)cbarg;
  ++g_setcb_calls;
}

__attribute__((visibility("default"))) int run_copy(void) {
  int r = uv_read_start(NULL, NULL, NULL);
  if (event_new(NULL, -1, 0, NULL, NULL) != &g_setcb_calls) return -1;
  bufferevent_setcb(NULL, NULL, NULL, NULL, NULL);
  bufferevent_setcb(NULL, NULL, NULL, NULL, NULL);
  return r + g_setcb_calls; /* 44 */
}
#else
int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: private_copy LIBRARY\n");
    return 2;
  }
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "private_copy: %s\n", dlerror());
    return 1;
  }
  int (*run_copy)(void) = (int (*)(void))dlsym(lib, "run_copy");
  if (run_copy == NULL) return 1;
  printf("run_copy: %d\n", run_copy());
  return 0;
}
#endif
