// The Node.js set-up of the literal form (shim/node_env.h).
#include "shim/node_env.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <initializer_list>

#include "common/node_options.h"
#include "shim/env.h"

namespace closeaudit::shim {
namespace {

// The library's start calls no libc string function (shim/env.h).
const char* AfterLastSlash(const char* path) {
  const char* base = path;
  for (const char* p = path; *p != '\0'; ++p) {
    if (*p == '/') base = p + 1;
  }
  return base;
}

}  // namespace

void PrepareNode() {
  // The path the image was exec'd by, from the kernel's auxiliary vector:
  // no system call (/proc/self/exe is read later, when a ring starts).
  const char* exe = reinterpret_cast<const char*>(getauxval(AT_EXECFN));
  if (exe == nullptr || !node::IsNodeBinaryName(AfterLastSlash(exe))) return;
  const char* opt_out = EnvValue("CLOSEAUDIT_NODE");
  if (opt_out != nullptr) {
    const char* rest = SkipPrefix(opt_out, "off");
    if (rest != nullptr && *rest == '\0') return;
  }
  const char* existing = EnvValue("NODE_OPTIONS");
  if (node::LoadsAgent(existing)) return;  // closeaudit run, or our parent
  // The agent is installed beside the library: LIBDIR/closeaudit/node/ (the
  // build tree has it in node/ beside the library).
  Dl_info self{};
  if (dladdr(reinterpret_cast<void*>(&PrepareNode), &self) == 0 ||
      self.dli_fname == nullptr) {
    return;
  }
  static char agent[4096];
  size_t dir = static_cast<size_t>(AfterLastSlash(self.dli_fname) - self.dli_fname);
  if (dir > 0) --dir;  // the slash
  bool found = false;
  for (const char* sub : {"/closeaudit/node/closeaudit_agent.js",
                          "/node/closeaudit_agent.js"}) {
    size_t n = 0;
    for (; n < dir && n + 1 < sizeof(agent); ++n) agent[n] = self.dli_fname[n];
    for (const char* p = sub; *p != '\0' && n + 1 < sizeof(agent); ++p) {
      agent[n++] = *p;
    }
    agent[n] = '\0';
    if (n + 1 >= sizeof(agent)) return;
    if (access(agent, R_OK) == 0) {
      found = true;
      break;
    }
  }
  if (!found) return;
  static char options[16384];
  if (!node::NodeOptionsWithAgent(existing, agent, options, sizeof(options))) {
    return;  // the program's options are too long to add to: left alone
  }
  // Node.js reads NODE_OPTIONS in main, after the library's constructor.
  setenv("NODE_OPTIONS", options, 1);
}

}  // namespace closeaudit::shim
