/* The library's entry point for its Node.js side (shim/node/): what the
 * JavaScript agent learned of a connection, by the JavaScript frames that
 * name it. C, so that the addon (shim/node/addon.c) and the library share
 * one declaration. */
#ifndef CLOSEAUDIT_SHIM_CLOSEAUDIT_JS_H_
#define CLOSEAUDIT_SHIM_CLOSEAUDIT_JS_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One JavaScript frame: the function's name ("" for an anonymous one), its
 * script (a path, or "node:net" for Node.js's own) and the line. */
struct closeaudit_js_frame {
  const char* function;
  const char* file;
  int32_t line;
  int32_t column;
};

/* Frames, innermost first, that the caller keeps alive and unchanged for as
 * long as the process runs: the library copies them into its trace once per
 * trace, and keeps in `cache` (zero it) where it did. */
struct closeaudit_js_stack {
  uint32_t count; /* at most 16 are taken */
  uint32_t reserved;
  const struct closeaudit_js_frame* frames;
  uint64_t cache;
};

/* Tells the library that `stack` names the connection on `fd` in the way
 * `flags` says (common/wire.h: wire::NodeRole << 8, and the kHandlerNode
 * flags). A socket the library does not track is ignored. */
void closeaudit_js_handler(int fd, unsigned flags,
                           struct closeaudit_js_stack* stack);

/* Tells the library that the agent runs in this image, under Node.js
 * `version` (major << 16 | minor << 8 | patch); `flags` 1 when V8 writes
 * its perf map only because closeaudit asked for it. */
void closeaudit_js_agent(unsigned version, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* CLOSEAUDIT_SHIM_CLOSEAUDIT_JS_H_ */
