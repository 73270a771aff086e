// Environment lookups for the shim's start, without libc's getenv.
//
// Every process the library is loaded into asks for half a dozen variables
// at start. getenv's first call goes through the loader's lazy binding (a
// symbol lookup, with the vector registers saved and restored) and each call
// scans the whole environment; this reads `environ` directly, which the
// loader bound when it loaded the shim. As getenv, it must not race a
// setenv: the shim reads it at load and when an image starts.
#ifndef CLOSEAUDIT_SHIM_ENV_H_
#define CLOSEAUDIT_SHIM_ENV_H_

#include <unistd.h>

namespace closeaudit::shim {

// The value of `name` in the environment, or null.
inline const char* EnvValue(const char* name) {
  if (environ == nullptr) return nullptr;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const char* e = *entry;
    const char* n = name;
    while (*n != '\0' && *e == *n) {
      ++e;
      ++n;
    }
    if (*n == '\0' && *e == '=') return e + 1;
  }
  return nullptr;
}

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_ENV_H_
