/* closeaudit_node.node: the Node.js agent's way into the library.
 *
 * agent.js learns in JavaScript which code owns a connection (the listeners
 * of the server that accepted it, the call that opened it) and hands it
 * here as plain frames. This addon keeps each distinct set of frames for the
 * life of the process and passes it, with the socket's fd, to
 * closeaudit_js_handler() in libcloseaudit.so (shim/closeaudit_js.h), which
 * copies it into the trace once.
 *
 * Node-API only, so one build loads in every Node.js release (it asks for
 * version 8, Node.js 12.22 and later). Without the library in the process
 * (the agent loaded by hand, or the library not preloaded) `active` is
 * false and the agent does nothing.
 *
 *   define([fn, file, line, column, ...]) -> id (0: the table is full)
 *   note(fd, flags, id)
 *   hello(version, flags): the agent runs (closeaudit_js_agent())
 */
#define NAPI_VERSION 8
#include <dlfcn.h>
#include <node_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim/closeaudit_js.h"

typedef void (*handler_fn)(int, unsigned, struct closeaudit_js_stack*);
typedef void (*agent_fn)(unsigned, unsigned);

/* Each distinct place the agent names is one stack; a program has a few
 * (its servers, its call sites that connect). Past this many, new ones are
 * not named. */
#define MAX_STACKS 4096
#define MAX_FRAMES 16
#define MAX_STRING 4096

static handler_fn g_handler;
static agent_fn g_agent;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct closeaudit_js_stack* _Atomic g_stacks[MAX_STACKS + 1];
static uint32_t g_count;

static char* CopyString(napi_env env, napi_value v) {
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) return NULL;
  if (n > MAX_STRING) n = MAX_STRING;
  char* s = malloc(n + 1);
  if (s == NULL) return NULL;
  if (napi_get_value_string_utf8(env, v, s, n + 1, &n) != napi_ok) {
    free(s);
    return NULL;
  }
  return s;
}

static int32_t Int(napi_env env, napi_value v) {
  int32_t n = 0;
  if (napi_get_value_int32(env, v, &n) != napi_ok) return 0;
  return n;
}

static napi_value Uint(napi_env env, uint32_t n) {
  napi_value v;
  napi_create_uint32(env, n, &v);
  return v;
}

static void FreeStack(struct closeaudit_js_stack* st) {
  for (uint32_t i = 0; i < st->count; ++i) {
    free((void*)st->frames[i].function);
    free((void*)st->frames[i].file);
  }
  free((void*)st->frames);
  free(st);
}

static napi_value Define(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok ||
      argc < 1) {
    return Uint(env, 0);
  }
  uint32_t length = 0;
  if (napi_get_array_length(env, argv[0], &length) != napi_ok) {
    return Uint(env, 0);
  }
  uint32_t count = length / 4;
  if (count > MAX_FRAMES) count = MAX_FRAMES;
  if (count == 0) return Uint(env, 0);
  struct closeaudit_js_stack* st = calloc(1, sizeof(*st));
  struct closeaudit_js_frame* frames = calloc(count, sizeof(*frames));
  if (st == NULL || frames == NULL) {
    free(st);
    free(frames);
    return Uint(env, 0);
  }
  st->frames = frames;
  int ok = 1;
  for (uint32_t i = 0; i < count && ok; ++i) {
    napi_value v[4];
    for (uint32_t k = 0; k < 4; ++k) {
      if (napi_get_element(env, argv[0], i * 4 + k, &v[k]) != napi_ok) ok = 0;
    }
    if (!ok) break;
    frames[i].function = CopyString(env, v[0]);
    frames[i].file = CopyString(env, v[1]);
    frames[i].line = Int(env, v[2]);
    frames[i].column = Int(env, v[3]);
    st->count = i + 1;
    if (frames[i].function == NULL || frames[i].file == NULL) ok = 0;
  }
  if (!ok) {
    FreeStack(st);
    return Uint(env, 0);
  }
  /* Worker threads each run their own agent: ids are shared. */
  pthread_mutex_lock(&g_lock);
  uint32_t id = g_count < MAX_STACKS ? ++g_count : 0;
  if (id != 0) atomic_store(&g_stacks[id], st);
  pthread_mutex_unlock(&g_lock);
  if (id == 0) FreeStack(st);
  return Uint(env, id);
}

/* The call's integer arguments into `out`; false if it has fewer than n. */
static int IntArgs(napi_env env, napi_callback_info info, size_t n,
                   int32_t* out) {
  size_t argc = 3;
  napi_value argv[3];
  if (n > 3 || napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok ||
      argc < n) {
    return 0;
  }
  for (size_t i = 0; i < n; ++i) out[i] = Int(env, argv[i]);
  return 1;
}

static napi_value Undefined(napi_env env) {
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

static napi_value Note(napi_env env, napi_callback_info info) {
  int32_t a[3];
  if (!IntArgs(env, info, 3, a)) return Undefined(env);
  int32_t fd = a[0];
  uint32_t flags = (uint32_t)a[1];
  uint32_t id = (uint32_t)a[2];
  if (fd < 0 || id == 0 || id > MAX_STACKS) return Undefined(env);
  struct closeaudit_js_stack* st = atomic_load(&g_stacks[id]);
  if (st != NULL && g_handler != NULL) g_handler(fd, flags, st);
  return Undefined(env);
}

static napi_value Hello(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (IntArgs(env, info, 2, a) && g_agent != NULL) {
    g_agent((unsigned)a[0], (unsigned)a[1]);
  }
  return Undefined(env);
}

static void Export(napi_env env, napi_value exports, const char* name,
                   napi_callback cb) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) ==
      napi_ok) {
    napi_set_named_property(env, exports, name, fn);
  }
}

NAPI_MODULE_INIT() {
  if (g_handler == NULL) {
    g_handler = (handler_fn)dlsym(RTLD_DEFAULT, "closeaudit_js_handler");
    g_agent = (agent_fn)dlsym(RTLD_DEFAULT, "closeaudit_js_agent");
  }
  napi_value active;
  napi_get_boolean(env, g_handler != NULL, &active);
  napi_set_named_property(env, exports, "active", active);
  Export(env, exports, "define", Define);
  Export(env, exports, "note", Note);
  Export(env, exports, "hello", Hello);
  return exports;
}
