// Where the per-user collector lives when nobody says otherwise. Shared by the
// shim (which connects there, and starts `closeaudit daemon` if nobody
// answers) and the collector (which listens there). Heap-free, so the shim can
// call it from its constructor.
#ifndef CLOSEAUDIT_COMMON_PATHS_H_
#define CLOSEAUDIT_COMMON_PATHS_H_

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

namespace closeaudit::paths {

inline constexpr char kSocketName[] = "collector.sock";

// $XDG_RUNTIME_DIR/closeaudit when XDG_RUNTIME_DIR is set, otherwise
// /tmp/closeaudit-UID. The collector creates it with mode 0700.
inline void DefaultRuntimeDir(char* out, size_t size) {
  const char* xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg && xdg[0] == '/') {
    snprintf(out, size, "%s/closeaudit", xdg);
  } else {
    snprintf(out, size, "/tmp/closeaudit-%u", static_cast<unsigned>(getuid()));
  }
}

}  // namespace closeaudit::paths

#endif  // CLOSEAUDIT_COMMON_PATHS_H_
