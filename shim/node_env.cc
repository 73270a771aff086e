// The Node.js set-up of the literal form (shim/node_env.h).
#include "shim/node_env.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <initializer_list>

#include "common/node_options.h"
#include "shim/env.h"

namespace closeaudit::shim {
namespace {

// "node", "nodejs", "node20": the names Node.js's binary goes by.
bool IsNode(const char* exe) {
  const char* base = strrchr(exe, '/');
  base = base ? base + 1 : exe;
  const char* rest = SkipPrefix(base, "node");
  if (rest == nullptr) return false;
  if (SkipPrefix(rest, "js") != nullptr && rest[2] == '\0') return true;
  for (; *rest != '\0'; ++rest) {
    if ((*rest < '0' || *rest > '9') && *rest != '.') return false;
  }
  return true;
}

}  // namespace

void PrepareNode() {
  // The path the image was exec'd by, from the kernel's auxiliary vector:
  // no system call (/proc/self/exe is read later, when a ring starts).
  const char* exe = reinterpret_cast<const char*>(getauxval(AT_EXECFN));
  if (exe == nullptr || !IsNode(exe)) return;
  const char* opt_out = EnvValue("CLOSEAUDIT_NODE");
  if (opt_out != nullptr && strcmp(opt_out, "off") == 0) return;
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
  const char* slash = strrchr(self.dli_fname, '/');
  size_t dir = slash ? static_cast<size_t>(slash - self.dli_fname) : 0;
  bool found = false;
  for (const char* sub : {"/closeaudit/node/closeaudit_agent.js",
                          "/node/closeaudit_agent.js"}) {
    if (dir + strlen(sub) + 1 > sizeof(agent)) return;
    memcpy(agent, self.dli_fname, dir);
    strcpy(agent + dir, sub);
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
