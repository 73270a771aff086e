// The NODE_OPTIONS a Node.js program runs with under the audit: V8's flags
// that make its JavaScript frames nameable, and the agent's --require
// (shim/node/closeaudit_agent.js), ahead of the program's own options. Shared by
// `closeaudit run`, which sets it for the command, and the library, which
// sets it in a Node.js process nobody set it for (the literal LD_PRELOAD
// form). Heap-free: the library calls it before main.
#ifndef CLOSEAUDIT_COMMON_NODE_OPTIONS_H_
#define CLOSEAUDIT_COMMON_NODE_OPTIONS_H_

#include <stddef.h>

namespace closeaudit::node {

// --perf-basic-prof-only-functions: V8 writes /tmp/perf-PID.map, a line per
// compiled function. --interpreted-frames-native-stack: each interpreted
// function runs from a copy of the interpreter's entry of its own, so that
// the map names it too.
inline constexpr char kV8Flags[] =
    "--perf-basic-prof-only-functions --interpreted-frames-native-stack";
// How the agent's path ends wherever it is installed.
inline constexpr char kAgentSuffix[] = "/node/closeaudit_agent.js";

// Whether `name`, a binary's file name without its directory, is one that
// Node.js's binary goes by: "node", "nodejs", "node20", "node22.1".
inline bool IsNodeBinaryName(const char* name) {
  const char* p = "node";
  for (; *p != '\0' && *name == *p; ++p, ++name) {
  }
  if (*p != '\0') return false;
  if (name[0] == 'j' && name[1] == 's' && name[2] == '\0') return true;
  for (; *name != '\0'; ++name) {
    if ((*name < '0' || *name > '9') && *name != '.') return false;
  }
  return true;
}

// Whether the options already load closeaudit's agent (run by `closeaudit
// run`, or by a parent process the library set them for). By hand, as
// everything here: the library calls it before a sanitizer runtime (in the
// tests' builds) may have set up its own string functions.
inline bool LoadsAgent(const char* options) {
  if (options == nullptr) return false;
  for (const char* p = options; *p != '\0'; ++p) {
    const char* a = p;
    const char* b = kAgentSuffix;
    while (*b != '\0' && *a == *b) {
      ++a;
      ++b;
    }
    if (*b == '\0') return true;
  }
  return false;
}

// Writes the V8 flags, `--require "AGENT"` and then `existing` (may be null)
// into out, NUL-terminated. False if it does not fit in `cap` bytes.
// NODE_OPTIONS splits on spaces, and within double quotes takes a
// backslash as an escape: the agent's path is quoted that way.
inline bool NodeOptionsWithAgent(const char* existing, const char* agent,
                                 char* out, size_t cap) {
  size_t n = 0;
  auto put = [&](char c) {
    if (n + 1 >= cap) return false;
    out[n++] = c;
    return true;
  };
  auto puts = [&](const char* s) {
    for (; *s != '\0'; ++s) {
      if (!put(*s)) return false;
    }
    return true;
  };
  bool ok = puts(kV8Flags) && puts(" --require \"");
  for (const char* p = agent; ok && *p != '\0'; ++p) {
    if (*p == '"' || *p == '\\') ok = put('\\');
    ok = ok && put(*p);
  }
  ok = ok && put('"');
  if (ok && existing != nullptr && *existing != '\0') {
    ok = put(' ') && puts(existing);
  }
  if (cap > 0) out[ok ? n : 0] = '\0';
  return ok;
}

}  // namespace closeaudit::node

#endif  // CLOSEAUDIT_COMMON_NODE_OPTIONS_H_
